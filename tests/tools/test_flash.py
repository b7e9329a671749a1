"""`lamplighter device flash`: every way it refuses, with the message the technician sees.

No ESP32 is attached here. What is real: the port checks (a missing path, a device file the
user may not open, a pty on which nothing answers esptool's ROM sync) and the image headers
(built with esptool's own image classes). What is stubbed: only the chip detection in the
wrong-chip tests (a stand-in loader that reports a chip name), because detecting a chip needs
a ROM loader answering on the wire. The firmware files are laid out like micropython.org's
(tests/rigs/esp_firmware.py): bootloader, partition table, and an app whose descriptor names a
supported MicroPython release.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.rigs.esp_firmware import write_firmware
from tools.technician.flashing import FlashError, flash, flash_offset, read_image_info

CLI = [sys.executable, "-c", "from tools.cli.main import app; app()"]


def esp_image(chip: str, path: Path) -> Path:
    """A MicroPython v1.24.1 .bin for `chip`, laid out like micropython.org's."""
    return write_firmware(path, chip, "v1.24.1")


def cli(*args: str, user: int | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, "device", "flash", *args], capture_output=True, text=True,
                          timeout=120, check=False, user=user,
                          env=dict(os.environ, COLUMNS="300"))


@pytest.fixture(autouse=True)
def no_firmware_pins(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests are about the port and the chip: no depot pins file from the environment."""
    monkeypatch.delenv("LAMPLIGHTER_FIRMWARE_PINS", raising=False)


class StubLoader:
    """Stands in for esptool's detected loader: only the chip name is read before refusing."""

    def __init__(self, name: str) -> None:
        self.CHIP_NAME = name


def test_image_header_names_its_chip(tmp_path: Path) -> None:
    assert read_image_info(esp_image("esp32", tmp_path / "a.bin").read_bytes()).chip == "esp32"
    assert read_image_info(esp_image("esp32s3", tmp_path / "b.bin").read_bytes()).chip == \
        "esp32s3"
    assert read_image_info(esp_image("esp32c3", tmp_path / "c.bin").read_bytes()).chip == \
        "esp32c3"


def test_offsets_per_chip() -> None:
    assert flash_offset("esp32") == 0x1000
    assert flash_offset("esp32s3") == 0x0
    assert flash_offset("esp32c3") == 0x0


def test_no_such_port_lists_the_ports_that_exist(tmp_path: Path) -> None:
    image = esp_image("esp32", tmp_path / "fw.bin")
    proc = cli("--port", "/dev/ttyUSB9", "--firmware", str(image))
    assert proc.returncode == 1
    assert "no such port /dev/ttyUSB9" in proc.stderr
    assert "Serial ports on this machine:" in proc.stderr


def test_permission_denied_gives_the_dialout_command(tmp_path: Path, monkeypatch) -> None:
    from typer.testing import CliRunner

    import tools.cli.device  # noqa: F401  (attaches the command)
    from tools.cli.main import app

    image = esp_image("esp32", tmp_path / "fw.bin")
    port = tmp_path / "ttyUSB0"
    port.write_bytes(b"")
    port.chmod(0o000)  # like /dev/ttyUSB0 (root:dialout 0660) for a user not in dialout
    if os.geteuid() == 0:
        # root opens any file whatever its mode, so here the refusal the kernel gives an
        # ordinary user is stood in for: os.open on that port raises EACCES
        real_open = os.open

        def refuse(path, flags, *args):
            if str(path) == str(port):
                raise PermissionError(13, "Permission denied", str(path))
            return real_open(path, flags, *args)

        monkeypatch.setattr(os, "open", refuse)
    result = CliRunner().invoke(app, ["device", "flash", "--port", str(port),
                                      "--firmware", str(image)])
    assert result.exit_code == 1
    text = " ".join(result.output.split())
    assert f"permission denied on {port}" in text
    assert "sudo usermod -aG dialout $USER" in text


def test_board_not_in_download_mode(tmp_path: Path) -> None:
    image = esp_image("esp32", tmp_path / "fw.bin")
    master, slave = os.openpty()  # a port on which the ROM loader never answers
    try:
        proc = cli("--port", os.ttyname(slave), "--firmware", str(image), "--baud", "115200")
    finally:
        os.close(master)
        os.close(slave)
    assert proc.returncode == 1
    assert "no answer from the board's ROM loader" in proc.stderr
    assert "hold BOOT" in proc.stderr and "tap EN" in proc.stderr


def test_wrong_chip_is_refused_before_anything_is_erased(tmp_path: Path) -> None:
    image = esp_image("esp32s3", tmp_path / "s3.bin")
    master, slave = os.openpty()
    try:
        with pytest.raises(FlashError) as exc:
            flash(os.ttyname(slave), image, detect=lambda port: StubLoader("ESP32"),
                  say=lambda m: None)
    finally:
        os.close(master)
        os.close(slave)
    assert str(exc.value).startswith("wrong chip: ")
    assert "built for ESP32S3 but the board is an ESP32" in str(exc.value)


def test_wrong_chip_named_on_the_command_line(tmp_path: Path) -> None:
    image = esp_image("esp32", tmp_path / "fw.bin")
    proc = cli("--port", "/dev/null", "--firmware", str(image), "--chip", "esp32c3")
    assert proc.returncode == 1
    assert "wrong chip" in proc.stderr and "built for ESP32 but the board is an ESP32C3" in \
        proc.stderr


def test_a_file_that_is_not_an_image(tmp_path: Path) -> None:
    junk = tmp_path / "firmware.uf2"
    junk.write_bytes(b"UF2\n" + b"\0" * 100)
    proc = cli("--port", "/dev/null", "--firmware", str(junk))
    assert proc.returncode == 1
    assert "is not an ESP firmware image" in proc.stderr
