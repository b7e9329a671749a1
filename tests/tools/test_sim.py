"""`lamplighter sim`: emulated lampposts (real MicroPython) register, check in and report."""

from __future__ import annotations

import time

import httpx
import pytest
from typer.testing import CliRunner

from tools.cli.main import app as cli
from tools.emulator.sim import start_fleet

UNITS = {"temperature_c": "°C", "humidity_pct": "%RH", "pressure_hpa": "hPa", "lux": "lx"}


@pytest.mark.slow
def test_sim_nodes_check_in_and_their_telemetry_comes_back_with_units(live_server, tmp_path):
    # Virtual time runs 30× real time from an hour ago, so every reading stays in the past.
    fleet = start_fleet(live_server.url, live_server.operator_token, 2, tmp_path / "sim",
                        speed=30, checkin_interval_s=60, start_epoch=int(time.time()) - 3600,
                        verify=live_server.ssl_context, ca_der=live_server.ca_der)
    headers = live_server.operator_headers
    try:
        deadline = time.monotonic() + 90
        seen: dict[str, set[str]] = {}
        while time.monotonic() < deadline:
            rows = httpx.get(f"{live_server.url}/api/v1/telemetry/readings?limit=5000",
                             headers=headers, verify=live_server.ssl_context).json()["readings"]
            seen = {}
            for r in rows:
                seen.setdefault(r["device_id"], set()).add(r["metric"])
                assert UNITS.get(r["metric"], r["unit"]) == r["unit"]
            if len(seen) == 2 and all(set(UNITS) <= m for m in seen.values()):
                break
            time.sleep(1)
        assert sorted(seen) == sorted(n.device_id for n in fleet.nodes)
        assert all(set(UNITS) <= metrics for metrics in seen.values())
        nodes = httpx.get(f"{live_server.url}/api/v1/devices?group=sim", headers=headers,
                          verify=live_server.ssl_context).json()
        assert [n["online"] for n in nodes] == [True, True]
        assert all(n["fw_version"] for n in nodes)
    finally:
        fleet.stop()
    # A second start reuses the identities kept on the nodes' flash: no new registrations.
    again = start_fleet(live_server.url, live_server.operator_token, 2, tmp_path / "sim",
                        speed=30, start_epoch=int(time.time()) - 3600,
                        verify=live_server.ssl_context, ca_der=live_server.ca_der)
    again.stop()
    assert [n.device_id for n in again.nodes] == [n.device_id for n in fleet.nodes]


def test_sim_without_a_token_says_what_to_do(monkeypatch):
    monkeypatch.delenv("LAMPLIGHTER_TOKEN", raising=False)
    result = CliRunner().invoke(cli, ["sim", "--nodes", "1"])
    assert result.exit_code == 2 and "no API token" in result.output
