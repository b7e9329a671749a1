"""A board driven through MicroPython's raw REPL with mpremote, writing at a pace it can take."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from mpremote.transport import TransportError
from mpremote.transport_serial import SerialTransport

from hil_tests.backends.base import Board, DeviceError, module_path
from hil_tests.backends.source_split import split_definitions


class PacedSerial:
    """Wraps a pyserial port so that writes go out in small chunks with a pause after each.

    mpremote's raw REPL path writes 256 bytes every 10 ms. The micro:bit's MicroPython 1.9
    has no flow control and a small UART receive buffer: at that rate it silently lost 118
    of 1200 bytes in a measured run (64-byte chunks every 4 ms still lost bytes in 4 of 15
    runs; 16- or 32-byte chunks every 1-2 ms lost none in 60).
    """

    def __init__(self, port: Any, chunk: int, pause_s: float) -> None:
        self._port = port
        self.chunk = chunk
        self.pause_s = pause_s

    def write(self, data: bytes) -> int:
        for start in range(0, len(data), self.chunk):
            self._port.write(data[start : start + self.chunk])
            self._port.flush()
            time.sleep(self.pause_s)
        return len(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._port, name)


class RawReplBoard(Board):
    """Raw-REPL board on a serial device (a real port or an emulator's pty)."""

    # Writes are paced (see PacedSerial); a board with flow control can raise these.
    write_chunk = 16
    write_pause_s = 0.002

    def __init__(self, device: str) -> None:
        self.device = device
        self.transport = SerialTransport(device, baudrate=115200, timeout=5)
        self.transport.serial = PacedSerial(
            self.transport.serial, self.write_chunk, self.write_pause_s
        )
        self.loaded: dict[str, list[str]] = {}
        self.transport.enter_raw_repl(soft_reset=True, timeout_overall=20)

    def exec(self, code: str, timeout: float = 20.0) -> str:
        try:
            out, err = self.transport.exec_raw(code, timeout=timeout)
        except TransportError as exc:
            raise DeviceError(f"{self.name}: raw REPL transport failed: {exc}") from exc
        if err:
            raise DeviceError(f"{self.name} raised:\n{err.decode(errors='replace')}")
        return out.decode(errors="replace").replace("\r\n", "\n")

    def load_module(self, name_or_path: str | Path) -> list[str]:
        path = module_path(name_or_path)
        defined: list[str] = []
        for chunk in split_definitions(path.read_text()):
            self.exec(chunk.code)
            defined.extend(chunk.names)
        missing = self.exec(
            f"print(' '.join([n for n in {defined!r} if n not in globals()]))"
        ).strip()
        if missing:
            raise DeviceError(f"{path.name}: not defined on {self.name} after loading: {missing}")
        self.loaded[path.stem] = defined
        return defined

    def mem_free(self) -> int:
        return int(self.exec("import gc\ngc.collect()\nprint(gc.mem_free())").strip())

    def reset(self) -> None:
        self.transport.enter_raw_repl(soft_reset=True, timeout_overall=20)
        self.loaded.clear()

    def close(self) -> None:
        try:
            self.transport.exit_raw_repl()
        except (OSError, TransportError):
            pass
        self.transport.close()
