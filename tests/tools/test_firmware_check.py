"""Pinned firmware: what `device flash` and `device factory-image` say about the firmware file
before anything is written.

The firmware files are laid out like micropython.org's ESP32_GENERIC .bin (bootloader,
partition table at 0x8000, app at 0x10000 whose ESP-IDF app descriptor carries the version):
tests/rigs/esp_firmware.py builds them, since no real .bin is on this machine. The port in the
flash tests is a pty nobody answers on: a refused file must leave it untouched (nothing is
written to it), and a file that passes reaches the board detection, which fails there.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

import tools.cli.device  # noqa: F401  (attaches the device commands)
from tests.rigs.esp_firmware import (
    PARTITIONS_4MIB,
    PARTITIONS_4MIB_ROMFS,
    app_image,
    merged_image,
    write_firmware,
)
from tools.cli.main import app
from tools.technician.factory_image import (
    FactoryImageError,
    build_filesystem,
    check_firmware,
    merge,
)
from tools.technician.firmware import (
    RECOMMENDED_RELEASE,
    SUPPORTED_RELEASES,
    read_firmware,
)
from tools.technician.flashing import write_plan

REPO = Path(__file__).resolve().parents[2]
GET_IT = ("get ESP32_GENERIC-v1.24.1.bin from https://micropython.org/download/ESP32_GENERIC/")


@pytest.fixture
def port():
    """A serial port (pty) on which no ROM loader answers; yields (path, bytes written)."""
    master, slave = os.openpty()
    os.set_blocking(master, False)

    def written() -> bytes:
        try:
            return os.read(master, 65536)
        except BlockingIOError:
            return b""

    try:
        yield os.ttyname(slave), written
    finally:
        os.close(master)
        os.close(slave)


@pytest.fixture(autouse=True)
def no_default_pins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts in an empty directory with no pins file from the environment."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LAMPLIGHTER_FIRMWARE_PINS", raising=False)


def flash(port: str, firmware: Path, *args: str):
    result = CliRunner().invoke(app, ["device", "flash", "--port", port, "--firmware",
                                      str(firmware), "--baud", "115200", *args])
    return result.exit_code, " ".join(result.output.split())


def pins_file(path: Path, *files: Path) -> Path:
    entries = [f'[[firmware]]\nfile = "{f.name}"\n'
               f'sha256 = "{hashlib.sha256(f.read_bytes()).hexdigest()}"\n' for f in files]
    path.write_text("# firmware this depot has vetted\n" + "".join(entries))
    return path


# --- device flash ------------------------------------------------------------------------------

def test_a_supported_release_names_its_version_and_goes_on_to_the_board(tmp_path, port) -> None:
    fw = write_firmware(tmp_path / "ESP32_GENERIC-v1.24.1.bin", "esp32", "v1.24.1")
    code, said = flash(port[0], fw)
    assert f"{fw}: MicroPython v1.24.1 firmware for ESP32, ESP-IDF v5.2.2" in said
    assert ("code: no ROMFS partition in its partition table: the node runs its code from its "
            "files") in said
    # past the firmware check: it went on to look for the board's ROM loader
    assert code == 1 and "no answer from the board's ROM loader" in said


def test_the_stock_v1_25_build_is_refused_as_it_runs_the_code_from_files(tmp_path,
                                                                          port) -> None:
    fw = write_firmware(tmp_path / "ESP32_GENERIC-v1.25.0.bin", "esp32", "v1.25.0")
    code, said = flash(port[0], fw)
    assert code == 1 and port[1]() == b""
    assert f"{fw} is MicroPython v1.25.0 without ROMFS (no ROMFS partition" in said
    assert "only as a ROMFS build" in said and GET_IT in said


def test_a_v1_25_romfs_build_says_the_code_runs_from_flash_and_goes_on(tmp_path, port) -> None:
    fw = write_firmware(tmp_path / "ESP32_ROMFS-v1.25.0.bin", "esp32", "v1.25.0",
                        partitions=PARTITIONS_4MIB_ROMFS, vfs_rom=True)
    code, said = flash(port[0], fw)
    assert f"{fw}: MicroPython v1.25.0 firmware for ESP32" in said
    assert ("code: ROMFS partition `romfs` at 0x1e0000 (128 KiB): the node runs its code from "
            "flash (the node packs its code there at its first boot)") in said
    assert code == 1 and "no answer from the board's ROM loader" in said


@pytest.mark.parametrize("build", ["partition only", "ROMFS only"])
def test_a_romfs_build_needs_both_the_partition_and_vfs_rom(tmp_path, port, build) -> None:
    table = PARTITIONS_4MIB_ROMFS if build == "partition only" else PARTITIONS_4MIB
    fw = write_firmware(tmp_path / "ESP32_GENERIC-v1.24.1.bin", "esp32", "v1.24.1",
                        partitions=table, vfs_rom=build == "ROMFS only")
    code, said = flash(port[0], fw)
    assert "the node runs its code from its files" in said
    assert "from flash" not in said
    assert code == 1 and "no answer from the board's ROM loader" in said


@pytest.mark.parametrize("version", ["v1.21.0", "v1.22.2", "v1.26.0"])
def test_an_unsupported_release_is_refused_naming_the_file_to_get(tmp_path, port,
                                                                  version) -> None:
    fw = write_firmware(tmp_path / f"ESP32_GENERIC-{version}.bin", "esp32", version)
    code, said = flash(port[0], fw)
    assert code == 1
    assert f"{fw} is MicroPython {version}, which these tools do not support" in said
    assert "supported: " + ", ".join(SUPPORTED_RELEASES) in said
    assert GET_IT in said
    assert port[1]() == b""  # nothing was written to the port
    assert "ROM loader" not in said


def test_a_nightly_build_is_refused_as_not_a_release(tmp_path, port) -> None:
    fw = write_firmware(tmp_path / "ESP32_GENERIC-20250101-v1.25.0-preview.bin", "esp32",
                        "v1.25.0-preview.49.g0a1b2c3d")
    code, said = flash(port[0], fw)
    assert code == 1 and "not a release build" in said and GET_IT in said
    assert port[1]() == b""


def test_firmware_that_is_not_micropython_is_refused(tmp_path, port) -> None:
    fw = write_firmware(tmp_path / "blink.bin", "esp32", "v1.24.1", project="blink")
    code, said = flash(port[0], fw)
    assert code == 1 and "is not MicroPython (its project is 'blink'" in said and GET_IT in said
    assert port[1]() == b""


def test_an_image_without_an_app_descriptor_is_refused(tmp_path, port) -> None:
    fw = write_firmware(tmp_path / "old.bin", "esp32", "v1.24.1", descriptor=False)
    code, said = flash(port[0], fw)
    assert code == 1
    assert "has no ESP-IDF application descriptor" in said and GET_IT in said
    assert port[1]() == b""


@pytest.mark.parametrize("content", [b"\x7fELF\x01\x01\x01" + b"\0" * 200,  # the .elf
                                     b":020000040800F2\n" * 20,  # an Intel hex file
                                     b"PK\x03\x04" + os.urandom(300)])  # a zip
def test_a_file_that_is_not_an_esp32_image_is_refused(tmp_path, port, content) -> None:
    fw = tmp_path / "micropython.elf"
    fw.write_bytes(content)
    code, said = flash(port[0], fw)
    assert code == 1 and "is not an ESP firmware image" in said
    assert port[1]() == b""


def test_an_esp32_image_with_no_app_is_refused(tmp_path, port) -> None:
    fw = tmp_path / "bootloader-only.bin"
    fw.write_bytes(merged_image()[:0xF000])  # the bootloader and partition table, no app
    code, said = flash(port[0], fw)
    assert code == 1 and "holds no MicroPython app" in said and GET_IT in said


def test_the_s3_hint_names_the_s3_build(tmp_path, port) -> None:
    fw = write_firmware(tmp_path / "s3.bin", "esp32s3", "v1.20.0")
    code, said = flash(port[0], fw)
    assert code == 1 and "get ESP32_GENERIC_S3-v1.24.1.bin from " \
        "https://micropython.org/download/ESP32_GENERIC_S3/" in said


def test_the_version_is_read_where_micropython_org_puts_the_app() -> None:
    for chip, app_at in (("esp32", 0xF000), ("esp32s3", 0x10000), ("esp32c3", 0x10000)):
        info = read_firmware(merged_image(chip, "v1.24.0"))
        assert (info.chip, info.version, info.project) == (chip, "v1.24.0", "micropython")
        assert info.app_offset == app_at and not info.app_only
    # the app partition is taken from the partition table when it moves
    moved = [p if p[0] != "factory" else ("factory", 0, 0, 0x20000, 0x1E0000)
             for p in PARTITIONS_4MIB]
    data = merged_image(partitions=moved)
    data = data[:0xF000] + b"\xff" * 0x10000 + data[0xF000:]
    assert read_firmware(data).app_offset == 0x1F000


def test_an_app_only_image_is_written_at_the_app_partition_without_erasing(tmp_path) -> None:
    info = read_firmware(app_image("esp32", "v1.24.1"))
    assert info.app_only and info.version == "v1.24.1" and info.app_offset == 0
    assert write_plan(info, "esp32", erase=True) == (0x10000, False)
    assert write_plan(read_firmware(merged_image()), "esp32", erase=True) == (0x1000, True)


# --- pins --------------------------------------------------------------------------------------

def test_a_pinned_file_passes(tmp_path, port) -> None:
    fw = write_firmware(tmp_path / "ESP32_GENERIC-v1.24.1.bin")
    pins = pins_file(tmp_path / "pins.toml", fw)
    code, said = flash(port[0], fw, "--pins", str(pins))
    assert f"MicroPython v1.24.1 firmware for ESP32, ESP-IDF v5.2.2, pinned in {pins}" in said
    assert "no answer from the board's ROM loader" in said


def test_an_unpinned_file_is_refused_naming_its_hash_and_the_pins_file(tmp_path, port) -> None:
    vetted = write_firmware(tmp_path / "vetted.bin")
    other = write_firmware(tmp_path / "ESP32_GENERIC-v1.24.1.bin")  # same release, other bytes
    pins = pins_file(tmp_path / "pins.toml", vetted)
    code, said = flash(port[0], other, "--pins", str(pins))
    digest = hashlib.sha256(other.read_bytes()).hexdigest()
    assert code == 1
    assert f"{other} (sha256 {digest}) is not pinned in {pins}" in said
    assert port[1]() == b""


def test_the_depot_pins_file_in_the_current_directory_is_used(tmp_path, port) -> None:
    fw = write_firmware(tmp_path / "a.bin")
    other = write_firmware(tmp_path / "b.bin")
    pins_file(tmp_path / "lamplighter-firmware.toml", fw)  # tmp_path is the cwd here
    code, said = flash(port[0], other)
    assert code == 1 and "firmware pins: lamplighter-firmware.toml" in said
    assert "is not pinned in lamplighter-firmware.toml" in said
    code, said = flash(port[0], fw)
    assert "pinned in lamplighter-firmware.toml" in said and "ROM loader" in said


def test_the_pins_file_from_the_environment_is_used(tmp_path, port, monkeypatch) -> None:
    fw = write_firmware(tmp_path / "a.bin")
    pins = pins_file(tmp_path / "p.toml", write_firmware(tmp_path / "b.bin"))
    monkeypatch.setenv("LAMPLIGHTER_FIRMWARE_PINS", str(pins))
    code, said = flash(port[0], fw)
    assert code == 1 and f"is not pinned in {pins}" in said


def test_a_broken_pins_file_is_refused(tmp_path, port) -> None:
    fw = write_firmware(tmp_path / "a.bin")
    bad = tmp_path / "pins.toml"
    bad.write_text('[[firmware]]\nfile = "a.bin"\nsha256 = "not-a-hash"\n')
    code, said = flash(port[0], fw, "--pins", str(bad))
    assert code == 1 and "entry 1 has no valid sha256" in said
    bad.write_text("firmware = [\n")
    code, said = flash(port[0], fw, "--pins", str(bad))
    assert code == 1 and "is not valid TOML" in said
    code, said = flash(port[0], fw, "--pins", str(tmp_path / "missing.toml"))
    assert code == 1 and "cannot read the firmware pins file" in said
    assert port[1]() == b""


def test_a_factory_image_of_a_pinned_firmware_passes(tmp_path, port) -> None:
    fw = write_firmware(tmp_path / "ESP32_GENERIC-v1.24.1.bin")
    pins = pins_file(tmp_path / "pins.toml", fw)
    image = tmp_path / "P-1.bin"
    merge(fw.read_bytes(), build_filesystem({"enrollment.json": b"{}"}), image)
    code, said = flash(port[0], image, "--pins", str(pins))
    assert "MicroPython v1.24.1 firmware for ESP32" in said and f"pinned in {pins}" in said
    assert "ROM loader" in said
    # ... and one built from another firmware file is not
    other = tmp_path / "other.bin"
    merge(merged_image(), build_filesystem({"enrollment.json": b"{}"}), other)
    code, said = flash(port[0], other, "--pins", str(pins))
    assert code == 1 and "is not pinned" in said


# --- factory images ----------------------------------------------------------------------------

def test_a_factory_image_needs_the_full_bin_not_the_app_only_image() -> None:
    with pytest.raises(FactoryImageError) as exc:
        check_firmware(app_image("esp32", "v1.24.1"), "ESP32_GENERIC-v1.24.1.app-bin")
    assert "app-only image" in str(exc.value) and GET_IT in str(exc.value)


def test_a_factory_image_refuses_firmware_whose_filesystem_is_elsewhere() -> None:
    layout = [("nvs", 1, 2, 0x9000, 0x6000), ("phy_init", 1, 1, 0xF000, 0x1000),
              ("factory", 0, 0, 0x10000, 0x300000), ("vfs", 1, 0x81, 0x310000, 0xF0000)]
    with pytest.raises(FactoryImageError) as exc:
        check_firmware(merged_image(partitions=layout), "custom.bin")
    assert "no 0x200000-byte partition at 0x200000" in str(exc.value)
    assert "vfs 0x310000+0xf0000" in str(exc.value)


@pytest.mark.parametrize("romfs, says", [
    ((0x1F0000, 0x20000), "is not between the partition table and the filesystem at 0x200000"),
    ((0x1D0000, 0x20000), "overlaps `factory` (0x10000+0x1d0000)"),
    ((0x1E0000, 0x20800), "is not in whole 4096-byte blocks"),
    ((0x4000, 0x1000), "starts inside the firmware"),
])
def test_a_factory_image_refuses_a_romfs_partition_that_would_overwrite_something(
        romfs, says) -> None:
    table = [p for p in PARTITIONS_4MIB_ROMFS if p[0] != "romfs"] + [("romfs", 1, 0x8F, *romfs)]
    with pytest.raises(FactoryImageError) as exc:
        check_firmware(merged_image(version="v1.25.0", partitions=table, vfs_rom=True),
                       "ESP32_ROMFS-v1.25.0.bin")
    assert f"ESP32_ROMFS-v1.25.0.bin's `romfs` partition ({romfs[0]:#x}+{romfs[1]:#x})" \
        in str(exc.value)
    assert says in str(exc.value) and "docs/technician.md" in str(exc.value)


def test_a_factory_image_refuses_an_unsupported_release() -> None:
    with pytest.raises(FactoryImageError) as exc:
        check_firmware(merged_image(version="v1.20.0"), "ESP32_GENERIC-v1.20.0.bin")
    assert "MicroPython v1.20.0, which these tools do not support" in str(exc.value)
    assert GET_IT in str(exc.value)


# --- the guide ---------------------------------------------------------------------------------

def test_the_technician_guide_names_the_supported_releases_and_the_pins_file() -> None:
    guide = (REPO / "docs" / "technician.md").read_text()
    for release in SUPPORTED_RELEASES:
        assert release in guide
    assert f"ESP32_GENERIC-{RECOMMENDED_RELEASE}.bin" in guide
    assert "https://micropython.org/download/ESP32_GENERIC/" in guide
    assert "lamplighter-firmware.toml" in guide and "LAMPLIGHTER_FIRMWARE_PINS" in guide


def test_help_names_the_pins_option() -> None:
    for command in ("flash", "factory-image"):
        result = CliRunner().invoke(app, ["device", command, "--help"],
                                    env={"COLUMNS": "200"})
        text = " ".join(result.output.split())
        assert "--pins" in text and "lamplighter-firmware.toml" in text, command
        assert "supported release" in text, command
        assert all(release in text for release in SUPPORTED_RELEASES), command
