"""A factory-imaged node (enrollment code, no secret) claims its identity at first boot."""

from __future__ import annotations

import json
import time

import httpx
import pytest

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
    launcher = Launcher(flash, Scenario(start_epoch=int(time.time()) - 3600), speed=20,
                        config={"checkin_interval_s": 30})
    with launcher:
        deadline = time.monotonic() + 60
        shown: dict = {}
        while time.monotonic() < deadline:
            shown = httpx.get(f"{live_server.url}/api/v1/devices/{issued['device_id']}",
                              headers=live_server.operator_headers,
                              verify=live_server.ssl_context).json()
            if shown["online"]:
                break
            time.sleep(0.5)
    assert shown["online"] is True and shown["key_version"] == 2
    identity = json.loads((flash / "identity.json").read_text())
    assert identity["device_id"] == issued["device_id"]
    assert not (flash / "enrollment.json").exists()
