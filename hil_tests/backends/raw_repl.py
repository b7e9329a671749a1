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


GARBLED = "garbled batch"  # what a board-side data check raises (hil_tests/device_drivers.py)


def _compiles(code: str) -> bool:
    try:
        compile(code, "<board code>", "exec")
    except SyntaxError:
        return False
    return True


class RawReplBoard(Board):
    """Raw-REPL board on a serial device (a real port or an emulator's pty)."""

    # Writes are paced (see PacedSerial); a board with flow control can raise these.
    # Definitions go slower still: a byte lost there may not be caught by the compiler.
    write_chunk = 16
    write_pause_s = 0.002
    load_chunk = 8

    def __init__(self, device: str) -> None:
        self.device = device
        self.transport = SerialTransport(device, baudrate=115200, timeout=5)
        self.transport.serial = PacedSerial(
            self.transport.serial, self.write_chunk, self.write_pause_s
        )
        self.loaded: dict[str, list[str]] = {}
        self.resends = 0  # runs sent again after the board reported a garbled transfer
        self.transport.enter_raw_repl(soft_reset=True, timeout_overall=20)

    def exec(self, code: str, timeout: float = 20.0) -> str:
        # A collection after each run keeps the small heap from fragmenting: on the micro:bit
        # a run of driver batches otherwise ends in "parser could not allocate enough
        # memory" with 3.6 KB nominally free, while collecting after every run keeps it there.
        return self._run(code.rstrip("\n") + "\nimport gc\ngc.collect()\n", timeout)

    def _run(self, code: str, timeout: float) -> str:
        # A byte lost on the way makes the board's compiler reject the text before anything
        # runs, so a SyntaxError for code that compiles on the host is resent (twice at most),
        # and so is a data batch whose check failed on the board ("garbled batch", raised
        # before the batch is used); code that is really wrong keeps failing and is reported.
        for attempt in range(3):
            try:
                out, err = self.transport.exec_raw(code, timeout=timeout)
            except TransportError as exc:
                raise DeviceError(f"{self.name}: raw REPL transport failed: {exc}") from exc
            if not err:
                return out.decode(errors="replace").replace("\r\n", "\n")
            text = err.decode(errors="replace")
            garbled = "SyntaxError" in text or GARBLED in text
            if attempt == 2 or not garbled or not _compiles(code):
                raise DeviceError(f"{self.name} raised:\n{text}")
            self.resends += 1
        raise AssertionError("unreachable")

    def load_module(self, name_or_path: str | Path) -> list[str]:
        path = module_path(name_or_path)
        defined: list[str] = []
        paced = self.transport.serial
        paced.chunk = self.load_chunk
        try:
            for chunk in split_definitions(path.read_text()):
                self._run(chunk.code, timeout=20.0)  # as small as it can be: no collection
                defined.extend(chunk.names)
        finally:
            paced.chunk = self.write_chunk
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
