"""Provisioning an emulated lamppost through its pty with the real mpremote transport."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlmodel import Session

from fleet.core.db import make_engine
from fleet.tokens import create_token
from ota.keys import generate_private_key, key_id, raw_public_key, save_public_key
from tools.emulator.fleet_process import FleetServer
from tools.emulator.serial_repl import SerialRepl
from tools.emulator.world import World
from tools.technician.provisioning import app_files

CLI = [sys.executable, "-c", "from tools.cli.main import app; app()"]


def technician_token(server: FleetServer) -> str:
    engine = make_engine(server.database_url)
    with Session(engine) as session:
        token = create_token(session, "depot-technician", "technician")
    engine.dispose()
    return token


@pytest.fixture(autouse=True)
def trust_the_server(live_server: FleetServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI (here and in its subprocesses) trusts the test server's CA, as LAMPLIGHTER_CA."""
    monkeypatch.setenv("LAMPLIGHTER_CA", str(live_server.verify))


@pytest.fixture
def node(tmp_path: Path):
    """An emulated lamppost: its street (world) and its console on a pty."""
    world = World(None, speed=0).start()
    repl = SerialRepl(tmp_path / "flash", world_port=world.port).start()
    yield repl
    repl.stop()
    world.stop()


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, str]:
    key = generate_private_key()
    path = tmp_path / "release.pub"
    save_public_key(key, path)
    return path, key_id(raw_public_key(key))


def provision_args(node: SerialRepl, server: FleetServer, token: str, keys: Path,
                   pole: str = "P-0412", wifi: Path | None = None) -> list[str]:
    return [*CLI, "device", "provision", "--port", node.path, "--pole", pole,
            "--district", "harbour", "--group", "canary", "--lat", "51.9", "--lon", "4.48",
            "--tag", "seafront", "--server", server.url, "--token", token,
            "--release-keys", str(keys), *(["--wifi", str(wifi)] if wifi else [])]


WIFI_PASSWORD = "sodium-lamp 589"


def run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=180, check=False,
                          env=dict(os.environ, COLUMNS="200"))


def devices_on_pole(server: FleetServer, pole: str) -> list[dict]:
    rows = httpx.get(f"{server.url}/api/v1/devices", headers=server.operator_headers,
                     verify=server.ssl_context).json()
    return [d for d in rows if d["pole_id"] == pole]


def assert_fully_provisioned(flash: Path, device_id: str, key: str) -> None:
    for path, data in app_files(board="emulated").items():
        assert (flash / path).read_bytes() == data, path
    identity = json.loads((flash / "identity.json").read_text())
    assert identity["device_id"] == device_id and len(identity["secret"]) == 64
    assert identity["pole_id"] == "P-0412"
    assert json.loads((flash / "keys.json").read_text())["keys"].keys() == {key}
    pointer = json.loads((flash / "slot.json").read_text())
    assert pointer["active"] == "a" and pointer["pending"] is None
    assert not (flash / "provisioning.json").exists()
    assert not list(flash.rglob("*.part"))


def test_provision_reads_back_runs_the_selftest_and_is_idempotent(
        live_server: FleetServer, node: SerialRepl, keys: tuple[Path, str],
        tmp_path: Path) -> None:
    token = technician_token(live_server)
    wifi = tmp_path / "wifi.txt"  # an emulated node gets the street's Wi-Fi only when given
    wifi.write_text(f"ssid=Harbour-Poles\npassword={WIFI_PASSWORD}\n")
    wifi.chmod(0o600)
    first = run(provision_args(node, live_server, token, keys[0], wifi=wifi))
    assert first.returncode == 0, first.stdout + first.stderr
    [device] = devices_on_pole(live_server, "P-0412")
    assert device["district"] == "harbour" and device["group"] == "canary"
    assert device["board"] == "emulated" and device["tags"] == ["seafront"]
    assert f"as device {device['device_id']}" in first.stdout
    assert "verified (SHA-256)" in first.stdout
    # the self-test read every sensor of the emulated street
    for sensor in ("bme280", "veml7700", "pms5003", "ld2410", "pir"):
        assert sensor in first.stdout
    assert "temperature_c=" in first.stdout and "lux=" in first.stdout
    assert "fault" not in first.stdout
    assert_fully_provisioned(node.flash_dir, device["device_id"], keys[1])
    # the fleet CA the node checks the server's certificate against, and no http allowed
    assert (node.flash_dir / "fleet_ca.der").read_bytes() == live_server.tls.ca_der()
    assert "insecure_http" not in json.loads((node.flash_dir / "identity.json").read_text())
    # the Wi-Fi credentials, written like every file, as the node reads them, never shown
    assert json.loads((node.flash_dir / "wifi.json").read_text()) == {
        "ssid": "Harbour-Poles", "password": WIFI_PASSWORD}
    assert WIFI_PASSWORD not in first.stdout + first.stderr

    # the node's own modules import from the slot the pointer names
    check = subprocess.run([sys.executable, "-m", "mpremote", "connect", node.path, "exec",
                            "import bootsel; print(bootsel.running_slot('.'))"],
                           capture_output=True, text=True, timeout=60, check=False)
    assert check.stdout.strip() == "a"

    second = run(provision_args(node, live_server, token, keys[0], wifi=wifi))
    assert second.returncode == 0, second.stdout + second.stderr
    assert "reusing the registration" in second.stdout
    assert "0 file(s) written" in second.stdout
    assert [d["device_id"] for d in devices_on_pole(live_server, "P-0412")] == \
        [device["device_id"]]


def test_a_node_cut_off_half_way_is_finished_on_the_next_run(
        live_server: FleetServer, node: SerialRepl, keys: tuple[Path, str]) -> None:
    token = technician_token(live_server)
    flash = node.flash_dir
    proc = subprocess.Popen(provision_args(node, live_server, token, keys[0]),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    lib = flash / "slots" / "a" / "lib"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        marked = (flash / "provisioning.json").exists()
        if marked and lib.exists() and len(list(lib.iterdir())) >= 3:
            break
        time.sleep(0.001)
    os.kill(proc.pid, signal.SIGKILL)  # the laptop's cable is pulled mid-copy
    proc.wait()
    marker = json.loads((flash / "provisioning.json").read_text())
    missing = [p for p in app_files(board="emulated") if not (flash / p).exists()]
    assert missing, "the copy was meant to be cut before it finished"
    assert not (flash / "identity.json").exists()

    again = run(provision_args(node, live_server, token, keys[0]))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "cut off half-way" in again.stdout
    assert "reusing the registration" in again.stdout
    assert_fully_provisioned(flash, marker["device_id"], keys[1])
    assert [d["device_id"] for d in devices_on_pole(live_server, "P-0412")] == \
        [marker["device_id"]]


def test_a_node_of_another_pole_is_refused_unless_cleaned(
        live_server: FleetServer, node: SerialRepl, keys: tuple[Path, str]) -> None:
    token = technician_token(live_server)
    assert run(provision_args(node, live_server, token, keys[0])).returncode == 0
    (node.flash_dir / "stray.txt").write_text("left over")
    other = run(provision_args(node, live_server, token, keys[0], pole="P-0999"))
    assert other.returncode == 1
    assert "provisioned as pole P-0412" in other.stderr and "--clean" in other.stderr
    cleaned = run([*provision_args(node, live_server, token, keys[0], pole="P-0999"),
                   "--clean"])
    assert cleaned.returncode == 0, cleaned.stdout + cleaned.stderr
    # an emulated node needs no Wi-Fi: without --wifi it gets none, and no terminal is asked
    assert "emulated node: no wifi.json" in " ".join(cleaned.stdout.split())
    assert not (node.flash_dir / "wifi.json").exists()
    assert not (node.flash_dir / "stray.txt").exists()
    identity = json.loads((node.flash_dir / "identity.json").read_text())
    assert identity["pole_id"] == "P-0999"
    assert devices_on_pole(live_server, "P-0999")[0]["device_id"] == identity["device_id"]


def test_no_node_on_the_port(live_server: FleetServer, tmp_path: Path,
                             keys: tuple[Path, str]) -> None:
    master, slave = os.openpty()  # a port where nothing answers the REPL
    try:
        proc = run([*CLI, "device", "provision", "--port", os.ttyname(slave), "--pole", "P-1",
                    "--server", live_server.url, "--token", live_server.operator_token,
                    "--release-keys", str(keys[0])])
    finally:
        os.close(master)
        os.close(slave)
    assert proc.returncode == 1
    assert "no MicroPython REPL answers" in proc.stderr
    assert devices_on_pole(live_server, "P-1") == []


def test_a_plain_http_server_is_refused_without_insecure(
        live_server: FleetServer, node: SerialRepl, keys: tuple[Path, str]) -> None:
    token = technician_token(live_server)
    plain = live_server.url.replace("https://", "http://")
    args = provision_args(node, live_server, token, keys[0])
    refused = run([*args[:args.index("--server") + 1], plain, *args[args.index("--server") + 2:]])
    assert refused.returncode == 1
    said = " ".join(refused.stderr.split())
    assert "refusing the plain http:// server" in said and "--insecure" in said
    assert devices_on_pole(live_server, "P-0412") == []  # nothing registered
    assert not (node.flash_dir / "identity.json").exists()


def test_insecure_provisions_for_a_plain_http_server_with_a_warning(
        node: SerialRepl, keys: tuple[Path, str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from tools.emulator.fleet_process import start_fleet_server

    plain = start_fleet_server(tmp_path / "plain", tls=False)
    monkeypatch.delenv("LAMPLIGHTER_CA")
    try:
        token = technician_token(plain)
        done = run([*provision_args(node, plain, token, keys[0]), "--insecure", "--no-selftest"])
        assert done.returncode == 0, done.stdout + done.stderr
        said = " ".join(done.stderr.split())
        assert "WARNING" in said and "unencrypted" in said
        identity = json.loads((node.flash_dir / "identity.json").read_text())
        assert identity["server"] == plain.url and identity["insecure_http"] is True
    finally:
        plain.stop()
