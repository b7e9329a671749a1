"""A MicroPython board over serial: mpremote's raw REPL, and paste mode checked by its echo."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from mpremote.transport import TransportError
from mpremote.transport_serial import SerialTransport

from hil_tests.backends.base import Board, DeviceError, module_path
from hil_tests.backends.source_split import split_definitions

GARBLED = "garbled batch"  # what a board-side data check raises (hil_tests/device_drivers.py)
# Board errors that mean the text arrived damaged (nothing ran, or the run stopped at once)
_TRANSFER_ERRORS = ("SyntaxError", "NameError", GARBLED)
_RAW_PROMPT = b"raw REPL; CTRL-B to exit\r\n"
_FRIENDLY_PROMPT = b">>> "
_PASTE_PROMPT = b"=== "
# The friendly REPL prints a traceback, or for an error while compiling only its last line
# ("MemoryError: memory allocation failed, allocating 496 bytes").
_ERROR_LINE = re.compile(r"^(Traceback \(most recent call last\)|[A-Z]\w*(Error|Exception)\b)",
                         re.MULTILINE)


class PacedSerial:
    """Wraps a pyserial port so that writes go out in small chunks with a pause after each.

    mpremote's raw REPL path writes 256 bytes every 10 ms. The micro:bit's MicroPython 1.9
    has no flow control and a small UART receive buffer: at that rate it silently lost 118
    of 1200 bytes in a measured run (64-byte chunks every 4 ms still lost bytes in 4 of 15
    runs; 16- or 32-byte chunks every 1-2 ms lost none in 60 on an idle machine, but did
    lose bytes on a busy one).
    """

    def __init__(self, port: Any, chunk: int, pause_s: float) -> None:
        self.port = port
        self.chunk = chunk
        self.pause_s = pause_s

    def write(self, data: bytes) -> int:
        for start in range(0, len(data), self.chunk):
            self.port.write(data[start : start + self.chunk])
            self.port.flush()
            time.sleep(self.pause_s)
        return len(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.port, name)


def _compiles(code: str) -> bool:
    try:
        compile(code, "<board code>", "exec")
    except SyntaxError:
        return False
    return True


class RawReplBoard(Board):
    """MicroPython board on a serial device (a real port or an emulator's pty).

    Two ways to run code:
    - `exec`: mpremote's raw REPL, writes paced. Fast; for data batches that carry their own
      check (a garbled batch raises on the board and is sent again).
    - `exec_checked`: the friendly REPL's paste mode, which echoes every byte it takes in.
      Each piece is sent only after the previous one came back intact, so nothing overruns
      the board's receive buffer and a damaged transfer is cancelled (Ctrl-C) and sent again.
      For definitions and settings, where a lost byte could still compile.
    """

    write_chunk = 16  # raw REPL pacing (see PacedSerial); a board with flow control can raise it
    write_pause_s = 0.002
    echo_piece = 32  # paste mode: bytes in flight before their echo is awaited

    def __init__(self, device: str) -> None:
        self.device = device
        self.transport = SerialTransport(device, baudrate=115200, timeout=5)
        self.port = self.transport.serial
        self.transport.serial = PacedSerial(self.port, self.write_chunk, self.write_pause_s)
        self.loaded: dict[str, list[str]] = {}
        self.resends = 0  # runs or pieces sent again after a damaged transfer
        self.transport.enter_raw_repl(soft_reset=True, timeout_overall=20)

    # ------------------------------------------------------------ raw REPL (mpremote)

    def exec(self, code: str, timeout: float = 20.0) -> str:
        # A collection after each run keeps the small heap from fragmenting: on the micro:bit
        # a run of driver batches otherwise ends in "parser could not allocate enough
        # memory" with 3.6 KB nominally free, while collecting after every run keeps it there.
        code = code.rstrip("\n") + "\nimport gc\ngc.collect()\n"
        # A damaged transfer makes the board reject the text (SyntaxError), miss a name
        # (NameError) or fail a batch's check before the batch is used: such a run is sent
        # again, twice at most, if it compiles on the host. Code that is really wrong keeps
        # failing and is reported.
        for attempt in range(3):
            try:
                out, err = self.transport.exec_raw(code, timeout=timeout)
            except TransportError as exc:
                raise DeviceError(f"{self.name}: raw REPL transport failed: {exc}") from exc
            if not err:
                return out.decode(errors="replace").replace("\r\n", "\n")
            text = err.decode(errors="replace")
            damaged = any(marker in text for marker in _TRANSFER_ERRORS)
            if attempt == 2 or not damaged or not _compiles(code):
                raise DeviceError(f"{self.name} raised:\n{text}")
            self.resends += 1
        raise AssertionError("unreachable")

    # ------------------------------------------------------------ paste mode, echo-checked

    def _read_until(self, marker: bytes, timeout: float) -> bytes:
        # byte by byte, so that nothing after the marker (the raw REPL's ">") is taken
        data = b""
        deadline = time.monotonic() + timeout
        while not data.endswith(marker):
            if time.monotonic() > deadline:
                raise DeviceError(f"{self.name}: no {marker!r} from the board (got {data[-80:]!r})")
            data += self.port.read(1)
        return data

    def _read_exact(self, count: int, timeout: float) -> bytes:
        data = b""
        deadline = time.monotonic() + timeout
        while len(data) < count and time.monotonic() < deadline:
            waiting = self.port.in_waiting
            if waiting:
                data += self.port.read(min(waiting, count - len(data)))
            else:
                time.sleep(0.0005)
        return data

    def _paste(self, data: bytes) -> bool:
        """Send `data` in paste mode; False (and the paste cancelled) if an echo differed."""
        self.port.write(b"\x05")
        self._read_until(_PASTE_PROMPT, 5.0)
        for start in range(0, len(data), self.echo_piece):
            piece = data[start : start + self.echo_piece]
            self.port.write(piece)
            if self._read_exact(len(piece), 2.0) != piece:
                self.port.write(b"\x03")
                self._read_until(_FRIENDLY_PROMPT, 5.0)
                return False
        return True

    def exec_checked(self, code: str, timeout: float = 20.0) -> str:
        data = code.rstrip("\n").encode() + b"\n"
        self.port.write(b"\x02")  # friendly REPL
        self._read_until(_FRIENDLY_PROMPT, 5.0)
        try:
            for _ in range(5):
                if self._paste(data):
                    break
                self.resends += 1
            else:
                raise DeviceError(f"{self.name}: transfer kept failing its echo check")
            self.port.write(b"\x04")
            out = self._read_until(_FRIENDLY_PROMPT, timeout)[: -len(_FRIENDLY_PROMPT)]
        finally:
            self.port.write(b"\x01")  # back to the raw REPL; mpremote reads its ">" next
            self._read_until(_RAW_PROMPT, 5.0)
        text = out.decode(errors="replace").replace("\r\n", "\n").removeprefix("\n")
        if _ERROR_LINE.search(text):
            raise DeviceError(f"{self.name} raised:\n{text}")
        return text

    # ------------------------------------------------------------ the rest of Board

    def load_module(self, name_or_path: str | Path) -> list[str]:
        path = module_path(name_or_path)
        defined: list[str] = []
        for chunk in split_definitions(path.read_text()):
            self.exec_checked(chunk.code)
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
