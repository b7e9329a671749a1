"""Stand-ins for MicroPython firmware files, laid out like the real ones.

No MicroPython .bin is available offline, so these are built to the same layout with esptool's
own image classes (headers, segments, checksum, SHA-256 digest):

- app_image(): an ESP-IDF app image whose first segment (flash-mapped data, DROM) starts with
  the application descriptor esp_app_desc_t (magic 0xABCD5432, secure_version, reserved,
  version[32], project_name[32], time[16], date[16], idf_ver[32], app_elf_sha256[32], ...), so
  the descriptor sits at offset 0x20 of the app image, as in a real one;
- merged_image(): what micropython.org serves as ESP32_GENERIC-vX.Y.Z.bin, a file written at
  the chip's bootloader offset (ESP32: 0x1000) holding the bootloader, the partition table at
  flash 0x8000 (MicroPython's ESP32_GENERIC 4 MiB table) and the app at flash 0x10000;
- with vfs_rom=True, a firmware built with ROMFS: its app holds the qstr text "VfsRom" (the
  name of vfs.VfsRom), and PARTITIONS_4MIB_ROMFS is a table with the `romfs` partition the
  ESP32 port looks for (by label) beside the vfs partition where ESP32_GENERIC has it.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

from esptool.bin_image import ELFSection
from esptool.targets import CHIP_DEFS

# ports/esp32/partitions-4MiB.csv: (label, type, subtype, offset, size)
PARTITIONS_4MIB = [("nvs", 1, 0x02, 0x9000, 0x6000), ("phy_init", 1, 0x01, 0xF000, 0x1000),
                   ("factory", 0, 0x00, 0x10000, 0x1F0000), ("vfs", 1, 0x81, 0x200000, 0x200000)]
# ports/esp32/partitions-4MiB-romfs.csv (the ESP32_GENERIC ROMFS variant: factory shrunk to
# 0x1D0000, `romfs, data, 0x8f, 0x1E0000, 0x20000`), plus the vfs partition of the 4 MiB table
PARTITIONS_4MIB_ROMFS = [("nvs", 1, 0x02, 0x9000, 0x6000), ("phy_init", 1, 0x01, 0xF000, 0x1000),
                         ("factory", 0, 0x00, 0x10000, 0x1D0000),
                         ("romfs", 1, 0x8F, 0x1E0000, 0x20000),
                         ("vfs", 1, 0x81, 0x200000, 0x200000)]


def app_descriptor(version: str, project: str = "micropython",
                   idf_ver: str = "v5.2.2") -> bytes:
    """esp_app_desc_t (256 bytes) as ESP-IDF lays it out."""
    head = struct.pack("<II8s32s32s16s16s32s32s", 0xABCD5432, 0, b"", version.encode(),
                       project.encode(), b"12:00:00", b"Nov 29 2024", idf_ver.encode(),
                       os.urandom(32))
    return head + b"\0" * (256 - len(head))


def app_image(chip: str = "esp32", version: str = "v1.24.1", project: str = "micropython",
              descriptor: bool = True, vfs_rom: bool = False) -> bytes:
    cls = CHIP_DEFS[chip]
    img = cls.BOOTLOADER_IMAGE()  # esptool's image class for the chip (apps use the same)
    img.entrypoint = 0x40080400
    qstrs = b"mount\0umount\0" + (b"VfsRom\0rom_ioctl\0" if vfs_rom else b"")
    rodata = (app_descriptor(version, project) if descriptor else b"\x5a" * 256) + \
        os.urandom(1024).replace(b"V", b"v") + qstrs
    img.segments = [ELFSection(b".flash.appdesc", cls.DROM_MAP_START + 0x20, rodata, 0),
                    ELFSection(b".iram0.text", 0x40080000, os.urandom(2048), 0)]
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"app-{os.getpid()}-{os.urandom(4).hex()}"
    try:
        img.save(str(path))
        return path.read_bytes()
    finally:
        path.unlink(missing_ok=True)


def bootloader_image(chip: str = "esp32") -> bytes:
    img = CHIP_DEFS[chip].BOOTLOADER_IMAGE()
    img.entrypoint = 0x40080400
    img.segments = [ELFSection(b".dram0.data", 0x3FFB0000, b"\x11" * 512, 0),
                    ELFSection(b".iram0.text", 0x40080000, b"\x22" * 1024, 0)]
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"boot-{os.getpid()}-{os.urandom(4).hex()}"
    try:
        img.save(str(path))
        return path.read_bytes()
    finally:
        path.unlink(missing_ok=True)


def partition_table(partitions=PARTITIONS_4MIB) -> bytes:
    rows = b"".join(struct.pack("<2sBBII16sI", b"\xaa\x50", t, st, off, size, label.encode(), 0)
                    for label, t, st, off, size in partitions)
    return rows + b"\xff" * (0xC00 - len(rows))


def merged_image(chip: str = "esp32", version: str = "v1.24.1", project: str = "micropython",
                 descriptor: bool = True, partitions=PARTITIONS_4MIB,
                 vfs_rom: bool = False) -> bytes:
    """A micropython.org-style .bin: bootloader, partition table, app, from the chip's
    bootloader offset."""
    base = int(CHIP_DEFS[chip].BOOTLOADER_FLASH_OFFSET)
    out = bytearray(b"\xff" * (0x10000 - base))
    boot = bootloader_image(chip)
    out[:len(boot)] = boot
    table = partition_table(partitions)
    out[0x8000 - base:0x8000 - base + len(table)] = table
    return bytes(out) + app_image(chip, version, project, descriptor, vfs_rom)


def write_firmware(path: Path, chip: str = "esp32", version: str = "v1.24.1",
                   **kwargs) -> Path:
    """merged_image() written to `path` (named like micropython.org's files by callers)."""
    path.write_bytes(merged_image(chip, version, **kwargs))
    return path
