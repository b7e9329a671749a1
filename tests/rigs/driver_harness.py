"""Run MicroPython code on an emulated board wired to a world (for tests and benchmarks)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.rigs.micropython import run_micropython
from tools.emulator.micropython import ESP32_HEAP_KB
from tools.emulator.scenario import Scenario
from tools.emulator.world import World
from tools.firmware_tree import FIRMWARE_DIR, FIRMWARE_LIB

BOARD_DIRS = [FIRMWARE_LIB, FIRMWARE_DIR / "boards"]


@contextmanager
def running_world(scenario: Scenario | None = None, **kwargs) -> Iterator[World]:
    """A started world (fast virtual clock unless speed= is given), stopped afterwards."""
    world = World(scenario, **kwargs).start()
    try:
        yield world
    finally:
        world.stop()


def run_on_board(world: World, code: str, cwd: Path, heap_kb: int = ESP32_HEAP_KB,
                 timeout: float = 300.0) -> list:
    """Run `code` on MicroPython with `board = emulated.Board()` ready; return its JSON lines."""
    prologue = "import json, emulated\nboard = emulated.Board()\n"
    old = os.environ.get("LAMPLIGHTER_WORLD")
    os.environ["LAMPLIGHTER_WORLD"] = str(world.port)
    os.environ["LAMPLIGHTER_FLASH"] = str(cwd / "flash")
    try:
        proc = run_micropython(prologue + code, path_dirs=BOARD_DIRS, heap_kb=heap_kb, cwd=cwd,
                               timeout=timeout)
    finally:
        if old is None:
            os.environ.pop("LAMPLIGHTER_WORLD", None)
        else:
            os.environ["LAMPLIGHTER_WORLD"] = old
        os.environ.pop("LAMPLIGHTER_FLASH", None)
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith(("[", "{"))]
