"""BBC micro:bit under Debian's qemu-system-arm, booting Debian's MicroPython 1.9 firmware."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from mpremote.transport import TransportError

from hil_tests.backends.base import BoardUnavailable
from hil_tests.backends.qemu_process import EmulatorProcess, machine_supported
from hil_tests.backends.raw_repl import RawReplBoard

QEMU_BINARY = "qemu-system-arm"
DEFAULT_FIRMWARE = Path("/usr/share/firmware-microbit-micropython/firmware.hex")


def firmware_path() -> Path:
    """The MicroPython hex image (LAMPLIGHTER_MICROBIT_FIRMWARE overrides Debian's)."""
    return Path(os.environ.get("LAMPLIGHTER_MICROBIT_FIRMWARE", str(DEFAULT_FIRMWARE)))


class QemuMicrobitBoard(RawReplBoard):
    """nRF51 micro:bit (Cortex-M0, 16 KB RAM, float32) with its UART on a pty."""

    name = "qemu-microbit"

    def __init__(self, emulator: EmulatorProcess) -> None:
        self.emulator = emulator
        self.hard_restarts = 0
        try:
            super().__init__(emulator.pty)
        except Exception:
            emulator.stop()
            raise

    @classmethod
    def unavailable_reason(cls) -> str | None:
        if shutil.which(QEMU_BINARY) is None:
            return (f"{cls.name}: {QEMU_BINARY} not on PATH "
                    "(Debian package qemu-system-arm; `make system-deps` installs it)")
        if not firmware_path().is_file():
            return (f"{cls.name}: no MicroPython firmware at {firmware_path()} "
                    "(Debian package firmware-microbit-micropython)")
        if not machine_supported(QEMU_BINARY, "microbit"):
            return f"{cls.name}: this {QEMU_BINARY} has no microbit machine"
        return None

    @classmethod
    def open(cls) -> QemuMicrobitBoard:
        reason = cls.unavailable_reason()
        if reason:
            raise BoardUnavailable(reason)
        return cls(EmulatorProcess(cls.command()))

    @staticmethod
    def command() -> list[str]:
        # The monitor must stay off the UART: on `mon:stdio` Ctrl-A is QEMU's escape key and
        # the raw REPL (entered with Ctrl-A) never starts.
        return [
            QEMU_BINARY, "-M", "microbit",
            "-device", f"loader,file={firmware_path()}",
            "-display", "none", "-monitor", "none", "-serial", "pty",
        ]

    def reset(self) -> None:
        # A soft reset first; a board wedged by a failed load (out of heap mid-transfer, for
        # example) gets a fresh emulator instead.
        try:
            super().reset()
        except (TransportError, OSError):
            self.transport.close()
            self.emulator.stop()
            self.emulator = EmulatorProcess(self.command())
            self.hard_restarts += 1
            RawReplBoard.__init__(self, self.emulator.pty)

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.emulator.stop()
