"""Wire format between the emulated board (MicroPython) and the world: opcodes and frame headers.

Request:  op (1 byte) | payload length (u16 LE) | payload
Response: status (1 byte) | virtual time ms (u64 LE) | payload length (u16 LE) | payload

The numbers (OP_*, STATUS_*, the board's I2C addresses, UART, pin and PWM ids) are defined once,
in firmware/boards/emulated_protocol.py; they are read from its `NAME = const(..)` lines here.
"""

from __future__ import annotations

import re
import struct

from tools.micropython import FIRMWARE_DIR

PROTOCOL_SOURCE = FIRMWARE_DIR / "boards" / "emulated_protocol.py"

REQUEST_HEADER = struct.Struct("<BH")
RESPONSE_HEADER = struct.Struct("<BQH")

_CONST_LINE = re.compile(r"^([A-Z][A-Z0-9_]*) = const\((0x[0-9A-Fa-f]+|\d+)\)", re.M)


def read_constants(source: str) -> dict[str, int]:
    """`NAME = const(value)` lines of a MicroPython module, as a dict."""
    return {name: int(value, 0) for name, value in _CONST_LINE.findall(source)}


CONSTANTS = read_constants(PROTOCOL_SOURCE.read_text())
globals().update(CONSTANTS)
