"""Wire format between the emulated board (MicroPython) and the world: opcodes and frame headers.

Request:  op (1 byte) | payload length (u16 LE) | payload
Response: status (1 byte) | virtual time ms (u64 LE) | payload length (u16 LE) | payload

The numbers (OP_*, STATUS_*, the board's I2C addresses, UART, pin and PWM ids) are defined once,
as private consts of the board's own file (firmware/boards/emulated.py, where they cost the
node no heap); they are read from its `_NAME = const(..)` lines here.
"""

from __future__ import annotations

import re
import struct

from tools.firmware_tree import FIRMWARE_DIR

PROTOCOL_SOURCE = FIRMWARE_DIR / "boards" / "emulated.py"
_PREFIXES = ("OP_", "STATUS_", "I2C_", "UART_", "PIN_", "PWM_", "WIFI_")

REQUEST_HEADER = struct.Struct("<BH")
RESPONSE_HEADER = struct.Struct("<BQH")

_CONST_LINE = re.compile(r"^_?([A-Z][A-Z0-9_]*) = const\((0x[0-9A-Fa-f]+|\d+)\)", re.M)


def _protocol_constants() -> dict[str, int]:
    """The protocol's `_NAME = const(value)` lines of the board's file, each defined once."""
    found: dict[str, int] = {}
    for name, value in _CONST_LINE.findall(PROTOCOL_SOURCE.read_text()):
        if not name.startswith(_PREFIXES):
            continue
        if name in found:
            raise RuntimeError(f"{name} is defined twice in {PROTOCOL_SOURCE.name}")
        found[name] = int(value, 0)
    return found


CONSTANTS = _protocol_constants()
globals().update(CONSTANTS)
