"""Staged rollouts: canary first, thresholds that pause or advance, filters, windows, downgrades."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from fleet.rollouts import plan_waves, position, version_key, window_open

BASE = {"fw_version": "1.0.0", "uptime_s": 60, "config_version": 0}


@pytest.fixture
def fleet(checked_in_nodes):
    return checked_in_nodes(10)


def start(client, tokens, release, **body):
    body = {"release_id": release["id"], "waves": [10, 100], "failure_threshold_pct": 50,
            "success_threshold_pct": 100, **body}
    resp = client.post("/api/v1/rollouts", json=body, headers=tokens["operator"])
    assert resp.status_code == 201, resp.text
    return resp.json()


def checkin(device_call, node, **fields):
    resp = device_call(node, "/device/v1/checkin", dict(BASE, **fields))
    assert resp.status_code == 200, resp.text
    return resp.json()


def offered(device_call, nodes):
    return [n for n in nodes if checkin(device_call, n)["update"] is not None]


def test_canary_first_then_the_rest_then_completed(fleet, release, client, tokens, device_call):
    rollout = start(client, tokens, release)
    assert [w["planned"] for w in rollout["waves"]] == [1, 9]
    canary = offered(device_call, fleet)
    assert len(canary) == 1
    assignment = checkin(device_call, canary[0])["update"]
    assert assignment["version"] == "1.1.0" and assignment["url"].endswith("/bundle")
    rid = rollout["id"]
    for state in ("downloading", "installing", "installed"):
        checkin(device_call, canary[0], update={"rollout_id": rid, "state": state})
    assert offered(device_call, [n for n in fleet if n is not canary[0]]) == []
    checkin(device_call, canary[0], fw_version="1.1.0",
            update={"rollout_id": rid, "state": "committed"})
    status = client.get(f"/api/v1/rollouts/{rid}", headers=tokens["reader"]).json()
    assert status["wave"] == 1 and status["state"] == "active"
    rest = [n for n in fleet if n is not canary[0]]
    assert len(offered(device_call, rest)) == 9
    for n in rest:
        checkin(device_call, n, fw_version="1.1.0", update={"rollout_id": rid,
                                                            "state": "committed"})
    status = client.get(f"/api/v1/rollouts/{rid}", headers=tokens["reader"]).json()
    assert status["state"] == "completed"
    assert status["waves"][1]["states"] == {"committed": 9}
    assert checkin(device_call, fleet[0], fw_version="1.1.0")["update"] is None


def test_failing_canary_pauses_and_the_fleet_never_sees_it(fleet, release, client, tokens,
                                                          device_call):
    rollout = start(client, tokens, release)
    canary = offered(device_call, fleet)[0]
    checkin(device_call, canary, update={"rollout_id": rollout["id"], "state": "rolled_back",
                                         "detail": "not healthy within 120 s"})
    status = client.get(f"/api/v1/rollouts/{rollout['id']}", headers=tokens["reader"]).json()
    assert status["state"] == "paused" and "1 of 1 nodes failed" in status["state_reason"]
    assert offered(device_call, fleet) == []
    nodes = client.get(f"/api/v1/rollouts/{rollout['id']}/nodes",
                       headers=tokens["reader"]).json()
    assert [(n["device_id"], n["state"]) for n in nodes] == [(canary["device_id"],
                                                             "rolled_back")]
    history = client.get(f"/api/v1/devices/{canary['device_id']}/updates",
                         headers=tokens["reader"]).json()
    assert [e["state"] for e in history] == ["offered", "rolled_back"]


def test_operator_pause_resume_abort(fleet, release, client, tokens, device_call):
    rollout = start(client, tokens, release)
    op, rid = tokens["operator"], rollout["id"]
    assert client.post(f"/api/v1/rollouts/{rid}/pause", headers=op).json()["state"] == "paused"
    assert offered(device_call, fleet) == []
    assert client.post(f"/api/v1/rollouts/{rid}/pause", headers=op).status_code == 409
    assert client.post(f"/api/v1/rollouts/{rid}/resume", headers=op).json()["state"] == "active"
    assert len(offered(device_call, fleet)) == 1
    assert client.post(f"/api/v1/rollouts/{rid}/abort", headers=op).json()["state"] == "aborted"
    assert offered(device_call, fleet) == []
    assert client.post(f"/api/v1/rollouts/{rid}/resume", headers=op).status_code == 409
    assert client.post(f"/api/v1/rollouts/{rid}/explode", headers=op).status_code == 404
    assert client.post(f"/api/v1/rollouts/{rid}/pause",
                       headers=tokens["reader"]).status_code == 403


def test_manual_advance_without_success_threshold(fleet, release, client, tokens, device_call):
    rollout = start(client, tokens, release, success_threshold_pct=None)
    canary = offered(device_call, fleet)[0]
    checkin(device_call, canary, fw_version="1.1.0",
            update={"rollout_id": rollout["id"], "state": "committed"})
    assert len(offered(device_call, fleet)) == 0  # waits for the operator
    client.post(f"/api/v1/rollouts/{rollout['id']}/advance", headers=tokens["operator"])
    assert len(offered(device_call, fleet)) == 9


def test_never_offers_an_older_release_unless_a_downgrade(register, device_call, release,
                                                           client, tokens):
    ahead = register()
    checkin(device_call, ahead, fw_version="1.2.0")
    resp = client.post("/api/v1/rollouts", json={"release_id": release["id"]},
                       headers=tokens["operator"])
    assert resp.status_code == 422 and "older version" in resp.json()["detail"]
    rollout = start(client, tokens, release, allow_downgrade=True, waves=[100])
    assert checkin(device_call, ahead, fw_version="1.2.0")["update"]["rollout_id"] \
        == rollout["id"]


def test_target_filters_and_board_compatibility(register, device_call, release, client, tokens):
    harbour = register(group="harbour")
    park = register(group="park")
    esp = register(group="harbour", board="esp32_devkitc")
    for n in (harbour, park, esp):
        checkin(device_call, n)
    start(client, tokens, release, target={"group": "harbour"}, waves=[100])
    assert checkin(device_call, harbour)["update"] is not None
    assert checkin(device_call, park)["update"] is None
    assert checkin(device_call, esp)["update"] is None  # release is for the emulated board


def test_daytime_window_holds_offers_outside_it(fleet, release, client, tokens, device_call):
    hour = datetime.now(UTC).hour
    start(client, tokens, release, waves=[100],
          window={"start_hour": (hour + 2) % 24, "end_hour": (hour + 3) % 24, "tz": "UTC"})
    assert offered(device_call, fleet) == []


def test_bad_rollout_requests_are_refused(release, client, tokens, fleet):
    op = tokens["operator"]
    bad_waves = client.post("/api/v1/rollouts", json={"release_id": release["id"],
                                                      "waves": [50, 10, 100]}, headers=op)
    assert bad_waves.status_code == 422 and "increasing" in bad_waves.json()["detail"]
    missing = client.post("/api/v1/rollouts", json={"release_id": 999}, headers=op)
    assert missing.status_code == 404
    start(client, tokens, release)
    again = client.post("/api/v1/rollouts", json={"release_id": release["id"]}, headers=op)
    assert again.status_code == 409


def test_wave_plan_is_exact_and_deterministic():
    uids = [f"ll-{i:012x}" for i in range(1000)]
    cutoffs, sizes = plan_waves(7, uids, [5, 25, 100])
    assert sizes == [50, 200, 750]
    in_first = [u for u in uids if position(7, u) < cutoffs[0]]
    assert len(in_first) == 50
    assert plan_waves(7, list(reversed(uids)), [5, 25, 100]) == (cutoffs, sizes)
    assert plan_waves(8, uids, [5, 25, 100])[0] != cutoffs  # another rollout, another order
    assert plan_waves(1, uids[:3], [1, 100])[1] == [1, 2]  # a canary always exists


def test_version_order_and_windows():
    assert version_key("1.10.0") > version_key("1.9.3") > version_key("1.9.3-rc.1")
    assert version_key("") < version_key("0.0.1")
    night = datetime(2026, 1, 1, 23, 0, tzinfo=UTC)
    noon = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    window = {"start_hour": 9, "end_hour": 16, "tz": "UTC"}
    assert window_open(window, noon) and not window_open(window, night)
    assert window_open({"start_hour": 22, "end_hour": 2, "tz": "UTC"}, night)
