"""Factory images: MicroPython firmware + a littlefs2 filesystem (app, fleet CA, one node's
enrollment), and the app's code image where the firmware has a ROMFS partition."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.technician import app_romfs
from tools.technician.firmware import (
    PARTITION_TABLE_OFFSET,
    FirmwareInfo,
    download_hint,
    vet_firmware,
)
from tools.technician.flashing import FlashError, flash_offset, read_image_info
from tools.technician.provisioning import (
    FLEET_CA,
    WIFI,
    ProvisionError,
    Site,
    app_files,
    check_link,
    slot_pointer,
)

# MicroPython's ESP32_GENERIC 4 MiB layout (ports/esp32/partitions-4MiB.csv):
#   nvs 0x9000+0x6000, phy_init 0xf000+0x1000, factory app 0x10000+0x1F0000,
#   vfs (data, fat) 0x200000+0x200000, mounted by MicroPython as littlefs v2.
VFS_OFFSET = 0x200000
VFS_SIZE = 0x200000
BLOCK_SIZE = 4096
BLOCK_COUNT = VFS_SIZE // BLOCK_SIZE  # 512
# MicroPython's VfsLfs2 defaults (extmod/vfs_lfs.c): read/prog size 32, lookahead 32
LFS_READ_SIZE = 32
LFS_PROG_SIZE = 32
LFS_LOOKAHEAD = 32
SUPPORTED_CHIP = "esp32"
BOARD = "esp32_devkitc"  # the board a factory image is for: its slot holds this board's files
ENROLLMENT_FILE = "enrollment.json"


class FactoryImageError(Exception):
    """The image cannot be built; the message says why."""


def build_filesystem(files: dict[str, bytes]) -> bytes:
    """A littlefs2 image of the vfs partition holding `files` (relative paths)."""
    from littlefs import LittleFS

    fs = LittleFS(block_size=BLOCK_SIZE, block_count=BLOCK_COUNT, read_size=LFS_READ_SIZE,
                  prog_size=LFS_PROG_SIZE, lookahead_size=LFS_LOOKAHEAD)
    for path, data in files.items():
        parent = path.rpartition("/")[0]
        if parent:
            fs.makedirs(parent, exist_ok=True)
        with fs.open(path, "wb") as f:
            f.write(data)
    return bytes(fs.context.buffer)


def read_filesystem(image: bytes) -> dict[str, bytes]:
    """Every file in a vfs partition image (for checks): relative path -> content."""
    from littlefs import LittleFS

    fs = LittleFS(block_size=BLOCK_SIZE, block_count=BLOCK_COUNT, read_size=LFS_READ_SIZE,
                  prog_size=LFS_PROG_SIZE, lookahead_size=LFS_LOOKAHEAD, mount=False)
    fs.context.buffer[:] = image
    fs.mount()
    out: dict[str, bytes] = {}
    for root, _dirs, names in fs.walk("/"):
        for name in names:
            path = f"{root.rstrip('/')}/{name}".lstrip("/")
            with fs.open(path, "rb") as f:
                out[path] = f.read()
    return out


def node_image_files(app: dict[str, bytes], enrollment: dict[str, Any],
                     key_ring: dict[str, Any] | None,
                     ca_der: bytes | None = None,
                     wifi: bytes | None = None) -> dict[str, bytes]:
    """Every file of a node's image filesystem: the app, slot pointer, key ring, fleet CA,
    Wi-Fi credentials (`wifi`, the wifi.json bytes) and the enrollment last."""
    files = dict(app)
    files["slot.json"] = slot_pointer()
    if key_ring is not None:
        files["keys.json"] = json.dumps(key_ring).encode()
    if ca_der is not None:
        files[FLEET_CA] = ca_der
    if wifi is not None:
        files[WIFI] = wifi
    files[ENROLLMENT_FILE] = json.dumps(enrollment).encode()
    return files


def merge(firmware: bytes, filesystem: bytes, out: Path,
          code: tuple[int, bytes] | None = None) -> int:
    """One flashable file: firmware at the chip's bootloader offset, the fs at VFS_OFFSET and
    `code` (offset, the app's ROMFS image from code_image()) in the ROMFS partition.

    The file starts at the bootloader offset (0x1000 on an ESP32), like MicroPython's own
    image, so `lamplighter device flash` writes it where it writes any firmware. Returns that
    offset.
    """
    from esptool.cmds import merge_bin

    base = flash_offset(SUPPORTED_CHIP)
    if base + len(firmware) > VFS_OFFSET:
        raise FactoryImageError(f"the firmware ({len(firmware)} bytes) overlaps the filesystem "
                                f"partition at {VFS_OFFSET:#x}")
    parts = [(base, firmware), (VFS_OFFSET, filesystem)]
    if code is not None:
        if base + len(firmware) > code[0]:
            raise FactoryImageError(f"the firmware ({len(firmware)} bytes) overlaps the ROMFS "
                                    f"partition at {code[0]:#x}")
        parts.insert(1, code)
    merge_bin(parts, chip=SUPPORTED_CHIP, output=str(out), target_offset=base)
    return base


def code_image(info: FirmwareInfo, app: dict[str, bytes]) -> tuple[int, bytes] | None:
    """(offset, image) of the app's ROMFS code image for the firmware's `romfs` partition, as
    the node packs it (same bytes, same stamp: it keeps it at first boot); None when the
    firmware has no ROMFS (the node then runs from its files: code_on_flash says so).
    Refuses an image the partition cannot hold."""
    part = info.romfs
    if part is None or not info.vfs_rom:
        return None
    image = app_romfs.code_image(app)
    if image is None:
        return None
    if len(image) > part.size:
        raise FactoryImageError(
            f"the app's code image ({len(image)} bytes) does not fit the firmware's "
            f"`{part.label}` partition ({part.size} bytes at {part.offset:#x}): the node would "
            "run its code from its files. Use a firmware whose ROMFS partition holds at least "
            f"{-(-len(image) // BLOCK_SIZE) * BLOCK_SIZE:#x} bytes (docs/technician.md)")
    return part.offset, image


def check_firmware(firmware: bytes, source: str, pins: Path | None = None) -> FirmwareInfo:
    """Refuse what cannot become a factory image: not an ESP32 image, not a supported
    MicroPython release, not pinned (with `pins`), an app-only image, or a partition table
    without the vfs partition where the filesystem goes."""
    try:
        info = read_image_info(firmware, source)
    except FlashError as exc:
        raise FactoryImageError(str(exc)) from None
    if info.chip != SUPPORTED_CHIP:
        raise FactoryImageError(
            f"{source} is built for {info.chip.upper()}; factory images use the ESP32 generic "
            "4 MiB layout (filesystem at 0x200000): give an ESP32_GENERIC firmware; "
            f"{download_hint(SUPPORTED_CHIP)}")
    try:
        fw = vet_firmware(firmware, source, pins)
    except FlashError as exc:
        raise FactoryImageError(str(exc)) from None
    if fw.app_only:
        raise FactoryImageError(
            f"{source} is an app-only image (.app-bin): a factory image needs the full firmware "
            f".bin (bootloader, partition table, app); {download_hint(SUPPORTED_CHIP)}")
    if fw.partitions and not any(p.offset == VFS_OFFSET and p.size == VFS_SIZE
                                 for p in fw.partitions):
        table = ", ".join(f"{p.label} {p.offset:#x}+{p.size:#x}" for p in fw.partitions)
        raise FactoryImageError(
            f"{source}'s partition table ({table}) has no {VFS_SIZE:#x}-byte partition at "
            f"{VFS_OFFSET:#x}, where the factory image's filesystem goes; "
            f"{download_hint(SUPPORTED_CHIP)}")
    _check_romfs_partition(fw, source)
    return fw


def _check_romfs_partition(fw: FirmwareInfo, source: str) -> None:
    """Refuse a `romfs` partition that is not a block-aligned region of its own between the
    partition table and the filesystem (the ROMFS image would overwrite something)."""
    part = fw.romfs
    if part is None:
        return
    where = f"{source}'s `{part.label}` partition ({part.offset:#x}+{part.size:#x})"
    fix = ("give the firmware built for it with its own partition table, laid out as in "
           "docs/technician.md")
    if part.offset % BLOCK_SIZE or part.size % BLOCK_SIZE or part.size == 0:
        raise FactoryImageError(f"{where} is not in whole {BLOCK_SIZE}-byte blocks; {fix}")
    end = part.offset + part.size
    if flash_offset(SUPPORTED_CHIP) + fw.firmware_length > part.offset:
        raise FactoryImageError(f"{where} starts inside the firmware ({fw.firmware_length} "
                                f"bytes from {flash_offset(SUPPORTED_CHIP):#x}); {fix}")
    if part.offset < PARTITION_TABLE_OFFSET + 0x1000 or end > VFS_OFFSET:
        raise FactoryImageError(f"{where} is not between the partition table and the "
                                f"filesystem at {VFS_OFFSET:#x}; {fix}")
    for other in fw.partitions:
        if other is not part and other.offset < end and part.offset < other.offset + other.size:
            raise FactoryImageError(f"{where} overlaps `{other.label}` "
                                    f"({other.offset:#x}+{other.size:#x}); {fix}")


@dataclass
class BuiltImage:
    pole_id: str
    device_id: str
    enrollment_code: str
    path: Path


Register = Callable[[list[dict[str, Any]]], list[dict[str, Any]]]


def build_images(firmware_path: Path, sites: list[Site], out: Path, server: str,
                 register: Register, key_ring: dict[str, Any] | None = None,
                 app_dir: Path | None = None,
                 on_image: Callable[[BuiltImage], None] | None = None,
                 ca_der: bytes | None = None, insecure_http: bool = False,
                 pins: Path | None = None,
                 on_firmware: Callable[[FirmwareInfo], None] | None = None,
                 wifi: bytes | None = None) -> list[BuiltImage]:
    """Register `sites` as enrollments in one batch and write one merged image per node.

    With one site, `out` is the image file; with several, `out` is a directory that gets
    <pole_id>.bin per node. Each image pins `ca_der` (the fleet CA, DER) as /fleet_ca.der,
    which an https:// `server` needs; an http:// `server` is refused unless `insecure_http`,
    which the enrollment document then records. The firmware is checked (check_firmware,
    with the `pins` file if given) before anything is registered or written. `wifi` (the
    wifi.json bytes, tools.technician.wifi) goes into every image: one network for the batch.
    """
    try:
        link_fields = check_link(server, ca_der, insecure_http)
    except ProvisionError as exc:
        raise FactoryImageError(str(exc)) from None
    try:
        firmware = Path(firmware_path).read_bytes()
    except OSError as exc:
        raise FactoryImageError(f"cannot read {firmware_path}: {exc.strerror}") from None
    info = check_firmware(firmware, str(firmware_path), pins)
    if on_firmware:
        on_firmware(info)
    app = app_files(app_dir, board=BOARD) if app_dir else app_files(board=BOARD)
    code = code_image(info, app)  # before any node is registered: it may not fit
    creds = register([s.registration(BOARD) for s in sites])
    built = []
    if len(sites) > 1:
        out.mkdir(parents=True, exist_ok=True)
    for site, cred in zip(sites, creds, strict=True):
        enrollment = {"code": cred["enrollment_code"], "server": server.rstrip("/"),
                      "pole_id": site.pole_id, **link_fields}
        fs = build_filesystem(node_image_files(app, enrollment, key_ring, ca_der, wifi))
        path = out / f"{site.pole_id}.bin" if len(sites) > 1 else out
        merge(firmware, fs, path, code)
        image = BuiltImage(site.pole_id, cred["device_id"], cred["enrollment_code"], path)
        built.append(image)
        if on_image:
            on_image(image)
    return built


def write_depot_csv(images: list[BuiltImage], path: Path) -> None:
    """The depot's sheet: which image goes on which pole, and its enrollment code."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["pole_id", "device_id", "enrollment_code", "image", "flash_offset"])
        for image in images:
            writer.writerow([image.pole_id, image.device_id, image.enrollment_code,
                             str(image.path), hex(flash_offset(SUPPORTED_CHIP))])
