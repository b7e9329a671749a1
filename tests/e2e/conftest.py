"""The lab rig for end-to-end tests: a live server and provisioned emulated lampposts."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tools.hil_rig import Rig


@pytest.fixture
def rig(live_server, tmp_path) -> Iterator[Rig]:
    bench = Rig(live_server, tmp_path / "rig")
    yield bench
    bench.stop()
