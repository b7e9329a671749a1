"""A node's reported configuration state through the API (issue 14): the version it applied,
the version it refused and why, drift (behind its desired version for more than two check-ins),
the drift listing, and the node's events read back."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fleet.models import ConfigProfile
from tests.fleet.test_checkin import REPORT

REASON = "dimming.dim_level: must be between 0 and 100"


def checkin(device_call, creds, version, refused=None):
    body = dict(REPORT, config_version=version)
    if refused is not None:
        body["config_refused"] = {"version": refused, "reason": REASON}
    resp = device_call(creds, "/device/v1/checkin", body)
    assert resp.status_code == 200, resp.text
    return resp.json()


def old_profile(session, group, version=3, body=None):
    """A group profile an older server stored without validating it."""
    session.add(ConfigProfile(scope="group", target=group, version=version,
                              body=body or {"dimming": {"dim_level": 500}}))
    session.commit()


def view(client, tokens, uid):
    resp = client.get(f"/api/v1/devices/{uid}/config", headers=tokens["reader"])
    assert resp.status_code == 200, resp.text
    return resp.json()


def drift(client, tokens, **params):
    resp = client.get("/api/v1/config/drift", params=params, headers=tokens["reader"])
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_a_refusal_shows_in_the_nodes_config_then_drift_until_a_good_version_is_applied(
        client, tokens, register, device_call, session):
    creds = register(group="old")
    uid = creds["device_id"]
    old_profile(session, "old")
    fresh = view(client, tokens, uid)
    assert (fresh["applied_version"], fresh["refused_version"], fresh["refused_reason"],
            fresh["drifting"], fresh["behind_checkins"]) == (0, None, None, False, 0)

    assert checkin(device_call, creds, 0)["config_version"] == 3  # offered
    shown = view(client, tokens, uid)
    assert shown["desired_version"] == 3 and shown["behind_checkins"] == 1
    assert shown["drifting"] is False and shown["refused_version"] is None

    reply = checkin(device_call, creds, 0, refused=3)  # the node refused it
    assert reply["config"] is None  # not resent
    shown = view(client, tokens, uid)
    assert (shown["applied_version"], shown["refused_version"], shown["refused_reason"]) == \
        (0, 3, REASON)
    assert shown["behind_checkins"] == 2 and shown["drifting"] is False
    assert drift(client, tokens) == {"nodes": [], "next_cursor": None}  # two: not yet

    checkin(device_call, creds, 0, refused=3)
    shown = view(client, tokens, uid)
    assert shown["drifting"] is True and shown["behind_checkins"] == 3
    [node] = drift(client, tokens)["nodes"]
    assert node["device_id"] == uid and node["pole_id"] == creds["pole_id"]
    assert (node["group"], node["desired_version"], node["applied_version"],
            node["behind_checkins"], node["refused_version"], node["refused_reason"]) == \
        ("old", 3, 0, 3, 3, REASON)
    assert node["online"] is True
    assert datetime.fromisoformat(node["last_seen"]) > datetime.now(UTC) - timedelta(minutes=1)
    assert [n["device_id"] for n in drift(client, tokens, group="old")["nodes"]] == [uid]
    assert drift(client, tokens, group="harbour")["nodes"] == []

    # the operator stores a good version: offered, applied, and the node is no longer listed
    resp = client.put("/api/v1/groups/old/config", json={"config": {"dimming": {"dim_level": 40}}},
                      headers=tokens["operator"])
    assert resp.status_code == 200, resp.text
    reply = checkin(device_call, creds, 0, refused=3)
    assert reply["config_version"] == 4
    checkin(device_call, creds, 4)
    shown = view(client, tokens, uid)
    assert (shown["applied_version"], shown["refused_version"], shown["refused_reason"],
            shown["drifting"], shown["behind_checkins"]) == (4, None, None, False, 0)
    assert drift(client, tokens)["nodes"] == []


def test_a_node_behind_without_a_refusal_drifts_too_and_the_listing_pages(
        client, tokens, register, device_call, session):
    """A node that never applies its version (older firmware, a lost reply each time) drifts
    without a reason; the listing pages by cursor and leaves retired nodes out."""
    old_profile(session, "quiet", body={"checkin_interval_s": 600})
    nodes = [register(group="quiet") for _ in range(3)]
    for creds in nodes:
        for _ in range(3):
            checkin(device_call, creds, 0)
    first = drift(client, tokens, limit=2)
    assert [n["device_id"] for n in first["nodes"]] == [n["device_id"] for n in nodes[:2]]
    assert all(n["refused_reason"] is None and n["refused_version"] is None
               for n in first["nodes"])
    second = drift(client, tokens, limit=2, cursor=first["next_cursor"])
    assert [n["device_id"] for n in second["nodes"]] == [nodes[2]["device_id"]]
    assert second["next_cursor"] is None
    assert client.post(f"/api/v1/devices/{nodes[0]['device_id']}/decommission",
                       headers=tokens["operator"]).status_code == 200
    assert [n["device_id"] for n in drift(client, tokens)["nodes"]] == \
        [n["device_id"] for n in nodes[1:]]


def test_drift_refuses_an_unknown_parameter_and_needs_a_token(client, tokens):
    resp = client.get("/api/v1/config/drift", params={"groop": "x"}, headers=tokens["reader"])
    assert resp.status_code == 422 and resp.json()["detail"][0]["loc"] == ["query", "groop"]
    assert client.get("/api/v1/config/drift", params={"limit": 0},
                      headers=tokens["reader"]).status_code == 422
    assert client.get("/api/v1/config/drift").status_code == 401


def test_a_nodes_events_newest_first_filtered_and_paged(
        client, tokens, register, device_call, session):
    creds = register(group="old")
    uid = creds["device_id"]
    old_profile(session, "old")
    checkin(device_call, creds, 0)
    checkin(device_call, creds, 0, refused=3)
    checkin(device_call, creds, 0, refused=3)  # the same refusal again: no second event
    assert client.post(f"/api/v1/devices/{uid}/rotate-key",
                       headers=tokens["operator"]).status_code == 202

    def events(**params):
        resp = client.get(f"/api/v1/devices/{uid}/events", params=params,
                          headers=tokens["reader"])
        assert resp.status_code == 200, resp.text
        return resp.json()

    page = events()
    assert [e["kind"] for e in page["events"]] == [
        "key_rotation_started", "config_refused", "registered"]
    assert page["next_cursor"] is None
    refused = page["events"][1]
    assert refused["detail"] == {"version": 3, "reason": REASON}
    assert datetime.fromisoformat(refused["at"]) > datetime.now(UTC) - timedelta(minutes=1)
    assert page["events"][2]["detail"] == {"by": "test-operator"}
    assert [e["kind"] for e in events(kind="config_refused")["events"]] == ["config_refused"]
    assert events(kind="keyset_error")["events"] == []

    first = events(limit=2)
    assert [e["kind"] for e in first["events"]] == ["key_rotation_started", "config_refused"]
    rest = events(limit=2, cursor=first["next_cursor"])
    assert [e["kind"] for e in rest["events"]] == ["registered"] and rest["next_cursor"] is None

    later = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    assert events(since=later)["events"] == []
    assert len(events(until=later)["events"]) == 3
    naive = (datetime.now(UTC) - timedelta(minutes=5)).replace(tzinfo=None).isoformat()
    assert len(events(since=naive)["events"]) == 3  # no time zone: UTC

    for params in ({"kind": "nonsense"}, {"limit": 0}, {"limt": 5}, {"since": "yesterday"}):
        resp = client.get(f"/api/v1/devices/{uid}/events", params=params,
                          headers=tokens["reader"])
        assert resp.status_code == 422, (params, resp.text)
    assert client.get("/api/v1/devices/ll-000000000000/events",
                      headers=tokens["reader"]).status_code == 404
    assert client.get(f"/api/v1/devices/{uid}/events").status_code == 401


def test_every_event_kind_the_server_writes_can_be_asked_for():
    """The kind filter lists the kinds (a typo is a 422): every DeviceEvent the server writes
    must have its kind there."""
    from typing import get_args

    from fleet.schemas import EventKind

    root = Path(__file__).resolve().parents[2] / "fleet"
    written = set()
    for path in root.rglob("*.py"):
        for call in re.findall(r"DeviceEvent\((.*?)\)\)", path.read_text(), re.S):
            written.update(re.findall(r'kind="([a-z_]+)"', call))
    assert written and written <= set(get_args(EventKind)), written - set(get_args(EventKind))


def test_the_reply_examples_are_valid_replies():
    from pydantic import TypeAdapter

    from fleet import schemas

    for model in (schemas.ConfigView, schemas.DriftNodeOut, schemas.DriftPage,
                  schemas.DeviceEventOut, schemas.EventPage):
        [example] = model.model_json_schema()["examples"]
        TypeAdapter(model).validate_python(example)
