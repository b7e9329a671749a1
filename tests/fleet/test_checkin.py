"""Check-in: state recorded, configuration by version, commands with acknowledgement, offline."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from fleet.models import Device, utcnow

REPORT = {"fw_version": "1.2.0", "uptime_s": 3600, "mem_free": 61000, "rssi": -67,
          "boot_reason": "power_on", "sensor_faults": {"pms5003": 2}, "config_version": 0,
          "update_state": "idle", "queue_len": 12, "lamp_level_pct": 30}


def test_checkin_records_state_and_marks_online(register, device_call, client, tokens):
    creds = register()
    reply = device_call(creds, "/device/v1/checkin", REPORT).json()
    assert reply["next_checkin_s"] > 0 and reply["commands"] == [] and reply["config"] is None
    shown = client.get(f"/api/v1/devices/{creds['device_id']}", headers=tokens["reader"]).json()
    assert shown["online"] is True and shown["fw_version"] == "1.2.0"
    assert shown["last_status"]["sensor_faults"] == {"pms5003": 2}
    summary = client.get("/api/v1/fleet/summary", headers=tokens["reader"]).json()
    assert summary["online"] == 1


def test_silent_node_is_offline(register, device_call, client, tokens, session):
    creds = register()
    device_call(creds, "/device/v1/checkin", REPORT)
    row = session.execute(select(Device).where(Device.uid == creds["device_id"])).scalar_one()
    row.last_seen = utcnow() - timedelta(hours=2)
    session.add(row)
    session.commit()
    shown = client.get(f"/api/v1/devices/{creds['device_id']}", headers=tokens["reader"]).json()
    assert shown["online"] is False
    offline = client.get("/api/v1/devices?online=false", headers=tokens["reader"]).json()
    assert [d["device_id"] for d in offline] == [creds["device_id"]]


def test_group_config_then_device_override_reach_the_node(register, device_call, client, tokens):
    creds = register(group="harbour")
    op = tokens["operator"]
    client.put("/api/v1/groups/harbour/config",
               json={"config": {"dimming": {"dim_level": 30}}}, headers=op)
    reply = device_call(creds, "/device/v1/checkin", REPORT).json()
    assert reply["config"] == {"dimming": {"dim_level": 30}}
    version = reply["config_version"]
    applied = dict(REPORT, config_version=version)
    assert device_call(creds, "/device/v1/checkin", applied).json()["config"] is None
    client.put(f"/api/v1/devices/{creds['device_id']}/config",
               json={"config": {"dimming": {"dim_level": 10}}}, headers=op)
    reply = device_call(creds, "/device/v1/checkin", applied).json()
    assert reply["config"] == {"dimming": {"dim_level": 10}} and reply["config_version"] > version
    client.put("/api/v1/groups/harbour/config", json={"config": {
               "dimming": {"dim_level": 40, "dusk_lux": 20.0}, "checkin_interval_s": 120}},
               headers=op)
    newer = device_call(creds, "/device/v1/checkin",
                        dict(REPORT, config_version=reply["config_version"])).json()
    # merged deeply: the node's dim_level over the group's, the group's dusk_lux beside it
    assert newer["config"] == {"dimming": {"dim_level": 10, "dusk_lux": 20.0},
                               "checkin_interval_s": 120}


def test_commands_are_delivered_until_acknowledged(register, device_call, client, tokens):
    creds = register()
    op = tokens["operator"]
    resp = client.post(f"/api/v1/devices/{creds['device_id']}/commands",
                       json={"type": "lamp_override", "args": {"level_pct": 100, "minutes": 30}},
                       headers=op)
    assert resp.status_code == 201
    cmd_id = resp.json()["id"]
    first = device_call(creds, "/device/v1/checkin", REPORT).json()["commands"]
    assert [c["id"] for c in first] == [cmd_id]
    again = device_call(creds, "/device/v1/checkin", REPORT).json()["commands"]
    assert [c["id"] for c in again] == [cmd_id]  # not acked yet: delivered again
    acked = dict(REPORT, acks=[{"id": cmd_id, "ok": True, "result": "lamp at 100 %"}])
    assert device_call(creds, "/device/v1/checkin", acked).json()["commands"] == []
    listed = client.get(f"/api/v1/devices/{creds['device_id']}/commands", headers=op).json()
    assert listed[0]["acked_at"] is not None and listed[0]["result"] == "lamp at 100 %"


def test_node_cannot_ack_another_nodes_command(register, device_call, client, tokens):
    a, b = register(), register()
    cmd = client.post(f"/api/v1/devices/{b['device_id']}/commands", json={"type": "reboot"},
                      headers=tokens["operator"]).json()
    device_call(a, "/device/v1/checkin", dict(REPORT, acks=[{"id": cmd["id"]}]))
    assert [c["id"] for c in device_call(b, "/device/v1/checkin", REPORT).json()["commands"]] \
        == [cmd["id"]]


def test_bad_command_arguments_are_refused(register, client, tokens):
    creds = register()
    resp = client.post(f"/api/v1/devices/{creds['device_id']}/commands",
                       json={"type": "lamp_override", "args": {"level_pct": 180}},
                       headers=tokens["operator"])
    assert resp.status_code == 422 and "level_pct" in resp.json()["detail"]
    resp = client.post(f"/api/v1/devices/{creds['device_id']}/commands",
                       json={"type": "self_destruct"}, headers=tokens["operator"])
    assert resp.status_code == 422


def test_bad_checkin_body_is_a_422_with_the_field(register, device_call):
    creds = register()
    resp = device_call(creds, "/device/v1/checkin", {"uptime_s": -5})
    assert resp.status_code == 422
    assert resp.json()["detail"][0]["loc"] == ["body", "uptime_s"]


# -- the release key set ---------------------------------------------------------------------


def _chain(client, tokens, release_key, length: int) -> list[str]:
    """Trust the test's key and publish `length` revocations of unseen key ids; the envelopes."""
    from ota.keys import make_revocation, raw_public_key

    client.post("/api/v1/keys", json={"public_key": raw_public_key(release_key).hex()},
                headers=tokens["operator"])
    envelopes = []
    for serial in range(1, length + 1):
        envelope = make_revocation(release_key, [f"{serial:016x}"], serial=serial)
        resp = client.post("/api/v1/keys/statements", content=envelope,
                           headers=dict(tokens["operator"],
                                        **{"Content-Type": "application/json"}))
        assert resp.status_code == 201, resp.text
        envelopes.append(envelope.decode())
    return envelopes


def test_checkin_delivers_missing_statements_in_order(register, device_call, client, tokens,
                                                      release_key):
    chain = _chain(client, tokens, release_key, 10)
    creds = register()
    first = device_call(creds, "/device/v1/checkin", dict(REPORT, keyset=0)).json()
    assert first["key_statements"] == chain[:8]  # at most 8 per reply
    rest = device_call(creds, "/device/v1/checkin", dict(REPORT, keyset=8)).json()
    assert rest["key_statements"] == chain[8:]
    current = device_call(creds, "/device/v1/checkin", dict(REPORT, keyset=10)).json()
    assert current["key_statements"] == []
    ahead = device_call(creds, "/device/v1/checkin", dict(REPORT, keyset=12)).json()
    assert ahead["key_statements"] == []


def test_node_that_reports_no_keyset_gets_no_statements(register, device_call, client, tokens,
                                                        release_key, session):
    _chain(client, tokens, release_key, 2)
    creds = register()
    reply = device_call(creds, "/device/v1/checkin", REPORT).json()
    assert reply["key_statements"] == []
    row = session.execute(select(Device).where(Device.uid == creds["device_id"])).scalar_one()
    assert row.keyset_serial is None and row.keyset_error is None


def test_checkin_records_the_keyset_and_each_change_of_its_refusal(register, device_call, client,
                                                                   tokens, session):
    from fleet.models import DeviceEvent

    creds = register()

    def events() -> list[dict]:
        rows = session.execute(select(DeviceEvent).where(DeviceEvent.kind == "keyset_error")
                               .order_by(DeviceEvent.id)).scalars()
        return [e.detail for e in rows]

    device_call(creds, "/device/v1/checkin", dict(REPORT, keyset=3))
    refusal = "bad_signature: statement 4 does not verify"
    for _ in range(2):  # the same refusal twice is one event
        device_call(creds, "/device/v1/checkin", dict(REPORT, keyset=3, keyset_error=refusal))
    shown = client.get(f"/api/v1/devices/{creds['device_id']}", headers=tokens["reader"]).json()
    assert shown["keyset"] == 3 and shown["keyset_error"] == refusal
    device_call(creds, "/device/v1/checkin", dict(REPORT, keyset=5))
    shown = client.get(f"/api/v1/devices/{creds['device_id']}", headers=tokens["reader"]).json()
    assert shown["keyset"] == 5 and shown["keyset_error"] is None
    assert events() == [{"error": refusal, "previous": "", "keyset": 3},
                        {"error": "", "previous": refusal, "keyset": 5}]
    device_call(creds, "/device/v1/checkin", REPORT)  # a report without keyset changes nothing
    session.expire_all()
    row = session.execute(select(Device).where(Device.uid == creds["device_id"])).scalar_one()
    assert row.keyset_serial == 5 and len(events()) == 2


def test_keyset_fields_out_of_range_are_refused(register, device_call):
    creds = register()
    long_error = device_call(creds, "/device/v1/checkin",
                             dict(REPORT, keyset=1, keyset_error="x" * 201))
    assert long_error.status_code == 422 and "keyset_error" in long_error.text
    for bad in (-1, 2**31, "3", 1.5, True):
        resp = device_call(creds, "/device/v1/checkin", dict(REPORT, keyset=bad))
        assert resp.status_code == 422, bad
