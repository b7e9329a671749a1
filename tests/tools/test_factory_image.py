"""Factory images: firmware + littlefs read back, offsets, batch sheet, first-boot enrollment.

No MicroPython ESP32 firmware .bin is available offline: the firmware part is laid out like
micropython.org's ESP32_GENERIC .bin (bootloader, partition table, app with its ESP-IDF app
descriptor naming MicroPython v1.24.1), built with esptool's own image classes
(tests/rigs/esp_firmware.py), which `esptool image_info` parses like a real one.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import httpx
import pytest
from esptool.cmds import image_info
from typer.testing import CliRunner

import tools.cli.device  # noqa: F401  (attaches the device commands)
from tests.rigs.esp_firmware import write_firmware
from tests.rigs.micropython import run_micropython
from tools.cli.main import app
from tools.emulator.fleet_process import FleetServer
from tools.firmware_tree import FIRMWARE_LIB
from tools.technician.factory_image import (
    BLOCK_COUNT,
    BLOCK_SIZE,
    VFS_OFFSET,
    VFS_SIZE,
    node_image_files,
    read_filesystem,
)
from tools.technician.provisioning import app_files

BASE = 0x1000  # an ESP32 image (and so the factory file) starts at the bootloader offset


def firmware(tmp_path: Path, chip: str = "esp32") -> Path:
    """A supported MicroPython release's .bin for `chip`, as micropython.org lays it out."""
    return write_firmware(tmp_path / f"micropython-{chip}-v1.24.1.bin", chip, "v1.24.1")


@pytest.fixture(autouse=True)
def trust_the_server(live_server: FleetServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI (here and in its subprocesses) trusts the test server's CA, as LAMPLIGHTER_CA;
    no firmware pins file but the ones a test gives."""
    monkeypatch.setenv("LAMPLIGHTER_CA", str(live_server.verify))
    monkeypatch.delenv("LAMPLIGHTER_FIRMWARE_PINS", raising=False)


WIFI_PASSWORD = "lantern-street-42"


def wifi_file(tmp_path: Path) -> Path:
    path = tmp_path / "wifi.json"
    path.write_text(json.dumps({"ssid": "Harbour-Poles", "password": WIFI_PASSWORD}))
    path.chmod(0o600)
    return path


def cli(server: FleetServer, *args: str, wifi: tuple[str, ...] | None = None):
    """The factory-image command; `wifi` defaults to --no-wifi (most tests are not about it)."""
    return CliRunner().invoke(app, ["device", "factory-image", *args, "--server", server.url,
                                    "--token", server.operator_token,
                                    *(("--no-wifi",) if wifi is None else wifi)])


def devices(server: FleetServer) -> list[dict]:
    return httpx.get(f"{server.url}/api/v1/devices", headers=server.operator_headers,
                     verify=server.ssl_context).json()


def test_one_image_reads_back(live_server: FleetServer, tmp_path: Path, capsys) -> None:
    fw = firmware(tmp_path)
    out = tmp_path / "P-0007.bin"
    result = cli(live_server, "--firmware", str(fw), "--pole", "P-0007", "--district", "north",
                 "--out", str(out), wifi=("--wifi", str(wifi_file(tmp_path))))
    assert result.exit_code == 0, result.output
    data = out.read_bytes()
    fw_bytes = fw.read_bytes()
    # offsets: firmware first (flash 0x1000), filesystem at flash 0x200000 up to 4 MiB
    assert len(data) == VFS_OFFSET + VFS_SIZE - BASE == 0x400000 - 0x1000
    assert data[:len(fw_bytes)] == fw_bytes
    assert set(data[len(fw_bytes):VFS_OFFSET - BASE]) == {0xFF}
    assert VFS_SIZE == BLOCK_SIZE * BLOCK_COUNT == 2 * 1024 * 1024

    capsys.readouterr()
    image_info(data[:VFS_OFFSET - BASE])
    info = capsys.readouterr().out
    assert "Chip ID: 0 (ESP32)" in info
    assert "Checksum:" in info and "(valid)" in info

    files = read_filesystem(data[VFS_OFFSET - BASE:])
    for path, content in app_files(board="esp32_devkitc").items():
        assert files[path] == content, path
    assert json.loads(files["slot.json"])["active"] == "a"
    enrollment = json.loads(files["enrollment.json"])
    assert enrollment["pole_id"] == "P-0007" and enrollment["server"] == live_server.url
    [device] = [d for d in devices(live_server) if d["pole_id"] == "P-0007"]
    assert device["district"] == "north"
    assert "identity.json" not in files  # the image carries a code, never a secret
    # the fleet CA the node checks the server against, written before the enrollment
    assert files["fleet_ca.der"] == live_server.tls.ca_der()
    order = list(node_image_files({"lib/x.mpy": b""}, {"code": "c"}, None, b"ca"))
    assert order.index("fleet_ca.der") < order.index("enrollment.json")
    assert "insecure_http" not in enrollment
    # the street's Wi-Fi, exactly as the node reads it, and never shown
    assert json.loads(files["wifi.json"]) == {"ssid": "Harbour-Poles", "password": WIFI_PASSWORD}
    order = list(node_image_files({"lib/x.mpy": b""}, {"code": "c"}, None, b"ca", b"{}"))
    assert order.index("wifi.json") < order.index("enrollment.json")
    assert WIFI_PASSWORD not in result.output and "Harbour-Poles" in result.output


def test_firmware_for_another_chip_is_refused(live_server: FleetServer, tmp_path: Path) -> None:
    result = cli(live_server, "--firmware", str(firmware(tmp_path, "esp32s3")), "--pole", "P-1",
                 "--out", str(tmp_path / "x.bin"))
    assert result.exit_code == 1
    assert "built for ESP32S3" in " ".join(result.output.split())
    assert devices(live_server) == []  # nothing registered for an image never built


def test_batch_writes_images_and_the_depot_sheet(live_server: FleetServer,
                                                 tmp_path: Path) -> None:
    poles = tmp_path / "poles.csv"
    poles.write_text("pole_id,district,group\nQ-1,east,wave1\nQ-2,east,wave1\nQ-3,west,\n")
    out = tmp_path / "images"
    result = cli(live_server, "--firmware", str(firmware(tmp_path)), "--batch", "3", "--csv",
                 str(poles), "--out", str(out), wifi=("--wifi", str(wifi_file(tmp_path))))
    assert result.exit_code == 0, result.output
    with open(out / "depot.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["pole_id"] for r in rows] == ["Q-1", "Q-2", "Q-3"]
    assert len({r["enrollment_code"] for r in rows}) == 3
    assert {r["flash_offset"] for r in rows} == {"0x1000"}
    registered = {d["pole_id"]: d["device_id"] for d in devices(live_server)}
    for row in rows:
        assert registered[row["pole_id"]] == row["device_id"]
        files = read_filesystem(Path(row["image"]).read_bytes()[VFS_OFFSET - BASE:])
        assert json.loads(files["enrollment.json"])["code"] == row["enrollment_code"]
        # one network for the whole batch
        assert json.loads(files["wifi.json"]) == {"ssid": "Harbour-Poles",
                                                  "password": WIFI_PASSWORD}
    assert WIFI_PASSWORD not in result.output


ENROLL_RUN = """
import json, time
from net import enroll
r = enroll.redeem(".")
out = {"result": r}
if r == "enrolled":
    from net.uplink import Uplink
    with open("identity.json") as f:
        ident = json.loads(f.read())
    reply = Uplink(ident, time.time, root=".").checkin({"fw_version": "0.1.0"})
    out["checkin_ok"] = reply is not None
    out["device_id"] = ident["device_id"]
print(json.dumps(out))
"""


def test_node_redeems_its_code_on_first_boot(live_server: FleetServer, tmp_path: Path) -> None:
    image = tmp_path / "node.bin"
    assert cli(live_server, "--firmware", str(firmware(tmp_path)), "--pole", "E-1", "--out",
               str(image)).exit_code == 0
    flash = tmp_path / "flash"
    flash.mkdir()
    files = read_filesystem(image.read_bytes()[VFS_OFFSET - BASE:])
    enrollment = files["enrollment.json"]
    (flash / "enrollment.json").write_bytes(enrollment)
    (flash / "fleet_ca.der").write_bytes(files["fleet_ca.der"])  # redeemed over https

    def boot() -> dict:
        proc = run_micropython(ENROLL_RUN, path_dirs=[FIRMWARE_LIB], cwd=flash)
        return json.loads(proc.stdout.strip().splitlines()[-1])

    first = boot()
    [device] = [d for d in devices(live_server) if d["pole_id"] == "E-1"]
    assert first == {"result": "enrolled", "checkin_ok": True, "device_id": device["device_id"]}
    assert not (flash / "enrollment.json").exists()
    assert boot() == {"result": "already"}

    # the same code again (a second node flashed with a copy of the image) is refused for good
    (flash / "identity.json").unlink()
    (flash / "enrollment.json").write_bytes(enrollment)
    assert boot() == {"result": "refused"}
    assert (flash / "enrollment.json").exists()


def test_an_https_server_without_a_fleet_ca_is_refused(live_server: FleetServer, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import tools.technician.provisioning as provisioning

    monkeypatch.delenv("LAMPLIGHTER_CA")
    monkeypatch.setattr(provisioning, "default_fleet_ca", lambda: None)
    monkeypatch.chdir(tmp_path)  # no ./var/tls/ca.pem either
    result = CliRunner().invoke(app, [
        "device", "factory-image", "--firmware", str(firmware(tmp_path)), "--pole", "T-1",
        "--out", str(tmp_path / "x.bin"), "--server", live_server.url,
        "--token", live_server.operator_token, "--insecure", "--no-wifi"])
    assert result.exit_code != 0
    said = " ".join(result.output.split())
    assert "lamplighter server init-tls" in said and "--ca" in said
    assert not (tmp_path / "x.bin").exists()


def test_a_plain_http_server_is_refused_without_insecure(live_server: FleetServer,
                                                         tmp_path: Path) -> None:
    plain = "http://127.0.0.1:9"  # refused before anything talks to it
    result = CliRunner().invoke(app, [
        "device", "factory-image", "--firmware", str(firmware(tmp_path)), "--pole", "T-2",
        "--out", str(tmp_path / "x.bin"), "--server", plain, "--token", "t", "--no-wifi"])
    assert result.exit_code == 1
    said = " ".join(result.output.split())
    assert "refusing the plain http:// server" in said and "--insecure" in said
    assert not (tmp_path / "x.bin").exists()


def test_insecure_marks_the_enrollment_and_warns(tmp_path: Path) -> None:
    from tools.emulator.fleet_process import start_fleet_server

    plain = start_fleet_server(tmp_path / "plain", tls=False)
    try:
        out = tmp_path / "lab.bin"
        result = CliRunner().invoke(app, [
            "device", "factory-image", "--firmware", str(firmware(tmp_path)), "--pole", "L-1",
            "--out", str(out), "--server", plain.url, "--token", plain.operator_token,
            "--insecure", "--no-wifi"])
        assert result.exit_code == 0, result.output
        said = " ".join(result.output.split())
        assert "WARNING" in said and "unencrypted" in said
        files = read_filesystem(out.read_bytes()[VFS_OFFSET - BASE:])
        enrollment = json.loads(files["enrollment.json"])
        assert enrollment["server"] == plain.url and enrollment["insecure_http"] is True
    finally:
        plain.stop()


def test_an_unsupported_release_is_refused_before_any_node_is_registered(
        live_server: FleetServer, tmp_path: Path) -> None:
    old = write_firmware(tmp_path / "ESP32_GENERIC-v1.21.0.bin", "esp32", "v1.21.0")
    result = cli(live_server, "--firmware", str(old), "--pole", "V-1", "--out",
                 str(tmp_path / "x.bin"))
    assert result.exit_code == 1
    said = " ".join(result.output.split())
    assert "is MicroPython v1.21.0, which these tools do not support" in said
    assert ("get ESP32_GENERIC-v1.24.1.bin from https://micropython.org/download/ESP32_GENERIC/"
            in said)
    assert devices(live_server) == [] and not (tmp_path / "x.bin").exists()


def test_the_depot_pins_decide_which_firmware_makes_images(live_server: FleetServer,
                                                           tmp_path: Path) -> None:
    import hashlib

    vetted, other = firmware(tmp_path), write_firmware(tmp_path / "other.bin")
    pins = tmp_path / "lamplighter-firmware.toml"
    pins.write_text(f'[[firmware]]\nfile = "{vetted.name}"\n'
                    f'sha256 = "{hashlib.sha256(vetted.read_bytes()).hexdigest()}"\n')
    refused = cli(live_server, "--firmware", str(other), "--pole", "W-1", "--out",
                  str(tmp_path / "w1.bin"), "--pins", str(pins))
    assert refused.exit_code == 1
    said = " ".join(refused.output.split())
    assert f"(sha256 {hashlib.sha256(other.read_bytes()).hexdigest()}) is not pinned in {pins}" \
        in said
    assert devices(live_server) == []
    built = cli(live_server, "--firmware", str(vetted), "--pole", "W-2", "--out",
                str(tmp_path / "w2.bin"), "--pins", str(pins))
    assert built.exit_code == 0, built.output
    assert "MicroPython v1.24.1 firmware for ESP32" in " ".join(built.output.split())
