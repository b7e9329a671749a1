"""Board backends by name, and which ones a run selects (option, environment or default)."""

from __future__ import annotations

import os

from hil_tests.backends.base import Board, BoardUnavailable, DeviceError
from hil_tests.backends.esp32_qemu import Esp32QemuBoard
from hil_tests.backends.qemu_microbit import QemuMicrobitBoard
from hil_tests.backends.serial import SerialBoard
from hil_tests.backends.unix import UnixLamppostBoard

BOARDS_ENV = "LAMPLIGHTER_HIL_BOARDS"
DEFAULT_BOARDS = "qemu-microbit,unix"

BACKENDS: dict[str, type[Board]] = {
    cls.name: cls
    for cls in (QemuMicrobitBoard, UnixLamppostBoard, Esp32QemuBoard, SerialBoard)
}

__all__ = ["BACKENDS", "Board", "BoardUnavailable", "DeviceError", "selected_boards"]


def selected_boards(option_values: list[str] | None) -> list[str]:
    """Backend names chosen by --hil-board (repeatable, comma lists), else the env var/default.

    `all` selects every backend. Unknown names raise ValueError naming the known ones.
    """
    raw = ",".join(option_values) if option_values else os.environ.get(BOARDS_ENV, DEFAULT_BOARDS)
    names: list[str] = []
    for part in raw.split(","):
        name = part.strip()
        if not name:
            continue
        for chosen in BACKENDS if name == "all" else [name]:
            if chosen not in BACKENDS:
                raise ValueError(
                    f"unknown HIL board {chosen!r}; known: {', '.join(BACKENDS)} (or all)"
                )
            if chosen not in names:
                names.append(chosen)
    return names
