"""Fixtures shared by every test folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tools.emulator.fleet_process import FleetServer, start_fleet_server


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[FleetServer]:
    """A real fleet server process (uvicorn) on a free port with a fresh SQLite database."""
    server = start_fleet_server(tmp_path / "server")
    yield server
    server.stop()
