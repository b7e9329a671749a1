"""Factory images with the code on flash: a firmware whose partition table has a `romfs`
partition, built with ROMFS, gets the app's code image there, which the node's own
core/app_image.py (run on the MicroPython unix port against that partition's bytes) keeps
and mounts at its first boot; without one the tool says the node runs its code from files.

The firmware files are laid out like micropython.org's (tests/rigs/esp_firmware.py); the ROMFS
one has ESP32_GENERIC's ROMFS variant table (partitions-4MiB-romfs.csv) plus the vfs partition.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

import tools.cli.device  # noqa: F401  (attaches the device commands)
from tests.rigs.esp_firmware import PARTITIONS_4MIB, PARTITIONS_4MIB_ROMFS, write_firmware
from tests.rigs.micropython import run_micropython
from tools.cli.main import app
from tools.emulator.fleet_process import FleetServer
from tools.technician import app_romfs
from tools.technician.factory_image import VFS_OFFSET, read_filesystem

BASE = 0x1000  # the factory file starts at the ESP32's bootloader offset
ROMFS_OFFSET, ROMFS_SIZE = 0x1E0000, 0x20000
REPO = Path(__file__).resolve().parents[2]

# The node's boot against a fake vfs whose ROMFS partition is `part.bin` (rom_ioctl ops 1
# and 2 read it; 3, 4, 5 and 6 are the rewrite, counted), after packing the slot itself.
NODE_BOOT = """
import sys, json, binascii, vfs as _real
from core import app_image as own
entries, size = own.layout("./slots/a")
mine = bytearray(size)
own.write_image(own._Writer(buffer=mine), entries)
del sys.modules["core.app_image"]

class Fake:
    VfsRom = _real.VfsRom
    mount = staticmethod(_real.mount)
    umount = staticmethod(_real.umount)

    def __init__(self, part):
        self.part = part
        self.ops = []

    def rom_ioctl(self, op, *args):
        self.ops.append(op)
        if op == 1:
            return 1
        if op == 2:
            return memoryview(self.part)
        raise OSError(op)  # a rewrite

with open("part.bin", "rb") as f:
    part = f.read()
fake = Fake(part)
sys.modules["vfs"] = fake
import core
delattr(core, "app_image")
from core import app_image
where = app_image.mount("./slots/a")
sys.modules["vfs"] = _real
import core.node
print(json.dumps({"mount": where, "ops": fake.ops, "node": core.node.__file__,
                  "same_bytes": bytes(mine) == part[:len(mine)], "size": len(mine)}))
"""


@pytest.fixture(autouse=True)
def trust_the_server(live_server: FleetServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAMPLIGHTER_CA", str(live_server.verify))
    monkeypatch.delenv("LAMPLIGHTER_FIRMWARE_PINS", raising=False)


def factory_image(server: FleetServer, firmware: Path, out: Path, pole: str):
    result = CliRunner().invoke(app, ["device", "factory-image", "--firmware", str(firmware),
                                      "--pole", pole, "--out", str(out), "--server", server.url,
                                      "--token", server.operator_token, "--no-wifi"])
    return result.exit_code, " ".join(result.output.split())


def poles(server: FleetServer) -> set[str]:
    return {d["pole_id"] for d in httpx.get(f"{server.url}/api/v1/devices",
                                            headers=server.operator_headers,
                                            verify=server.ssl_context).json()}


def romfs_firmware(tmp_path: Path, table=PARTITIONS_4MIB_ROMFS, vfs_rom: bool = True) -> Path:
    return write_firmware(tmp_path / "ESP32_ROMFS-v1.25.0.bin", "esp32", "v1.25.0",
                          partitions=table, vfs_rom=vfs_rom)


def test_the_image_holds_the_code_where_the_node_keeps_it_and_the_node_keeps_it(
        live_server: FleetServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the slot's path as the unix port names it (an ESP32 names it /slots/a: next test)
    monkeypatch.setattr(app_romfs, "NODE_APP_ROOT", "./slots/a")
    out = tmp_path / "R-1.bin"
    code, said = factory_image(live_server, romfs_firmware(tmp_path), out, "R-1")
    assert code == 0, said
    assert ("code: ROMFS partition `romfs` at 0x1e0000 (128 KiB): the node runs its code from "
            "flash") in said
    data = out.read_bytes()
    part = data[ROMFS_OFFSET - BASE:ROMFS_OFFSET - BASE + ROMFS_SIZE]
    assert part[:3] == app_romfs.ROMFS_MAGIC  # a ROMFS image starts the partition

    flash = tmp_path / "flash"
    for path, content in read_filesystem(data[VFS_OFFSET - BASE:]).items():
        (flash / path).parent.mkdir(parents=True, exist_ok=True)
        (flash / path).write_bytes(content)
    (flash / "part.bin").write_bytes(part)
    proc = run_micropython(NODE_BOOT, path_dirs=[flash / "slots" / "a" / "lib"], cwd=flash,
                           heap_kb=600)  # room for its own copy and the partition's bytes
    node = json.loads(proc.stdout.strip().splitlines()[-1])
    # the node packs the same bytes from its files, finds its stamp there and writes nothing
    assert node["same_bytes"] is True
    assert set(part[node["size"]:]) == {0xFF}
    assert node["mount"] == ["flash", node["size"], 0]
    assert node["ops"] == [1, 2]
    assert node["node"] == "/app/lib/core/node.mpy"

    # `device flash` says so before it looks for the board (a pty nobody answers on)
    master, slave = os.openpty()
    try:
        result = CliRunner().invoke(app, ["device", "flash", "--port", os.ttyname(slave),
                                          "--firmware", str(out), "--baud", "115200"])
    finally:
        os.close(master)
        os.close(slave)
    said = " ".join(result.output.split())
    assert ("the node runs its code from flash (this image already holds the app's code image "
            "there)") in said
    assert "no answer from the board's ROM loader" in said


def test_the_stamp_names_the_slot_as_an_esp32_node_does() -> None:
    spec = importlib.util.spec_from_file_location("bootsel", REPO / "firmware" / "bootsel.py")
    assert spec is not None and spec.loader is not None
    bootsel = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bootsel)
    assert "else \"\"" in (REPO / "firmware" / "boot.py").read_text()  # an ESP32's root
    assert app_romfs.NODE_APP_ROOT == bootsel.slot_dir("a", "") == "/slots/a"
    files = {"slots/a/lib/core/x.mpy": b"M\x06", "slots/a/app_version.json": b"{}"}
    assert app_romfs.stamp(files) != app_romfs.stamp(files, "./slots/a")


@pytest.mark.parametrize("table, vfs_rom, says", [
    (PARTITIONS_4MIB, False, "code: no ROMFS partition in its partition table: the node runs "
                             "its code from its files"),
    (PARTITIONS_4MIB_ROMFS, False, "code: ROMFS partition `romfs` at 0x1e0000 (128 KiB), but "
                                   "the firmware was built without ROMFS (no vfs.VfsRom): the "
                                   "node runs its code from its files"),
])
def test_without_romfs_the_tool_says_the_node_runs_from_its_files(
        live_server: FleetServer, tmp_path: Path, table, vfs_rom: bool, says: str) -> None:
    firmware = write_firmware(tmp_path / "ESP32_GENERIC-v1.24.1.bin", "esp32", "v1.24.1",
                              partitions=table, vfs_rom=vfs_rom)
    out = tmp_path / "F-1.bin"
    code, said = factory_image(live_server, firmware, out, "F-1")
    assert code == 0, said
    assert says in said
    region = out.read_bytes()[ROMFS_OFFSET - BASE:VFS_OFFSET - BASE]
    assert set(region) == {0xFF}  # nothing written where a ROMFS partition would be


def test_a_romfs_partition_too_small_for_the_code_is_refused_before_registering(
        live_server: FleetServer, tmp_path: Path) -> None:
    table = [p for p in PARTITIONS_4MIB_ROMFS if p[0] != "romfs"] + \
        [("romfs", 1, 0x8F, 0x1F8000, 0x8000)]
    out = tmp_path / "S-1.bin"
    code, said = factory_image(live_server, romfs_firmware(tmp_path, table), out, "S-1")
    assert code == 1
    assert "does not fit the firmware's `romfs` partition (32768 bytes at 0x1f8000)" in said
    assert "Use a firmware whose ROMFS partition holds at least" in said
    assert not out.exists() and "S-1" not in poles(live_server)


def test_the_32_bit_port_runs_the_code_from_the_image_outside_its_heap(tmp_path: Path) -> None:
    """bench node_day's code-on-flash figures: the WebAssembly port (32-bit) holds the code
    image the tools pack as its ROMFS segment, outside its heap, and the node's app_image
    mounts it there; the resident modules then take less heap than from the files."""
    from bench._wasm32 import wasm_unavailable
    from bench.node_day import _resident_files_bytes_32
    from tools.emulator.launcher import build_firmware, install_factory_app

    if wasm_unavailable():
        pytest.skip(str(wasm_unavailable()))
    flash = tmp_path / "probe"
    install_factory_app(flash, build_firmware())
    files_32, files_64, image_32 = _resident_files_bytes_32(flash)
    assert image_32 is not None  # the image mounted from the segment ("flash"), not refused
    assert files_32 < files_64
    assert image_32 < 0.7 * files_32  # bytecode and constants stayed in the image
