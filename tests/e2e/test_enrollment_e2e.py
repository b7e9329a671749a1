"""A factory-imaged node (enrollment code, no secret) claims its identity at first boot."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from tests.rigs.netfault import FaultProxy
from tools.emulator.launcher import Launcher
from tools.emulator.scenario import Scenario


@pytest.mark.slow
def test_factory_node_redeems_its_code_at_boot_and_checks_in(live_server, tmp_path):
    resp = httpx.post(f"{live_server.url}/api/v1/devices/batch",
                      json={"devices": [{"pole_id": "FAC-1", "board": "emulated"}],
                            "enrollment": True}, headers=live_server.operator_headers,
                      verify=live_server.ssl_context)
    issued = resp.json()[0]
    flash = tmp_path / "flash"
    flash.mkdir()
    (flash / "enrollment.json").write_text(json.dumps(
        {"code": issued["enrollment_code"], "server": live_server.url, "pole_id": "FAC-1"}))
    if live_server.tls is None:  # a plain-HTTP test server: the enrollment says so
        enrollment = json.loads((flash / "enrollment.json").read_text())
        (flash / "enrollment.json").write_text(json.dumps(dict(enrollment, insecure_http=True)))
    # the factory image pins the fleet CA beside the enrollment code
    launcher = Launcher(flash, Scenario(start_epoch=int(time.time()) - 3600), speed=20,
                        config={"checkin_interval_s": 30},
                        ca_der=live_server.tls.ca_der() if live_server.tls else None)
    with launcher:
        shown = _wait_online(live_server, issued["device_id"], 60)
    assert shown["online"] is True and shown["key_version"] == 2
    identity = json.loads((flash / "identity.json").read_text())
    assert identity["device_id"] == issued["device_id"]
    assert not (flash / "enrollment.json").exists()


@pytest.mark.slow
def test_a_capture_of_enrollment_checkin_and_telemetry_shows_no_secret_and_no_reading(
        live_server, tmp_path):
    """Everything between a factory-imaged lamppost and the server, captured on the path
    (every byte the loopback carried, both ways): the enrollment code, the device secret the
    server hands out, the device id and the readings never appear in it."""
    assert live_server.tls is not None, "the fleet server speaks TLS by default"
    tap = _path_to(live_server)
    issued, flash = _factory_imaged(live_server, tmp_path, "CAP-1", tap.url)
    launcher = Launcher(flash, Scenario(start_epoch=int(time.time()) - 3600), speed=20,
                        config={"checkin_interval_s": 30}, ca_der=live_server.tls.ca_der())
    readings: list = []
    try:
        with launcher:
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and not readings:
                time.sleep(1)
                readings = httpx.get(f"{live_server.url}/api/v1/telemetry/readings",
                                     params={"device": issued["device_id"]},
                                     headers=live_server.operator_headers,
                                     verify=live_server.ssl_context).json()["readings"]
    finally:
        tap.stop()
    assert readings, "the node never uploaded a reading"
    identity = json.loads((flash / "identity.json").read_text())
    wire = bytes(tap.wire)
    assert len(wire) > 2000 and wire[:1] == b"\x16", "no TLS handshake on the path"
    secrets = {"enrollment code": issued["enrollment_code"].encode(),
               "device secret (hex)": identity["secret"].encode(),
               "device secret": bytes.fromhex(identity["secret"]),
               "device id": issued["device_id"].encode(),
               "a request header": b"X-Signature", "a reply field": b"acked_seq"}
    for reading in readings[:20]:
        secrets[f"reading {reading['metric']}"] = f'"m":"{reading["metric"]}"'.encode()
    seen = [name for name, value in secrets.items() if value in wire]
    assert seen == [], f"in clear on the wire: {seen}"


@pytest.mark.slow
def test_a_node_that_cannot_reach_the_server_at_first_boot_enrolls_later_without_a_power_cycle(
        live_server, tmp_path):
    """A factory-imaged post on the street's Wi-Fi whose server is unreachable at first boot
    (the path is down): it runs on with its lamp, tries its code again at each check-in, and
    once the path is back it enrolls, resets itself once and reports with its identity."""
    assert live_server.tls is not None
    path = _path_to(live_server)
    path.outage(True)
    issued, flash = _factory_imaged(live_server, tmp_path, "LATE-1", path.url)
    launcher = Launcher(flash, Scenario(start_epoch=int(time.time()) - 3600), speed=20,
                        config={"checkin_interval_s": 30}, ca_der=live_server.tls.ca_der(),
                        wifi={"ssid": "depot", "password": "depot passphrase"})
    try:
        with launcher:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and len(launcher.events("enroll")) < 2:
                time.sleep(0.5)
            assert [f["result"] for _ms, f in launcher.events("enroll")][:2] == ["retry", "retry"]
            assert len(launcher.world.records.boots) == 1  # no reboot to retry
            path.outage(False)
            shown = _wait_online(live_server, issued["device_id"], 90)
            boots = [cause for _ms, cause in launcher.world.records.boots]
    finally:
        path.stop()
    assert shown["online"] is True
    assert boots == ["power_on", "soft"]  # one reset, to boot with the identity
    assert json.loads((flash / "identity.json").read_text())["device_id"] == issued["device_id"]
    assert not (flash / "enrollment.json").exists()


def _path_to(live_server) -> FaultProxy:
    """A TCP path to the server that a test can cut (TLS passes through it)."""
    return FaultProxy("127.0.0.1", int(live_server.url.rsplit(":", 1)[1]), scheme="https")


def _factory_imaged(live_server, tmp_path, pole_id: str, server_url: str):
    """(the issued enrollment, a flash directory holding it as a factory image would)."""
    issued = httpx.post(f"{live_server.url}/api/v1/devices/batch",
                        json={"devices": [{"pole_id": pole_id, "board": "emulated"}],
                              "enrollment": True}, headers=live_server.operator_headers,
                        verify=live_server.ssl_context).json()[0]
    flash = tmp_path / "flash"
    flash.mkdir()
    (flash / "enrollment.json").write_text(json.dumps(
        {"code": issued["enrollment_code"], "server": server_url, "pole_id": pole_id}))
    return issued, flash


def _wait_online(live_server, device_id: str, timeout_s: float) -> dict:
    """The device as the API shows it, once online (or as it is when `timeout_s` runs out)."""
    deadline = time.monotonic() + timeout_s
    while True:
        shown = httpx.get(f"{live_server.url}/api/v1/devices/{device_id}",
                          headers=live_server.operator_headers,
                          verify=live_server.ssl_context).json()
        if shown["online"] or time.monotonic() >= deadline:
            return shown
        time.sleep(0.5)
