"""Telemetry ingest: stored once, idempotent on resend, all-or-nothing with a reason per reading."""

from __future__ import annotations

import json
import time

import pytest
from sqlalchemy import func, select

from fleet.models import Reading
from tests.rigs.device_signing import signed_headers

PATH = "/device/v1/telemetry"


def reading(seq: int, m: str = "temperature_c", v: float = 21.5, ts: float | None = None) -> dict:
    return {"seq": seq, "ts": int(time.time()) - 60 if ts is None else ts, "m": m, "v": v}


def stored(session) -> list[tuple[int, str, float]]:
    session.expire_all()
    rows = session.execute(select(Reading.seq, Reading.metric, Reading.value)
                           .order_by(Reading.seq)).all()
    return [tuple(r) for r in rows]


def test_batch_is_stored_and_acknowledged(register, device_call, session):
    creds = register()
    batch = [reading(1), reading(2, "humidity_pct", 55.0), reading(3, "presence_count", 4)]
    resp = device_call(creds, PATH, {"readings": batch})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"stored": 3, "duplicates": 0, "acked_seq": 3, "conflicts": []}
    assert stored(session) == [(1, "temperature_c", 21.5), (2, "humidity_pct", 55.0),
                               (3, "presence_count", 4.0)]


def test_resent_batch_stores_nothing_twice(register, device_call, session):
    creds = register()
    batch = {"readings": [reading(s) for s in range(10, 15)]}
    assert device_call(creds, PATH, batch).json()["stored"] == 5
    again = device_call(creds, PATH, batch)
    assert again.status_code == 200
    assert again.json() == {"stored": 0, "duplicates": 5, "acked_seq": 14, "conflicts": []}
    assert len(stored(session)) == 5


def test_overlapping_batch_stores_only_the_new_readings(register, device_call, session):
    creds = register()
    ts = time.time() - 60
    device_call(creds, PATH, {"readings": [reading(s, ts=ts) for s in (1, 2, 3)]})
    reply = device_call(creds, PATH, {"readings": [reading(s, ts=ts) for s in (2, 3, 4, 5)]}
                        ).json()
    assert reply == {"stored": 2, "duplicates": 2, "acked_seq": 5, "conflicts": []}
    assert [r[0] for r in stored(session)] == [1, 2, 3, 4, 5]


def test_same_seq_from_two_nodes_is_two_readings(register, device_call, session):
    a, b = register(), register()
    assert device_call(a, PATH, {"readings": [reading(1)]}).json()["stored"] == 1
    assert device_call(b, PATH, {"readings": [reading(1)]}).json()["stored"] == 1
    assert session.execute(select(func.count()).select_from(Reading)).scalar_one() == 2


def test_identical_repeat_within_a_batch_is_kept_once(register, device_call, session):
    creds = register()
    same = reading(7)
    reply = device_call(creds, PATH, {"readings": [same, dict(same)]}).json()
    assert reply == {"stored": 1, "duplicates": 0, "acked_seq": 7, "conflicts": []}


def test_seq_resent_with_other_content_is_a_conflict_not_a_duplicate(register, device_call,
                                                                     session, caplog):
    from fleet.models import DeviceEvent

    creds = register()
    ts = time.time() - 60
    device_call(creds, PATH, {"readings": [reading(s, ts=ts) for s in (1, 2, 3)]})
    # seq 2 again as it was; seq 3 with another value and seq 1 with another time: a node that
    # reused its sequence numbers. The stored readings stand; the node hears of it.
    resend = [reading(2, ts=ts), reading(3, ts=ts, v=30.0), reading(1, ts=ts + 1), reading(4)]
    resp = device_call(creds, PATH, {"readings": resend})
    assert resp.status_code == 200
    assert resp.json() == {"stored": 1, "duplicates": 1, "acked_seq": 4, "conflicts": [1, 3]}
    assert stored(session) == [(1, "temperature_c", 21.5), (2, "temperature_c", 21.5),
                               (3, "temperature_c", 21.5), (4, "temperature_c", 21.5)]
    [event] = session.execute(select(DeviceEvent).where(
        DeviceEvent.kind == "telemetry_conflict")).scalars().all()
    assert event.detail["count"] == 2 and event.detail["seqs"] == [1, 3]
    shown = {r["seq"]: r for r in event.detail["readings"]}
    assert shown[3]["stored"]["v"] == 21.5 and shown[3]["sent"]["v"] == 30.0
    assert shown[1]["sent"]["ts"] == ts + 1
    assert "other content" in caplog.text
    # Resent again: still conflicts (and recorded again), never stored.
    again = device_call(creds, PATH, {"readings": resend}).json()
    assert again == {"stored": 0, "duplicates": 2, "acked_seq": 4, "conflicts": [1, 3]}


NOW = int(time.time())
REFUSALS = [
    ("unknown metric", reading(2, "co2_ppm", 400), "m", 2, "unknown metric"),
    ("above range", reading(2, "humidity_pct", 100.5), "v", 2, "outside humidity_pct"),
    ("below range", reading(2, "temperature_c", -41), "v", 2, "outside temperature_c"),
    ("NaN", reading(2, v=float("nan")), "v", 2, "finite"),
    ("infinity", reading(2, v=float("inf")), "v", 2, "finite"),
    ("string value", reading(2, v="21"), "v", 2, "finite number"),
    ("boolean value", reading(2, "presence_count", True), "v", 2, "finite number"),
    ("fractional count", reading(2, "presence_count", 2.5), "v", 2, "whole"),
    ("fractional seq", {**reading(0), "seq": 2.5}, "seq", None, "non-negative integer"),
    ("string seq", {**reading(0), "seq": "2"}, "seq", None, "non-negative integer"),
    ("negative seq", {**reading(0), "seq": -1}, "seq", None, "non-negative integer"),
    ("future ts", reading(2, ts=NOW + 3600), "ts", 2, "in the future"),
    ("ancient ts", reading(2, ts=NOW - 31 * 86400), "ts", 2, "older than the 30 days"),
    ("missing value", {"seq": 2, "ts": NOW, "m": "lux"}, None, 2, "missing v"),
    ("extra key", {**reading(2), "unit": "C"}, None, 2, "unknown key unit"),
]


@pytest.mark.parametrize(("bad", "field", "seq", "says"), [r[1:] for r in REFUSALS],
                         ids=[r[0] for r in REFUSALS])
def test_one_bad_reading_refuses_the_whole_batch(register, device_call, session, bad, field,
                                                 seq, says):
    creds = register()
    resp = device_call(creds, PATH, {"readings": [reading(1), bad, reading(3)]})
    assert resp.status_code == 422, resp.text
    detail = resp.json()["detail"]
    assert detail["index"] == 1 and detail["seq"] == seq and detail["field"] == field
    assert says in detail["error"] and detail["error"].startswith("reading 1")
    assert stored(session) == []


def test_seq_repeated_with_other_content_refuses_the_batch(register, device_call, session):
    creds = register()
    resp = device_call(creds, PATH, {"readings": [reading(1), reading(2), reading(1, v=30.0)]})
    assert resp.status_code == 422
    detail = resp.json()["detail"]
    assert (detail["index"], detail["seq"]) == (2, 1) and "different content" in detail["error"]
    assert stored(session) == []


def test_oversized_batch_is_refused(register, device_call, session):
    creds = register()
    resp = device_call(creds, PATH, {"readings": [reading(s) for s in range(501)]})
    assert resp.status_code == 422 and "at most 500" in resp.json()["detail"]["error"]
    assert stored(session) == []


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"readings": []}',
                                  b'{"readings": [], "extra": 1}', b'{"readings": {}}'])
def test_malformed_body_is_refused(register, client, body):
    creds = register()
    headers = signed_headers(creds["device_id"], creds["secret"], "POST", PATH, body)
    resp = client.post(PATH, content=body, headers=headers)
    assert resp.status_code == 422, resp.text
    assert resp.json()["detail"]["index"] is None


def test_rejected_batch_leaves_earlier_data_and_resend_works(register, device_call, session):
    creds = register()
    device_call(creds, PATH, {"readings": [reading(1)]})
    bad = device_call(creds, PATH, {"readings": [reading(2), reading(3, "lux", -5)]})
    assert bad.status_code == 422
    fixed = device_call(creds, PATH, {"readings": [reading(2), reading(3, "lux", 5)]})
    assert fixed.json() == {"stored": 2, "duplicates": 0, "acked_seq": 3, "conflicts": []}
    assert [r[0] for r in stored(session)] == [1, 2, 3]


def test_decommissioned_node_cannot_post(register, device_call, client, tokens, session):
    creds = register()
    client.post(f"/api/v1/devices/{creds['device_id']}/decommission", headers=tokens["operator"])
    resp = device_call(creds, PATH, {"readings": [reading(1)]})
    assert resp.status_code == 403
    assert stored(session) == []


def test_node_cannot_post_as_another_node(register, device_call, session):
    a, b = register(), register()
    resp = device_call(a, PATH, {"readings": [reading(1)]}, as_device=b["device_id"])
    assert resp.status_code == 401 and "signature" in resp.json()["detail"]
    assert stored(session) == []


def test_tampered_body_is_refused(register, device_call, session):
    creds = register()
    signed = {"readings": [reading(1, v=20.0)]}
    tampered = json.dumps({"readings": [reading(1, v=80.0)]}).encode()
    resp = device_call(creds, PATH, signed, body=tampered)
    assert resp.status_code == 401
    assert stored(session) == []


def test_operator_token_is_not_a_device_identity(client, tokens):
    resp = client.post(PATH, json={"readings": [reading(1)]}, headers=tokens["operator"])
    assert resp.status_code == 401
