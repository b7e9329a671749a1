"""Wire format between the emulated board (MicroPython) and the world: opcodes and frame headers.

Request:  op (1 byte) | payload length (u16 LE) | payload
Response: status (1 byte) | virtual time ms (u64 LE) | payload length (u16 LE) | payload

The numbers (OP_*, STATUS_*, the board's I2C addresses, UART, pin and PWM ids) are defined once,
as private consts of the board's own files (firmware/boards/emulated.py and emulated_setup.py,
where they cost the node no heap); they are read from those `_NAME = const(..)` lines here.
"""

from __future__ import annotations

import re
import struct

from tools.firmware_tree import FIRMWARE_DIR

PROTOCOL_SOURCES = (FIRMWARE_DIR / "boards" / "emulated.py",
                    FIRMWARE_DIR / "boards" / "emulated_setup.py")
_PREFIXES = ("OP_", "STATUS_", "I2C_", "UART_", "PIN_", "PWM_")

REQUEST_HEADER = struct.Struct("<BH")
RESPONSE_HEADER = struct.Struct("<BQH")

_CONST_LINE = re.compile(r"^_?([A-Z][A-Z0-9_]*) = const\((0x[0-9A-Fa-f]+|\d+)\)", re.M)


def read_constants(source: str) -> dict[str, int]:
    """`NAME = const(value)` (or `_NAME = …`) lines of a MicroPython module, as a dict."""
    return {name: int(value, 0) for name, value in _CONST_LINE.findall(source)}


def _protocol_constants() -> dict[str, int]:
    found: dict[str, int] = {}
    for path in PROTOCOL_SOURCES:
        for name, value in read_constants(path.read_text()).items():
            if not name.startswith(_PREFIXES):
                continue
            if found.get(name, value) != value:
                raise RuntimeError(f"{name} has two values in firmware/boards/")
            found[name] = value
    return found


CONSTANTS = _protocol_constants()
globals().update(CONSTANTS)
