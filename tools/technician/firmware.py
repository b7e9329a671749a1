"""Which MicroPython firmware the technician tools accept: the release read from the image
itself, and (optionally) the exact files a depot has vetted, pinned by SHA-256.

Where the version is. An ESP-IDF app image starts with a 24-byte image header (magic 0xE9,
segment count, flash mode, size/frequency, entry point, then the extended header with the chip
id) and its first segment's 8-byte header (load address, length); the first segment's data
starts with the application descriptor, `esp_app_desc_t`, so at offset 0x20 into the app
image (ESP-IDF "App Image Format"; esptool's image_info reads it the same way):

    uint32 magic_word (0xABCD5432), uint32 secure_version, uint32 reserv1[2],
    char version[32], char project_name[32], char time[16], char date[16],
    char idf_ver[32], uint8 app_elf_sha256[32], ...

MicroPython's ESP32 port declares `project(micropython)` (ports/esp32/CMakeLists.txt), so the
project name is "micropython", and sets no PROJECT_VER, so ESP-IDF fills `version` from
`git describe --tags` of the MicroPython tree: "v1.24.1" for a release build, something like
"v1.25.0-preview.49.g0a1b2c3d" for a nightly. Assumption, not yet checked against a
downloaded micropython.org .bin: a release build's version is exactly "vX.Y.Z"; anything else
is treated as not a release and refused (the message says which file to get).

Where the app is. A micropython.org `.bin` is a merged image written at the chip's bootloader
offset (ESP32: 0x1000): the bootloader, the partition table at flash 0x8000 and the app at
flash 0x10000 (file offset 0xF000 on an ESP32). The app's offset is read from the partition
table (the first app partition) when there is one. A bare app image (`.app-bin`) starts with
the app itself.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The MicroPython releases these tools write to a node. All need:
# - littlefs 2.1 on-disk format (v1.22+): the factory image's filesystem is written by
#   littlefs-python 0.19 (littlefs 2.11, disk version 2.1);
# - the `vfs` module (v1.23+), which firmware/lib/core/app_image.py imports;
# - .mpy version 6 (v1.19+): the app is bytecode-only .mpy from mpy-cross 1.28.
# A release is added here once it has run the app on a board, except those in ROMFS_RELEASES.
SUPPORTED_RELEASES = ("v1.23.0", "v1.24.0", "v1.24.1", "v1.25.0")
# v1.25.0 is the first with ROMFS (vfs.VfsRom, vfs.rom_ioctl; its release notes), but its
# ESP32_GENERIC build is not built with it (ROMFS is on only on PYBD-SFx, alif, an ESP8266
# variant and stm32 Arduino boards). It is accepted only as a depot's own ROMFS build (the
# app names vfs.VfsRom; a full .bin also has a `romfs` partition), the one thing it brings
# over v1.24.1; it has not yet run the app on a board (docs/technician.md). Its ESP32_GENERIC
# table is v1.24's (partitions-4MiB.csv: vfs at 0x200000). From v1.26 that table has no vfs
# partition (the port sizes the filesystem at run time, PR 17337), which factory images do
# not lay out: not added.
ROMFS_RELEASES = ("v1.25.0",)
RECOMMENDED_RELEASE = "v1.24.1"
# micropython.org's board name for each chip's generic build
BOARD_FOR_CHIP = {"esp32": "ESP32_GENERIC", "esp32s2": "ESP32_GENERIC_S2",
                  "esp32s3": "ESP32_GENERIC_S3", "esp32c3": "ESP32_GENERIC_C3",
                  "esp32c6": "ESP32_GENERIC_C6"}
PROJECT_NAME = "micropython"

APP_DESC_MAGIC = 0xABCD5432
APP_DESC_OFFSET = 0x20  # image header (24) + first segment header (8)
APP_DESC_FMT = "<II8s32s32s16s16s32s32s"  # magic .. app_elf_sha256 (esp_app_desc_t)
PARTITION_TABLE_OFFSET = 0x8000  # flash address (ESP-IDF default, MicroPython's too)
PARTITION_TABLE_MAX = 0xC00
PARTITION_MAGIC = b"\xaa\x50"  # 0x50AA, little-endian
PARTITION_ENTRY_FMT = "<2sBBII16sI"  # magic, type, subtype, offset, size, label, flags
PARTITION_TYPE_APP = 0
PARTITION_TYPE_DATA = 1
# MicroPython's ESP32 port takes the data partition labelled "romfs" (any subtype) as its
# ROMFS segment 0 (ports/esp32/esp32_partition.c, v1.25+); its own ESP32_GENERIC ROMFS
# variant lays it out as `romfs, data, 0x8f, 0x1E0000, 0x20000` (partitions-4MiB-romfs.csv)
ROMFS_LABEL = "romfs"
# qstr text a firmware built with MICROPY_VFS_ROM holds (the name of vfs.VfsRom)
VFS_ROM_QSTR = b"VfsRom\0"
DEFAULT_APP_OFFSET = 0x10000  # the factory app partition in MicroPython's tables

PINS_FILE = "lamplighter-firmware.toml"  # looked for in the current directory
PINS_ENV = "LAMPLIGHTER_FIRMWARE_PINS"


IMAGE_MAGIC = 0xE9
# Image header: magic, segments, flash mode, size/freq, entry (u32), then the extended header:
# wp pin, 3 drive bytes, chip id (u16) ... (ESP-IDF esp_image_header_t).
_CHIP_ID_OFFSET = 12


class FlashError(Exception):
    """Flashing cannot go on; the message says what the technician should do."""


class FirmwareError(FlashError):
    """The firmware file is refused; the message says which file to get and where."""


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


def download_hint(chip: str = "esp32") -> str:
    board = BOARD_FOR_CHIP.get(chip, "ESP32_GENERIC")
    return (f"get {board}-{RECOMMENDED_RELEASE}.bin from "
            f"https://micropython.org/download/{board}/")


@dataclass
class Partition:
    label: str
    type: int
    subtype: int
    offset: int
    size: int


@dataclass
class FirmwareInfo:
    chip: str
    version: str  # the descriptor's version field, e.g. "v1.24.1"
    project: str  # the descriptor's project name, "micropython"
    idf_version: str
    app_only: bool  # a bare app image (.app-bin), not a merged .bin
    app_offset: int  # where the app starts in the file
    firmware_length: int  # bytes of firmware at the file's start (a factory image has more)
    sha256: str  # of the whole file
    firmware_sha256: str  # of its first firmware_length bytes
    partitions: list[Partition] = field(default_factory=list)
    vfs_rom: bool = False  # built with ROMFS: its app names vfs.VfsRom

    @property
    def romfs(self) -> Partition | None:
        """The partition the node keeps its code image in, or None."""
        return next((p for p in self.partitions if p.label == ROMFS_LABEL
                     and p.type == PARTITION_TYPE_DATA), None)

    @property
    def is_release(self) -> bool:
        return re.fullmatch(r"v\d+\.\d+\.\d+", self.version) is not None


def _cstr(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("ascii", "replace")


def read_partitions(data: bytes, base: int) -> list[Partition]:
    """The partition table of a merged image starting at flash `base` ([] when it has none)."""
    start = PARTITION_TABLE_OFFSET - base
    table = data[start:start + PARTITION_TABLE_MAX]
    out = []
    for pos in range(0, len(table) - 31, 32):
        magic, ptype, subtype, offset, size, label, _flags = struct.unpack_from(
            PARTITION_ENTRY_FMT, table, pos)
        if magic != PARTITION_MAGIC:  # 0xEBEB (the table's MD5) or 0xFFFF ends it
            break
        out.append(Partition(_cstr(label), ptype, subtype, offset, size))
    return out


def _app_image_length(chip: str, app: bytes, source: str) -> int:
    """Bytes of the app image at the start of `app` (segments, checksum, appended digest),
    parsed with esptool's image classes."""
    from esptool.bin_image import LoadFirmwareImage

    try:
        image = LoadFirmwareImage(chip, app)
    except Exception as exc:  # esptool raises FatalError, struct.error, ... on a cut image
        raise FirmwareError(f"{source}: its app image is damaged or cut short ({exc}); "
                            f"{download_hint(chip)}") from None
    pos = 24 + sum(8 + len(seg.data) for seg in image.segments)
    pos += 15 - pos % 16 + 1  # padding, then the checksum byte (ends on a 16-byte boundary)
    return pos + (32 if image.append_digest else 0)


def read_firmware(data: bytes, source: str = "the firmware") -> FirmwareInfo:
    """Chip, version and layout of a firmware file (merged .bin, factory image or bare app).

    Raises FirmwareError (or FlashError for a file that is no ESP image at all).
    """
    header = read_image_info(data, source)
    chip = header.chip
    app_only = data[APP_DESC_OFFSET:APP_DESC_OFFSET + 4] == struct.pack("<I", APP_DESC_MAGIC)
    partitions: list[Partition] = []
    if app_only:
        app_offset = 0
    else:
        base = flash_offset(chip)
        partitions = read_partitions(data, base)
        apps = [p for p in partitions if p.type == PARTITION_TYPE_APP]
        app_offset = (apps[0].offset if apps else DEFAULT_APP_OFFSET) - base
        if not (0 < app_offset < len(data)) or data[app_offset] != 0xE9:
            raise FirmwareError(
                f"{source} holds no MicroPython app (no app image at flash "
                f"{app_offset + base:#x}): it is not a MicroPython firmware .bin; "
                f"{download_hint(chip)}")
    app = data[app_offset:]
    desc = app[APP_DESC_OFFSET:APP_DESC_OFFSET + struct.calcsize(APP_DESC_FMT)]
    if len(desc) < struct.calcsize(APP_DESC_FMT) or \
            struct.unpack_from("<I", desc)[0] != APP_DESC_MAGIC:
        raise FirmwareError(
            f"{source} has no ESP-IDF application descriptor, so its MicroPython version "
            f"cannot be read: it is not a MicroPython firmware; {download_hint(chip)}")
    _magic, _secure, _r1, version, project, _time, _date, idf_ver, _elf = struct.unpack(
        APP_DESC_FMT, desc)
    length = app_offset + _app_image_length(chip, app, source)
    return FirmwareInfo(chip=chip, version=_cstr(version), project=_cstr(project),
                        idf_version=_cstr(idf_ver), app_only=app_only, app_offset=app_offset,
                        firmware_length=min(length, len(data)),
                        sha256=hashlib.sha256(data).hexdigest(),
                        firmware_sha256=hashlib.sha256(data[:length]).hexdigest(),
                        partitions=partitions, vfs_rom=VFS_ROM_QSTR in data[app_offset:length])


def check_release(info: FirmwareInfo, source: str) -> None:
    """Refuse firmware that is not MicroPython, or not one of SUPPORTED_RELEASES."""
    hint = download_hint(info.chip)
    supported = ", ".join(SUPPORTED_RELEASES)
    if info.project != PROJECT_NAME:
        raise FirmwareError(f"{source} is not MicroPython (its project is "
                            f"{info.project or 'unnamed'!r}, version {info.version!r}); {hint}")
    if not info.is_release:
        raise FirmwareError(f"{source} is MicroPython {info.version}, not a release build "
                            f"(a preview or custom build); supported releases: {supported}; "
                            f"{hint}")
    if info.version not in SUPPORTED_RELEASES:
        raise FirmwareError(f"{source} is MicroPython {info.version}, which these tools do not "
                            f"support (supported: {supported}); {hint}")
    if info.version in ROMFS_RELEASES and not (info.vfs_rom and
                                               (info.app_only or info.romfs is not None)):
        raise FirmwareError(
            f"{source} is MicroPython {info.version} without ROMFS ({code_on_flash(info)}): "
            f"these tools take {info.version} only as a ROMFS build (MICROPY_VFS_ROM and a "
            f"`{ROMFS_LABEL}` partition, docs/technician.md); its stock build runs the code "
            f"from files like {RECOMMENDED_RELEASE}, which has run the app on a board: {hint}")


@dataclass
class Pins:
    path: Path
    sha256: dict[str, str]  # hash -> the file name it was pinned for


def find_pins(explicit: Path | None = None) -> Path | None:
    """The pins file to use: --pins, else $LAMPLIGHTER_FIRMWARE_PINS, else
    ./lamplighter-firmware.toml if it exists; None: no pins (the release check only)."""
    if explicit is not None:
        return Path(explicit)
    env = os.environ.get(PINS_ENV)
    if env:
        return Path(env)
    default = Path(PINS_FILE)
    return default if default.is_file() else None


def load_pins(path: Path) -> Pins:
    """Read a pins file:

        [[firmware]]
        file = "ESP32_GENERIC-v1.24.1.bin"
        sha256 = "<64 hex digits>"
    """
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except OSError as exc:
        raise FirmwareError(f"cannot read the firmware pins file {path}: {exc.strerror}") \
            from None
    except tomllib.TOMLDecodeError as exc:
        raise FirmwareError(f"the firmware pins file {path} is not valid TOML: {exc}") from None
    entries = doc.get("firmware")
    if not isinstance(entries, list) or not entries:
        raise FirmwareError(f"the firmware pins file {path} pins nothing: it needs "
                            "firmware entries, each with a file name and its sha256 (see "
                            "docs/technician.md)")
    pins: dict[str, str] = {}
    for n, entry in enumerate(entries, 1):
        digest = str(entry.get("sha256", "")).strip().lower() if isinstance(entry, dict) else ""
        if not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise FirmwareError(f"the firmware pins file {path}: entry {n} has no valid sha256 "
                                "(64 hex digits; `sha256sum FILE` prints it)")
        pins[digest] = str(entry.get("file", ""))
    return Pins(Path(path), pins)


def check_pinned(info: FirmwareInfo, pins: Pins, source: str) -> str:
    """Refuse a file whose hash is not pinned; returns the pinned name it matched.

    A factory image is accepted when the firmware it was built from (its first
    firmware_length bytes) is pinned: its filesystem differs for every node.
    """
    for digest in (info.sha256, info.firmware_sha256):
        if digest in pins.sha256:
            return pins.sha256[digest] or digest
    raise FirmwareError(
        f"{source} (sha256 {info.sha256}) is not pinned in {pins.path}: this depot has not "
        f"vetted that file. Use a file listed there, or {download_hint(info.chip)} and add "
        "its sha256 there once it has been vetted")


def vet_firmware(data: bytes, source: str, pins_path: Path | None = None) -> FirmwareInfo:
    """Every check before a firmware file is written anywhere: an ESP image with an app
    descriptor, a supported MicroPython release, and (with a pins file) a pinned file."""
    info = read_firmware(data, source)
    check_release(info, source)
    if pins_path is not None:
        check_pinned(info, load_pins(pins_path), source)
    return info


def code_on_flash(info: FirmwareInfo) -> str:
    """Where a node with this firmware runs its code from, and why (its ROMFS partition)."""
    part = info.romfs
    if info.app_only:
        return ("app-only image: the board's own partition table decides whether the code "
                "runs from flash (a `romfs` partition) or from files")
    if part is None:
        built = " (built with ROMFS, but no partition for it)" if info.vfs_rom else ""
        return (f"no ROMFS partition in its partition table{built}: the node runs its code "
                "from its files")
    where = f"ROMFS partition `{part.label}` at {part.offset:#x} ({part.size // 1024} KiB)"
    if not info.vfs_rom:
        return (f"{where}, but the firmware was built without ROMFS (no vfs.VfsRom): the "
                "node runs its code from its files")
    return f"{where}: the node runs its code from flash"


def describe(info: FirmwareInfo) -> str:
    kind = "app-only image" if info.app_only else "firmware"
    idf = f", ESP-IDF {info.idf_version}" if info.idf_version else ""
    return f"MicroPython {info.version} {kind} for {info.chip.upper()}{idf}"
