"""Flash a MicroPython (or factory) image onto an ESP32-family board with esptool, safely."""

from __future__ import annotations

import errno
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

IMAGE_MAGIC = 0xE9
# Image header: magic, segments, flash mode, size/freq, entry (u32), then the extended header:
# wp pin, 3 drive bytes, chip id (u16) ... (ESP-IDF esp_image_header_t).
_CHIP_ID_OFFSET = 12
DIALOUT_FIX = "sudo usermod -aG dialout $USER"
DOWNLOAD_MODE_HELP = (
    "put the board in download mode: hold BOOT (IO0), tap EN/RESET, release BOOT, then "
    "run the command again (some boards need a shorter USB cable or --baud 115200)")


class FlashError(Exception):
    """Flashing cannot go on; the message says what the technician should do."""


def chip_defs() -> dict[str, Any]:
    """esptool's chip classes by name (esp32, esp32s3, esp32c3, ...)."""
    from esptool.targets import CHIP_DEFS

    return CHIP_DEFS


def chip_name_for_id(chip_id: int) -> str | None:
    for name, cls in chip_defs().items():
        if getattr(cls, "IMAGE_CHIP_ID", None) == chip_id and name != "esp8266":
            return name
    return None


def flash_offset(chip: str) -> int:
    """Where an image that starts with the bootloader goes (ESP32: 0x1000; S3/C3: 0x0)."""
    try:
        return int(chip_defs()[chip].BOOTLOADER_FLASH_OFFSET)
    except KeyError:
        raise FlashError(f"unknown chip {chip!r}; choose from "
                         f"{', '.join(sorted(chip_defs()))}") from None


@dataclass
class ImageInfo:
    chip: str
    chip_id: int
    size: int


def read_image_info(data: bytes, source: str = "image") -> ImageInfo:
    """The chip an ESP image was built for, from its header (refuses what is not an image)."""
    if len(data) < 24 or data[0] != IMAGE_MAGIC:
        raise FlashError(f"{source} is not an ESP firmware image (no 0xE9 header at its start); "
                         "use the .bin from micropython.org/download for your board")
    (chip_id,) = struct.unpack_from("<H", data, _CHIP_ID_OFFSET)
    chip = chip_name_for_id(chip_id)
    if chip is None:
        raise FlashError(f"{source} was built for an unknown chip (id {chip_id})")
    return ImageInfo(chip=chip, chip_id=chip_id, size=len(data))


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


def flash(port: str, firmware: Path, chip: str = "auto", baud: int = 460800, erase: bool = True,
          detect: Detect | None = None, say: Callable[[str], None] = print) -> ImageInfo:
    """Detect the chip, refuse a mismatched image, erase, write at the chip's offset, verify.

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
    problem = port_problem(port)
    if problem:
        raise FlashError(problem)
    esp = (detect or connect)(port)
    detected = str(esp.CHIP_NAME).lower().replace("-", "")
    say(f"board on {port}: {esp.CHIP_NAME}")
    if chip != "auto" and chip != detected:
        raise FlashError(f"wrong chip: --chip {chip} but the board is an {detected.upper()}")
    check_chip(image, detected, str(firmware))
    offset = flash_offset(detected)
    from esptool.cmds import attach_flash, erase_flash, reset_chip, run_stub, write_flash

    esp = run_stub(esp)
    if baud and baud != esp._port.baudrate:
        esp.change_baud(baud)
    attach_flash(esp)
    if erase:
        say("erasing the whole flash (the old filesystem goes too)")
        erase_flash(esp)
    say(f"writing {len(data)} bytes at {offset:#x}")
    write_flash(esp, [(offset, data)])
    reset_chip(esp, "hard-reset")
    esp._port.close()
    return image
