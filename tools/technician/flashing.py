"""Flash a MicroPython (or factory) image onto an ESP32-family board with esptool, safely."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tools.technician.firmware import (  # noqa: F401  (the image checks, used from here too)
    DEFAULT_APP_OFFSET,
    FirmwareInfo,
    FlashError,
    ImageInfo,
    chip_defs,
    chip_name_for_id,
    code_on_flash,
    describe,
    flash_offset,
    read_image_info,
    vet_firmware,
)

DIALOUT_FIX = "sudo usermod -aG dialout $USER"
DOWNLOAD_MODE_HELP = (
    "put the board in download mode: hold BOOT (IO0), tap EN/RESET, release BOOT, then "
    "run the command again (some boards need a shorter USB cable or --baud 115200)")


def serial_ports() -> list[str]:
    """Serial ports this machine has now."""
    from serial.tools import list_ports

    return sorted(p.device for p in list_ports.comports())


def port_problem(port: str) -> str | None:
    """Why `port` cannot be opened, in words a technician can act on (None: it can)."""
    if not os.path.exists(port):
        ports = serial_ports()
        listed = (", ".join(ports) if ports else
                  "none: is the board plugged in, with a data (not charge-only) USB cable?")
        return f"no such port {port}. Serial ports on this machine: {listed}"
    try:
        fd = os.open(port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    except PermissionError:
        return (f"permission denied on {port}: your user may not use serial ports. Run "
                f"`{DIALOUT_FIX}`, then log out and back in")
    except OSError as exc:
        if exc.errno == errno.EBUSY:
            return f"{port} is busy: close the other program (serial monitor, Thonny) using it"
        return f"cannot open {port}: {exc.strerror}"
    os.close(fd)
    return None


def check_chip(image: ImageInfo, detected: str, source: str = "the image") -> None:
    if image.chip != detected:
        raise FlashError(f"wrong chip: {source} is built for {image.chip.upper()} but the board "
                         f"is an {detected.upper()}. Download the MicroPython image for "
                         f"{detected.upper()} (micropython.org/download)")


def connect(port: str, baud: int = 115200, attempts: int = 3) -> Any:
    """esptool's loader for the chip on `port` (raises FlashError when the ROM does not answer)."""
    import serial
    from esptool.cmds import detect_chip
    from esptool.util import FatalError

    try:
        return detect_chip(port, baud=baud, connect_attempts=attempts)
    except (FatalError, serial.SerialException, OSError) as exc:
        text = str(exc)
        if "Permission denied" in text:
            raise FlashError(port_problem(port) or text) from None
        raise FlashError(f"no answer from the board's ROM loader on {port} ({text.strip()}). "
                         f"{DOWNLOAD_MODE_HELP}") from None


Detect = Callable[[str], Any]


def _code_image_note(info: FirmwareInfo, data: bytes) -> str:
    """What a node flashed with `data` finds in its ROMFS partition at first boot."""
    from tools.technician.app_romfs import holds_code_image

    part = info.romfs
    if part is None or not info.vfs_rom:
        return ""
    start = part.offset - flash_offset(info.chip)
    if len(data) > start and holds_code_image(data[start:start + part.size]):
        return " (this image already holds the app's code image there)"
    return " (the node packs its code there at its first boot)"


def write_plan(info: FirmwareInfo, chip: str, erase: bool) -> tuple[int, bool]:
    """Where the file goes and whether the whole flash is erased first.

    A merged .bin (or factory image) starts with the bootloader: it goes at the chip's
    bootloader offset. A bare app image goes at the app partition (0x10000) and never erases
    the whole flash, which would take the bootloader and partition table it boots with.
    """
    if info.app_only:
        return DEFAULT_APP_OFFSET, False
    return flash_offset(chip), erase


def flash(port: str, firmware: Path, chip: str = "auto", baud: int = 460800, erase: bool = True,
          detect: Detect | None = None, say: Callable[[str], None] = print,
          pins: Path | None = None) -> ImageInfo:
    """Refuse a wrong or unvetted image, detect the chip, erase, write at its offset, verify.

    Before the port is touched the file must be an ESP image of a supported MicroPython
    release (read from its app descriptor) and, with a `pins` file, one of the pinned files.
    `detect(port)` returns an esptool loader (default: connect()); tests pass a stand-in.
    esptool's write_flash checks the written region's MD5 against the image (verify).
    """
    try:
        data = Path(firmware).read_bytes()
    except OSError as exc:
        raise FlashError(f"cannot read {firmware}: {exc.strerror}") from None
    image = read_image_info(data, str(firmware))
    if chip != "auto":
        flash_offset(chip)  # validates the name
        check_chip(image, chip, str(firmware))
    info = vet_firmware(data, str(firmware), pins)
    say(f"{firmware}: {describe(info)}" + (f", pinned in {pins}" if pins else ""))
    say(f"code: {code_on_flash(info)}{_code_image_note(info, data)}")
    problem = port_problem(port)
    if problem:
        raise FlashError(problem)
    esp = (detect or connect)(port)
    detected = str(esp.CHIP_NAME).lower().replace("-", "")
    say(f"board on {port}: {esp.CHIP_NAME}")
    if chip != "auto" and chip != detected:
        raise FlashError(f"wrong chip: --chip {chip} but the board is an {detected.upper()}")
    check_chip(image, detected, str(firmware))
    offset, erase = write_plan(info, detected, erase)
    from esptool.cmds import attach_flash, erase_flash, reset_chip, run_stub, write_flash

    esp = run_stub(esp)
    if baud and baud != esp._port.baudrate:
        esp.change_baud(baud)
    attach_flash(esp)
    if erase:
        say("erasing the whole flash (the old filesystem goes too)")
        erase_flash(esp)
    elif info.app_only:
        say(f"app-only image: writing the app at {offset:#x}, keeping the bootloader, partition "
            "table and filesystem (a new board needs the full .bin)")
    say(f"writing {len(data)} bytes at {offset:#x}")
    write_flash(esp, [(offset, data)])
    reset_chip(esp, "hard-reset")
    esp._port.close()
    return image
