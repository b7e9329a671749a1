"""A real MicroPython board on a serial port (LAMPLIGHTER_HIL_SERIAL_PORT), over mpremote."""

from __future__ import annotations

import os

from hil_tests.backends.base import BoardUnavailable
from hil_tests.backends.raw_repl import RawReplBoard

PORT_ENV = "LAMPLIGHTER_HIL_SERIAL_PORT"


class SerialBoard(RawReplBoard):
    """Whatever board is on the port; a soft reset starts every scenario afresh."""

    name = "serial"

    @classmethod
    def unavailable_reason(cls) -> str | None:
        port = os.environ.get(PORT_ENV)
        if not port:
            return f"{cls.name}: {PORT_ENV} is not set (e.g. /dev/ttyUSB0 with a board attached)"
        if not os.path.exists(port):
            return f"{cls.name}: {PORT_ENV}={port} does not exist (board unplugged?)"
        return None

    @classmethod
    def open(cls) -> SerialBoard:
        reason = cls.unavailable_reason()
        if reason:
            raise BoardUnavailable(reason)
        return cls(os.environ[PORT_ENV])
