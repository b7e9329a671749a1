"""Fixtures for tests that run firmware code on the MicroPython unix port."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.rigs.micropython import run_micropython


@pytest.fixture
def mpy(tmp_path: Path) -> Callable[..., list]:
    """Run MicroPython code in a scratch directory; return every stdout line parsed as JSON.

    The device code reports results by printing one JSON value per line.
    """

    def run(code: str, **kwargs) -> list:
        kwargs.setdefault("cwd", tmp_path)
        proc = run_micropython(code, **kwargs)
        return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]

    return run
