"""A command's life through the API: queued, delivered, acked with the node's answer (ok or
refused, reason, result), or expired; on SQLite and PostgreSQL (and the quick check-in path)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import update

from fleet.models import Command, utcnow

REPORT = {"fw_version": "1.2.0", "uptime_s": 60, "config_version": 0, "lamp_level_pct": 30}


def _send(client, tokens, uid: str, body: dict) -> dict:
    resp = client.post(f"/api/v1/devices/{uid}/commands", json=body, headers=tokens["operator"])
    assert resp.status_code == 201, resp.text
    return resp.json()


def _show(client, tokens, uid: str, cid: int) -> dict:
    resp = client.get(f"/api/v1/devices/{uid}/commands/{cid}", headers=tokens["reader"])
    assert resp.status_code == 200, resp.text
    return resp.json()


def _expire(session, cid: int) -> None:
    session.execute(update(Command).where(Command.id == cid)
                    .values(expires_at=utcnow() - timedelta(seconds=1)))
    session.commit()


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_a_commands_life_queued_delivered_acked_with_result(register, device_call, client,
                                                            tokens):
    creds = register()
    uid = creds["device_id"]
    cmd = _send(client, tokens, uid, {"type": "identify"})
    assert cmd["state"] == "queued" and cmd["ok"] is None and cmd["delivered_at"] is None
    life = _ts(cmd["expires_at"]) - _ts(cmd["created_at"])
    assert life == timedelta(days=1)  # the default lifetime
    reply = device_call(creds, "/device/v1/checkin", REPORT).json()
    assert [c["id"] for c in reply["commands"]] == [cmd["id"]]
    shown = _show(client, tokens, uid, cmd["id"])
    assert shown["state"] == "delivered" and shown["delivered_at"] is not None
    assert shown["acked_at"] is None
    acks = [{"id": cmd["id"], "ok": True, "result": "blinking 10 s"}]
    assert device_call(creds, "/device/v1/checkin", dict(REPORT, acks=acks)).json()[
        "commands"] == []
    shown = _show(client, tokens, uid, cmd["id"])
    assert shown["state"] == "acked" and shown["ok"] is True
    assert shown["result"] == "blinking 10 s" and shown["reason"] == ""
    assert shown["acked_at"] >= shown["delivered_at"]
    listed = client.get(f"/api/v1/devices/{uid}/commands", headers=tokens["reader"]).json()
    assert listed == [shown]


def test_a_refusal_is_recorded_with_its_reason_and_an_old_nodes_ack_is_taken(
        register, device_call, client, tokens):
    creds = register()
    uid = creds["device_id"]
    refused = _send(client, tokens, uid, {"type": "lamp_override",
                                          "args": {"level_pct": 50, "minutes": 30}})
    plain = _send(client, tokens, uid, {"type": "reboot"})
    device_call(creds, "/device/v1/checkin", REPORT)
    acks = [{"id": refused["id"], "ok": False, "reason": "bad minutes"},
            {"id": plain["id"], "ok": True}]  # what firmware before results sends
    device_call(creds, "/device/v1/checkin", dict(REPORT, acks=acks))
    shown = _show(client, tokens, uid, refused["id"])
    assert (shown["state"], shown["ok"], shown["reason"], shown["result"]) == \
        ("acked", False, "bad minutes", "")
    shown = _show(client, tokens, uid, plain["id"])
    assert (shown["state"], shown["ok"], shown["reason"], shown["result"]) == \
        ("acked", True, "", "")
    # a repeated answer (its reply was lost) changes nothing
    again = [{"id": refused["id"], "ok": True, "result": "changed my mind"}]
    device_call(creds, "/device/v1/checkin", dict(REPORT, acks=again))
    assert _show(client, tokens, uid, refused["id"])["ok"] is False


def test_an_expired_command_is_not_delivered_but_a_late_answer_counts(
        register, device_call, client, tokens, session):
    creds = register()
    uid = creds["device_id"]
    never = _send(client, tokens, uid, {"type": "reboot", "expires_in_s": 60})
    assert _ts(never["expires_at"]) - _ts(never["created_at"]) == timedelta(seconds=60)
    records = client.get("/api/v1/audit", params={"action": "command.send", "limit": 1},
                         headers=tokens["operator"]).json()["records"]
    assert records[0]["detail"] == {"type": "reboot", "args": {}, "expires_in_s": 60}
    _expire(session, never["id"])
    assert _show(client, tokens, uid, never["id"])["state"] == "expired"
    assert device_call(creds, "/device/v1/checkin", REPORT).json()["commands"] == []
    shown = _show(client, tokens, uid, never["id"])
    assert shown["state"] == "expired" and shown["delivered_at"] is None

    late = _send(client, tokens, uid, {"type": "identify"})
    assert [c["id"] for c in device_call(creds, "/device/v1/checkin", REPORT).json()[
        "commands"]] == [late["id"]]
    _expire(session, late["id"])
    assert device_call(creds, "/device/v1/checkin", REPORT).json()["commands"] == []
    assert _show(client, tokens, uid, late["id"])["state"] == "expired"
    acks = [{"id": late["id"], "ok": True, "result": "blinking 10 s"}]
    device_call(creds, "/device/v1/checkin", dict(REPORT, acks=acks))
    shown = _show(client, tokens, uid, late["id"])
    assert shown["state"] == "acked" and shown["result"] == "blinking 10 s"


@pytest.mark.parametrize("expires_in_s", [0, 59, 7 * 86400 + 1, "soon"])
def test_an_expiry_out_of_bounds_is_refused(register, client, tokens, expires_in_s):
    uid = register()["device_id"]
    resp = client.post(f"/api/v1/devices/{uid}/commands",
                       json={"type": "reboot", "expires_in_s": expires_in_s},
                       headers=tokens["operator"])
    assert resp.status_code == 422
    assert resp.json()["detail"][0]["loc"] == ["body", "expires_in_s"]
    assert client.get(f"/api/v1/devices/{uid}/commands", headers=tokens["reader"]).json() == []


def test_one_command_is_shown_only_under_its_own_node(register, client, tokens):
    a, b = register(), register()
    cmd = _send(client, tokens, a["device_id"], {"type": "identify"})
    other = client.get(f"/api/v1/devices/{b['device_id']}/commands/{cmd['id']}",
                       headers=tokens["reader"])
    assert other.status_code == 404
    missing = client.get(f"/api/v1/devices/{a['device_id']}/commands/{cmd['id'] + 1}",
                         headers=tokens["reader"])
    assert missing.status_code == 404
    nobody = client.get(f"/api/v1/devices/ll-000000000000/commands/{cmd['id']}",
                        headers=tokens["reader"])
    assert nobody.status_code == 404
    assert client.get(f"/api/v1/devices/{a['device_id']}/commands/{cmd['id']}").status_code \
        == 401


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_quick_path_settles_a_node_whose_commands_are_answered_or_expired(
        register, device_call, client, tokens, session):
    quick = client.app.state.quick_checkin
    creds = register()
    uid = creds["device_id"]
    assert device_call(creds, "/device/v1/checkin", REPORT).status_code == 200
    assert quick.settled == 1
    cmd = _send(client, tokens, uid, {"type": "identify"})
    first = device_call(creds, "/device/v1/checkin", REPORT).json()
    second = device_call(creds, "/device/v1/checkin", REPORT).json()
    assert [c["id"] for c in first["commands"]] == [c["id"] for c in second["commands"]] \
        == [cmd["id"]]  # delivered again until answered: the full path's
    assert quick.settled == 1
    expired = _send(client, tokens, uid, {"type": "reboot"})
    _expire(session, expired["id"])
    acks = [{"id": cmd["id"], "ok": True, "result": "blinking 10 s"}]
    assert device_call(creds, "/device/v1/checkin", dict(REPORT, acks=acks)).json()[
        "commands"] == []
    assert quick.settled == 1  # an answer: the full path's
    assert device_call(creds, "/device/v1/checkin", REPORT).json()["commands"] == []
    assert quick.settled == 2  # the expired one holds nothing back
    assert _show(client, tokens, uid, expired["id"])["state"] == "expired"
    assert _show(client, tokens, uid, cmd["id"])["state"] == "acked"


def test_migration_0009_gives_old_commands_a_days_life_and_reads_their_answers(
        register, client, tokens, app_env):
    from alembic import command as alembic
    from sqlalchemy import JSON, DateTime, column, insert, table, text

    from fleet.core import db as fleet_db

    uid = register()["device_id"]
    config = fleet_db.alembic_config(app_env)
    engine = fleet_db.make_engine(app_env)
    queued = utcnow() - timedelta(hours=30)
    try:
        alembic.downgrade(config, "0008")
        with engine.begin() as conn:
            device_id = conn.execute(text("SELECT id FROM device WHERE uid = :uid"),
                                     {"uid": uid}).scalar_one()
            old_table = table("command", column("device_id"), column("type"),
                              column("args", JSON), column("result"),
                              column("created_at", DateTime(timezone=True)),
                              column("acked_at", DateTime(timezone=True)))
            for result, acked in (("", None), ("ok", queued), ("failed", queued),
                                  ("lamp at 100 %", queued)):
                conn.execute(insert(old_table).values(
                    device_id=device_id, type="identify", args={}, created_at=queued,
                    acked_at=acked, result=result))
    finally:
        alembic.upgrade(config, "head")
        engine.dispose()
    listed = client.get(f"/api/v1/devices/{uid}/commands", headers=tokens["reader"])
    rows = [(c["state"], c["ok"], c["result"]) for c in reversed(listed.json())]
    assert rows == [("expired", None, ""), ("acked", True, "ok"), ("acked", False, "failed"),
                    ("acked", True, "lamp at 100 %")]
    for c in listed.json():
        assert _ts(c["expires_at"]) - _ts(c["created_at"]) == timedelta(days=1)
