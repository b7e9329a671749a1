"""ESP32 under Espressif's qemu-system-xtensa, booting a MicroPython flash image."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from hil_tests.backends.base import BoardUnavailable
from hil_tests.backends.qemu_process import EmulatorProcess, machine_supported
from hil_tests.backends.raw_repl import RawReplBoard

QEMU_BINARY = "qemu-system-xtensa"
FLASH_ENV = "LAMPLIGHTER_HIL_ESP32_FLASH"


class Esp32QemuBoard(RawReplBoard):
    """ESP32 (Xtensa LX6, float32) with UART0 on a pty.

    LAMPLIGHTER_HIL_ESP32_FLASH names a whole flash image (bootloader, partition table and
    MicroPython, e.g. from `esptool merge-bin --fill-flash-size 4MB`).
    """

    name = "esp32-qemu"
    write_chunk = 64  # the ESP32 port buffers UART input generously
    write_pause_s = 0.002

    def __init__(self, emulator: EmulatorProcess) -> None:
        self.emulator = emulator
        try:
            super().__init__(emulator.pty)
        except Exception:
            emulator.stop()
            raise

    @classmethod
    def unavailable_reason(cls) -> str | None:
        if shutil.which(QEMU_BINARY) is None:
            return (f"{cls.name}: {QEMU_BINARY} not on PATH (Espressif's QEMU build is not "
                    "packaged by Debian; ESP-IDF's `idf_tools.py install qemu-xtensa` provides it)")
        if not machine_supported(QEMU_BINARY, "esp32"):
            return (f"{cls.name}: this {QEMU_BINARY} has no esp32 machine "
                    "(upstream QEMU lacks it; Espressif's fork has it)")
        flash = os.environ.get(FLASH_ENV)
        if not flash:
            return f"{cls.name}: {FLASH_ENV} is not set (path of a MicroPython ESP32 flash image)"
        if not Path(flash).is_file():
            return f"{cls.name}: {FLASH_ENV}={flash} is not a file"
        return None

    @classmethod
    def open(cls) -> Esp32QemuBoard:
        reason = cls.unavailable_reason()
        if reason:
            raise BoardUnavailable(reason)
        emulator = EmulatorProcess([
            QEMU_BINARY, "-machine", "esp32", "-m", "4M",
            "-drive", f"file={os.environ[FLASH_ENV]},if=mtd,format=raw",
            "-display", "none", "-monitor", "none", "-serial", "pty",
        ], boot_timeout_s=30.0)
        return cls(emulator)

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.emulator.stop()
