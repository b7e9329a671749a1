"""Rollouts that never hang (issue 14): deadlines and timeouts, late joiners in the counts,
the window in the assignment, overlapping rollouts and precedence, committed checked against
the version the node runs. Every test runs on SQLite and on PostgreSQL (the db_url fixture)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from fleet.models import UpdateStatus
from fleet.rollouts import open_seconds, window_for_node

BASE = {"fw_version": "1.0.0", "uptime_s": 60, "config_version": 0}


@pytest.fixture
def fleet(checked_in_nodes):
    return checked_in_nodes(4)


def start(client, tokens, release, expect=201, **body):
    body = {"release_id": release["id"], "waves": [100], "failure_threshold_pct": 50,
            "success_threshold_pct": 100, **body}
    resp = client.post("/api/v1/rollouts", json=body, headers=tokens["operator"])
    assert resp.status_code == expect, resp.text
    return resp.json()


def checkin(device_call, node, **fields):
    resp = device_call(node, "/device/v1/checkin", dict(BASE, **fields))
    assert resp.status_code == 200, resp.text
    return resp.json()


def show(client, tokens, rid):
    return client.get(f"/api/v1/rollouts/{rid}", headers=tokens["reader"]).json()


def nodes(client, tokens, rid, **params):
    rows = client.get(f"/api/v1/rollouts/{rid}/nodes", params=params,
                      headers=tokens["reader"]).json()
    return {r["device_id"]: r for r in rows}


def age(session, rid, seconds, **where):
    """Move the deadline clocks of a rollout's rows `seconds` into the past."""
    session.execute(update(UpdateStatus).where(UpdateStatus.rollout_id == rid, *[
        getattr(UpdateStatus, k) == v for k, v in where.items()]).values(
        since=datetime.now(UTC) - timedelta(seconds=seconds)))
    session.commit()


def test_a_node_silent_past_its_deadline_times_out_and_a_later_report_still_counts(
        fleet, release, client, tokens, device_call, session):
    rollout = start(client, tokens, release, failure_threshold_pct=50,
                    deadlines={"downloading": 600})
    rid = rollout["id"]
    assert rollout["deadlines"] == {"offered": 3600, "downloading": 600, "installing": 1800,
                                    "installed": 1800}
    for n in fleet:
        checkin(device_call, n)
    stuck, *rest = fleet
    checkin(device_call, stuck, update={"rollout_id": rid, "state": "downloading"})
    age(session, rid, 599, state="downloading")
    assert nodes(client, tokens, rid)[stuck["device_id"]]["state"] == "downloading"
    age(session, rid, 601, state="downloading")
    shown = show(client, tokens, rid)  # the read finds it overdue
    assert shown["state"] == "active", shown
    assert shown["waves"][0]["timed_out"] == 1 and shown["waves"][0]["failed"] == 1
    row = nodes(client, tokens, rid)[stuck["device_id"]]
    assert row["state"] == "timeout" and row["detail"].startswith("timeout: downloading")
    # still offered: a node that comes back may finish; its reports are recorded
    assert checkin(device_call, stuck)["update"]["rollout_id"] == rid
    checkin(device_call, stuck, update={"rollout_id": rid, "state": "installing"})
    row = nodes(client, tokens, rid)[stuck["device_id"]]
    assert row["state"] == "timeout" and row["reported"] == "installing"
    for n in rest:
        checkin(device_call, n, fw_version="1.1.0", update={"rollout_id": rid,
                                                            "state": "committed"})
    # 3 of 4 committed, the fourth timed out (25 %, under the failure threshold): the wave
    # waits on nobody any more, and the rollout completes without it
    shown = show(client, tokens, rid)
    assert shown["state"] == "completed", shown
    assert shown["state_reason"] == ("last wave: 3 of 4 committed, the other 1 failed "
                                     "(1 timed out), under the failure threshold")
    checkin(device_call, stuck, fw_version="1.1.0", update={"rollout_id": rid,
                                                            "state": "committed"})
    shown = show(client, tokens, rid)  # the late report still counts
    assert shown["waves"][0]["timed_out"] == 0 and shown["waves"][0]["committed"] == 4
    history = client.get(f"/api/v1/devices/{stuck['device_id']}/updates",
                         headers=tokens["reader"]).json()
    assert [e["state"] for e in history] == ["offered", "downloading", "timeout",
                                             "installing", "committed"]
    assert history[-1]["detail"].startswith("after timeout")


def test_timeouts_count_against_the_failure_threshold_found_by_a_check_in(
        fleet, release, client, tokens, device_call, session):
    rid = start(client, tokens, release, failure_threshold_pct=50)["id"]
    a, b, c, d = fleet
    for n in (a, b):
        checkin(device_call, n)  # c and d never check in again: planned, never offered
        checkin(device_call, n, update={"rollout_id": rid, "state": "downloading"})
    age(session, rid, 3601, state="planned")
    # any check-in sweeps a rollout nobody swept in the last 30 s: c and d time out
    checkin(device_call, a, update={"rollout_id": rid, "state": "downloading"})
    rows = nodes(client, tokens, rid)
    assert rows[c["device_id"]]["state"] == rows[d["device_id"]]["state"] == "timeout"
    assert "not offered" in rows[c["device_id"]]["detail"]
    shown = show(client, tokens, rid)
    assert shown["state"] == "paused"
    assert "2 of 4 nodes failed, 2 of them timed out" in shown["state_reason"]


def test_a_resumed_rollout_restarts_its_deadlines(fleet, release, client, tokens, device_call,
                                                 session):
    rid = start(client, tokens, release)["id"]
    checkin(device_call, fleet[0])
    checkin(device_call, fleet[0], update={"rollout_id": rid, "state": "downloading"})
    op = tokens["operator"]
    assert client.post(f"/api/v1/rollouts/{rid}/pause", headers=op).status_code == 200
    age(session, rid, 8000)
    assert nodes(client, tokens, rid)[fleet[0]["device_id"]]["state"] == "downloading"
    assert client.post(f"/api/v1/rollouts/{rid}/resume", headers=op).json()["state"] == "active"
    assert nodes(client, tokens, rid)[fleet[0]["device_id"]]["state"] == "downloading"


def test_deadlines_count_only_window_time():
    window = {"start_hour": 9, "end_hour": 16, "tz": "UTC"}
    day = datetime(2026, 6, 1, tzinfo=UTC)
    assert open_seconds(window, day + timedelta(hours=15), day + timedelta(hours=34),
                        1e9) == 2 * 3600  # 15-16 today and 09-10 tomorrow
    assert open_seconds(None, day, day + timedelta(hours=2), 1e9) == 7200
    night = {"start_hour": 22, "end_hour": 2, "tz": "UTC"}
    assert open_seconds(night, day, day + timedelta(days=1), 1e9) == 4 * 3600


def test_percentages_count_every_node_in_the_wave_including_late_joiners(
        fleet, release, client, tokens, device_call, register):
    rollout = start(client, tokens, release)
    rid = rollout["id"]
    late = register(group="harbour")
    assert checkin(device_call, late)["update"]["rollout_id"] == rid  # offered as it joins
    shown = show(client, tokens, rid)
    assert shown["waves"][0]["planned"] == 4 and shown["waves"][0]["members"] == 5
    for n in fleet:
        checkin(device_call, n)
        checkin(device_call, n, fw_version="1.1.0", update={"rollout_id": rid,
                                                            "state": "committed"})
    shown = show(client, tokens, rid)
    assert shown["state"] == "active" and shown["waves"][0]["committed"] == 4  # 4 of 5 < 100 %
    checkin(device_call, late, fw_version="1.1.0", update={"rollout_id": rid,
                                                           "state": "committed"})
    assert show(client, tokens, rid)["state"] == "completed"


def test_a_late_joiner_of_a_later_wave_waits_for_it_and_counts_there(
        register, device_call, release, client, tokens):
    first = [register(group="harbour") for _ in range(3)]
    for n in first:
        checkin(device_call, n)
    rid = start(client, tokens, release, waves=[1, 100], success_threshold_pct=None)["id"]
    joined = [register(group="harbour") for _ in range(12)]
    offered = [n for n in joined if checkin(device_call, n)["update"] is not None]
    shown = show(client, tokens, rid)
    assert sum(w["members"] for w in shown["waves"]) == 15
    assert shown["waves"][1]["members"] == 15 - shown["waves"][0]["members"]
    assert len(offered) == shown["waves"][0]["members"] - 1  # the canary was planned
    planned = nodes(client, tokens, rid, planned=True)
    assert len(planned) == 15 and len(nodes(client, tokens, rid)) == len(offered)
    client.post(f"/api/v1/rollouts/{rid}/advance", headers=tokens["operator"])
    assert all(checkin(device_call, n)["update"] is not None for n in joined)


def test_the_window_travels_with_the_assignment(fleet, release, client, tokens, device_call):
    now = datetime.now(UTC)
    start(client, tokens, release,
          window={"start_hour": now.hour, "end_hour": (now.hour + 2) % 24, "tz": "UTC"})
    assignment = checkin(device_call, fleet[0])["update"]
    window = assignment["window"]
    assert window["start"] <= now.timestamp() < window["end"] and window["period"] == 86400
    assert window["end"] - window["start"] == 2 * 3600


def test_window_for_node_is_the_open_else_next_occurrence_in_epoch_seconds():
    summer = datetime(2026, 7, 1, 20, 30, tzinfo=UTC)  # 21:30 in London (BST)
    w = window_for_node({"start_hour": 10, "end_hour": 15, "tz": "Europe/London"}, summer)
    assert w == {"start": int(datetime(2026, 7, 2, 9, tzinfo=UTC).timestamp()),
                 "end": int(datetime(2026, 7, 2, 14, tzinfo=UTC).timestamp()), "period": 86400}
    w = window_for_node({"start_hour": 21, "end_hour": 3, "tz": "Europe/London"}, summer)
    assert w["start"] == int(datetime(2026, 7, 1, 20, tzinfo=UTC).timestamp())
    assert w["end"] - w["start"] == 6 * 3600
    assert window_for_node(None, summer) is None


@pytest.fixture
def second_release(make_bundle, upload, release):
    resp = upload(make_bundle("1.2.0", 12))
    assert resp.status_code == 201
    return resp.json()


def test_an_overlapping_rollout_is_refused_without_precedence(
        fleet, release, second_release, client, tokens, device_call):
    first = start(client, tokens, release)
    refused = start(client, tokens, second_release, expect=409,
                    target={"group": "harbour"})
    detail = refused["detail"]
    assert f"rollout {first['id']} (1.1.0, active) on 4 node(s)" in detail
    assert '"precedence": "new"' in detail and '"existing"' in detail
    assert "and 1 more" in detail
    # a target with no node in common is no overlap
    park = start(client, tokens, second_release, target={"group": "park"}, expect=422)
    assert "no active node" in park["detail"]


def test_precedence_new_offers_the_new_rollout_first_and_supersedes_the_old(
        fleet, release, second_release, client, tokens, device_call):
    old = start(client, tokens, release)
    checkin(device_call, fleet[0])
    checkin(device_call, fleet[0], update={"rollout_id": old["id"], "state": "downloading"})
    new = start(client, tokens, second_release, precedence="new")
    assert new["priority"] > old["priority"]
    assert checkin(device_call, fleet[0])["update"]["rollout_id"] == new["id"]
    row = nodes(client, tokens, old["id"])[fleet[0]["device_id"]]
    assert row["state"] == "superseded"
    assert show(client, tokens, old["id"])["waves"][0]["members"] == 3


def test_precedence_existing_lets_the_other_rollout_finish_first(
        fleet, release, second_release, client, tokens, device_call):
    old = start(client, tokens, release)
    new = start(client, tokens, second_release, precedence="existing")
    assert new["priority"] < old["priority"]
    node = fleet[0]
    assert checkin(device_call, node)["update"]["rollout_id"] == old["id"]
    checkin(device_call, node, fw_version="1.1.0", update={"rollout_id": old["id"],
                                                           "state": "committed"})
    assert checkin(device_call, node, fw_version="1.1.0")["update"]["rollout_id"] == new["id"]


def test_committed_is_checked_against_the_version_the_node_runs(
        fleet, release, client, tokens, device_call):
    rid = start(client, tokens, release, failure_threshold_pct=50)["id"]
    liar, honest, *_ = fleet
    for n in (liar, honest):
        checkin(device_call, n)
    checkin(device_call, honest, fw_version="1.1.0", update={"rollout_id": rid,
                                                             "state": "committed"})
    checkin(device_call, liar, fw_version="1.0.0", update={"rollout_id": rid,
                                                           "state": "committed"})
    rows = nodes(client, tokens, rid)
    assert rows[honest["device_id"]]["state"] == "committed"
    assert rows[liar["device_id"]]["state"] == "failed"
    assert rows[liar["device_id"]]["detail"] == (
        "version_mismatch: reported committed but runs 1.0.0, release 1.1.0")
    assert rows[liar["device_id"]]["reported"] == "committed"
    assert show(client, tokens, rid)["waves"][0]["failed"] == 1


def test_deadlines_are_validated(fleet, release, client, tokens):
    resp = start(client, tokens, release, expect=422, deadlines={"downloading": 5})
    assert "downloading" in str(resp["detail"])
    resp = start(client, tokens, release, expect=422, deadlines={"booting": 60})
    assert "booting" in str(resp["detail"])


def test_a_wave_moves_on_once_its_silent_node_times_out(register, device_call, release, client,
                                                       tokens, session):
    first = [register(group="harbour") for _ in range(6)]
    for n in first:
        checkin(device_call, n)
    rid = start(client, tokens, release, waves=[50, 100], failure_threshold_pct=50)["id"]
    planned = nodes(client, tokens, rid, planned=True)
    wave0 = [n for n in first if planned[n["device_id"]]["wave"] == 0]
    wave1 = [n for n in first if planned[n["device_id"]]["wave"] == 1]
    assert len(wave0) == 3
    for n in wave0:
        checkin(device_call, n)
    for n in wave0[:2]:
        checkin(device_call, n, fw_version="1.1.0", update={"rollout_id": rid,
                                                            "state": "committed"})
    checkin(device_call, wave0[2], update={"rollout_id": rid, "state": "downloading"})
    assert show(client, tokens, rid)["wave"] == 0  # 2 of 3 < 100 %: waits on the third
    assert checkin(device_call, wave1[0])["update"] is None
    age(session, rid, 7201, state="downloading")  # switched off mid-download
    shown = show(client, tokens, rid)
    assert shown["wave"] == 1 and shown["state"] == "active"
    assert shown["waves"][0]["timed_out"] == 1
    events = client.get(f"/api/v1/rollouts/{rid}/events", headers=tokens["reader"]).json()
    assert events[-1]["detail"] == ("to wave 1 after 2 of 3 committed, the other 1 failed "
                                    "(1 timed out), under the failure threshold")
    assert checkin(device_call, wave1[0])["update"]["rollout_id"] == rid


def test_a_completed_rollouts_straggler_times_out_too(fleet, release, client, tokens,
                                                     device_call, session):
    rid = start(client, tokens, release, success_threshold_pct=50)["id"]
    for n in fleet:
        checkin(device_call, n)
    checkin(device_call, fleet[3], update={"rollout_id": rid, "state": "installing"})
    for n in fleet[:2]:
        checkin(device_call, n, fw_version="1.1.0", update={"rollout_id": rid,
                                                            "state": "committed"})
    assert show(client, tokens, rid)["state"] == "completed"
    age(session, rid, 3601, state="installing")
    age(session, rid, 3601, state="offered")
    shown = show(client, tokens, rid)
    assert shown["state"] == "completed" and shown["waves"][0]["timed_out"] == 2


def test_a_node_decommissioned_before_its_turn_leaves_the_wave(fleet, release, client, tokens,
                                                              device_call, session):
    rid = start(client, tokens, release)["id"]
    for n in fleet[:3]:
        checkin(device_call, n)
    gone = fleet[3]
    assert client.post(f"/api/v1/devices/{gone['device_id']}/decommission",
                       headers=tokens["operator"]).status_code == 200
    age(session, rid, 3601, state="planned")
    for n in fleet[:3]:
        checkin(device_call, n, fw_version="1.1.0", update={"rollout_id": rid,
                                                            "state": "committed"})
    shown = show(client, tokens, rid)
    assert shown["state"] == "completed" and shown["waves"][0]["members"] == 3
    assert shown["waves"][0]["states"]["skipped"] == 1 and shown["waves"][0]["failed"] == 0
