"""The audit trail: every operator action recorded with actor, target and outcome; refusals too;
filters and paging; operators only; and never a secret in a record."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from fleet.models import ApiToken, AuditRecord, ConfigProfile
from fleet.tokens import create_token, revoke_token

AUDIT = "/api/v1/audit"


def audit(client, tokens, **params):
    resp = client.get(AUDIT, params=params, headers=tokens["operator"])
    assert resp.status_code == 200, resp.text
    return resp.json()["records"]


def last(client, tokens, **params):
    records = audit(client, tokens, limit=1, **params)
    assert records, f"no audit record for {params}"
    return records[0]


def test_each_kind_of_operator_action_is_recorded_with_actor_target_and_outcome(
        client, tokens, register, trusted, make_bundle, upload):
    op, tech = tokens["operator"], tokens["technician"]
    node = register()
    uid = node["device_id"]
    assert last(client, tokens, action="device.register") | {"at": None, "id": None} == {
        "id": None, "at": None, "actor": "test-operator", "action": "device.register",
        "target": f"device:{uid}", "outcome": "ok", "status": None, "reason": "",
        "detail": {"pole_id": node["pole_id"], "group": "default", "board": "emulated"}}

    assert client.put("/api/v1/groups/harbour/config", json={"config": {"checkin_interval_s": 60}},
                      headers=op).status_code == 200
    assert client.put(f"/api/v1/devices/{uid}/config",
                      json={"config": {"dimming": {"dim_level": 30}}},
                      headers=op).status_code == 200
    assert client.post(f"/api/v1/devices/{uid}/commands", json={"type": "identify"},
                       headers=op).status_code == 201
    assert client.post(f"/api/v1/devices/{uid}/rotate-key", headers=tech).status_code == 202
    assert client.post(f"/api/v1/devices/{uid}/retire-key", headers=tech).status_code == 200
    assert client.post(f"/api/v1/devices/{uid}/enrollment", headers=tech).status_code == 201
    release = upload(make_bundle("1.1.0", 11)).json()
    rollout = client.post("/api/v1/rollouts", json={"release_id": release["id"],
                                                    "waves": [100], "allow_downgrade": True},
                          headers=op)
    assert rollout.status_code == 201, rollout.text
    rid = rollout.json()["id"]
    for action in ("pause", "resume", "abort"):
        assert client.post(f"/api/v1/rollouts/{rid}/{action}", headers=op).status_code == 200
    assert client.post(f"/api/v1/keys/{trusted}/revoke", headers=op).status_code == 200
    assert client.post(f"/api/v1/devices/{uid}/decommission", headers=op).status_code == 200

    seen = [(r["actor"], r["action"], r["target"], r["outcome"])
            for r in reversed(audit(client, tokens, limit=1000))]
    assert seen == [
        ("local:" + seen[0][0].split(":", 1)[1], "token.create", "token:test-operator", "ok"),
        (seen[0][0], "token.create", "token:test-technician", "ok"),
        (seen[0][0], "token.create", "token:test-reader", "ok"),
        ("test-operator", "release_key.trust", f"release_key:{trusted}", "ok"),
        ("test-operator", "device.register", f"device:{uid}", "ok"),
        ("test-operator", "config.set", "group:harbour", "ok"),
        ("test-operator", "config.set", f"device:{uid}", "ok"),
        ("test-operator", "command.send", f"device:{uid}", "ok"),
        ("test-technician", "device_key.rotate", f"device:{uid}", "ok"),
        ("test-technician", "device_key.retire", f"device:{uid}", "ok"),
        ("test-technician", "enrollment.issue", f"device:{uid}", "ok"),
        ("test-operator", "release.register", "release:1.1.0", "ok"),
        ("test-operator", "rollout.create", f"rollout:{rid}", "ok"),
        ("test-operator", "rollout.pause", f"rollout:{rid}", "ok"),
        ("test-operator", "rollout.resume", f"rollout:{rid}", "ok"),
        ("test-operator", "rollout.abort", f"rollout:{rid}", "ok"),
        ("test-operator", "release_key.revoke", f"release_key:{trusted}", "ok"),
        ("test-operator", "device.decommission", f"device:{uid}", "ok"),
    ]
    assert seen[0][0].startswith("local:")
    details = {r["action"]: r["detail"] for r in audit(client, tokens, limit=1000)}
    assert details["config.set"] == {"keys": ["checkin_interval_s"]}  # the group's (the first)
    assert details["command.send"] == {"type": "identify", "args": {}}
    assert details["rollout.create"]["version"] == "1.1.0"


def test_a_batch_registration_leaves_one_record_per_node(client, tokens):
    body = {"devices": [{"pole_id": f"B-{i}", "board": "emulated"} for i in range(3)],
            "enrollment": True}
    resp = client.post("/api/v1/devices/batch", json=body, headers=tokens["technician"])
    assert resp.status_code == 201
    uids = {f"device:{d['device_id']}" for d in resp.json()}
    records = audit(client, tokens, action="device.register")
    assert {r["target"] for r in records} == uids
    assert {r["actor"] for r in records} == {"test-technician"}


@pytest.mark.parametrize("role", ["reader", "technician"])
def test_a_refused_action_is_recorded_with_its_status_and_reason(client, tokens, register, role):
    uid = register()["device_id"]
    resp = client.put("/api/v1/groups/harbour/config", json={"config": {"x": 1}},
                      headers=tokens[role])
    assert resp.status_code == 403
    record = last(client, tokens, actor=f"test-{role}")
    assert (record["action"], record["target"], record["outcome"], record["status"]) == (
        "config.set", "group:harbour", "refused", 403)
    assert "needs one of: operator" in record["reason"]

    assert client.post(f"/api/v1/devices/{uid}/commands",
                       json={"type": "lamp_override", "args": {"level_pct": 500}},
                       headers=tokens["operator"]).status_code == 422
    record = last(client, tokens, action="command.send")
    assert (record["target"], record["outcome"], record["status"]) == (
        f"device:{uid}", "refused", 422)
    assert "level_pct" in record["reason"]

    malformed = client.put("/api/v1/groups/g/config", json={"config": "not a mapping"},
                           headers=tokens["operator"])
    assert malformed.status_code == 422
    record = last(client, tokens, target="group:g")
    assert (record["action"], record["outcome"], record["status"]) == ("config.set", "refused",
                                                                        422)
    assert record["reason"].startswith("body.config:")

    missing = client.post("/api/v1/devices/ll-000000000000/decommission",
                          headers=tokens["operator"])
    assert missing.status_code == 404
    record = last(client, tokens, action="device.decommission")
    assert (record["target"], record["outcome"], record["status"], record["reason"]) == (
        "device:ll-000000000000", "refused", 404, "no device ll-000000000000")


def test_a_refused_action_leaves_no_ok_record_and_no_change(client, tokens, register, session):
    register(pole_id="P-TAKEN")
    before = session.execute(select(func.count()).select_from(AuditRecord)).scalar_one()
    resp = client.post("/api/v1/devices/batch", json={"devices": [
        {"pole_id": "P-NEW", "board": "emulated"}, {"pole_id": "P-TAKEN", "board": "emulated"}]},
        headers=tokens["operator"])
    assert resp.status_code == 409
    records = audit(client, tokens, limit=1000)
    assert len(records) == before + 1
    assert (records[0]["action"], records[0]["outcome"], records[0]["status"]) == (
        "device.register", "refused", 409)


def test_an_action_and_its_record_share_one_transaction(client, tokens, session, monkeypatch):
    """A failure at commit (here: the record itself cannot be written) undoes the action too."""
    from fleet import audit as fleet_audit

    def broken(*_args, **_kwargs):
        raise RuntimeError("audit store down")

    monkeypatch.setattr(fleet_audit, "small_detail", broken)
    with pytest.raises(RuntimeError):
        client.put("/api/v1/groups/harbour/config", json={"config": {"telemetry_batch": 10}},
                   headers=tokens["operator"])
    assert session.execute(select(ConfigProfile)).first() is None


def test_a_request_without_a_valid_token_is_not_recorded(client, tokens):
    before = audit(client, tokens, limit=1000)
    assert client.put("/api/v1/groups/g/config", json={"config": {}},
                      headers={"Authorization": "Bearer nope"}).status_code == 401
    assert audit(client, tokens, limit=1000) == before


def test_token_creation_and_revocation_on_the_server_name_the_local_user(client, tokens,
                                                                          session):
    create_token(session, "grafana", "reader", actor="local:alice")
    revoke_token(session, "grafana", actor="local:alice")
    with pytest.raises(ValueError):
        create_token(session, "bad", "admin", actor="local:alice")
    records = audit(client, tokens, actor="local:alice")
    assert [(r["action"], r["target"], r["outcome"], r["detail"]) for r in records] == [
        ("token.create", "token:bad", "refused", {"role": "admin"}),
        ("token.revoke", "token:grafana", "ok", {"revoked": 1}),
        ("token.create", "token:grafana", "ok", {"role": "reader"}),
    ]
    assert records[0]["status"] is None and "unknown role" in records[0]["reason"]


def test_filters_by_actor_target_action_outcome_and_time(client, tokens, register):
    a, b = register()["device_id"], register()["device_id"]
    for uid in (a, b):
        client.post(f"/api/v1/devices/{uid}/commands", json={"type": "reboot"},
                    headers=tokens["operator"])
    client.post(f"/api/v1/devices/{a}/rotate-key", headers=tokens["technician"])
    client.post(f"/api/v1/devices/{a}/rotate-key", headers=tokens["technician"])  # 409

    on_a = audit(client, tokens, target=f"device:{a}")
    assert [r["action"] for r in on_a] == ["device_key.rotate", "device_key.rotate",
                                           "command.send", "device.register"]
    assert {r["target"] for r in audit(client, tokens, target="device:*")} == {
        f"device:{a}", f"device:{b}"}
    assert [r["target"] for r in audit(client, tokens, action="command.send")] == [
        f"device:{b}", f"device:{a}"]
    assert len(audit(client, tokens, action="device_key.*")) == 2
    tech = audit(client, tokens, actor="test-technician")
    assert [r["outcome"] for r in tech] == ["refused", "ok"]
    assert [r["status"] for r in audit(client, tokens, outcome="refused")] == [409]

    now = datetime.now(UTC)
    assert audit(client, tokens, since=(now + timedelta(minutes=1)).isoformat()) == []
    assert audit(client, tokens, until=(now - timedelta(minutes=1)).isoformat()) == []
    everything = audit(client, tokens, limit=1000)
    window = audit(client, tokens, since=(now - timedelta(minutes=5)).isoformat(),
                   until=(now + timedelta(minutes=1)).isoformat(), limit=1000)
    assert window == everything
    naive = audit(client, tokens, since=(now - timedelta(minutes=5)).replace(tzinfo=None)
                  .isoformat(), limit=1000)
    assert naive == everything


def test_paging_is_newest_first_with_a_cursor(client, tokens):
    for i in range(5):
        client.put(f"/api/v1/groups/g{i}/config", json={"config": {}},
                   headers=tokens["operator"])
    targets, cursor = [], None
    while True:
        params = {"action": "config.set", "limit": 2} | ({"cursor": cursor} if cursor else {})
        page = client.get(AUDIT, params=params, headers=tokens["operator"]).json()
        targets += [r["target"] for r in page["records"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert targets == [f"group:g{i}" for i in reversed(range(5))]


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 1001}, {"since": "yesterday"},
                                    {"outcome": "maybe"}, {"actr": "typo"}])
def test_bad_filters_and_unknown_parameters_are_refused(client, tokens, params):
    resp = client.get(AUDIT, params=params, headers=tokens["operator"])
    assert resp.status_code == 422


@pytest.mark.parametrize("role", ["reader", "technician"])
def test_only_an_operator_reads_the_audit_trail(client, tokens, role):
    assert client.get(AUDIT, headers=tokens[role]).status_code == 403
    assert client.get(AUDIT).status_code == 401


def test_no_secret_appears_in_any_audit_record(client, tokens, session, register):
    secrets = [tokens[r]["Authorization"].split()[1] for r in tokens]
    secrets.append(create_token(session, "ci", "operator", actor="local:ci"))
    node = register()
    secrets.append(node["secret"])
    uid = node["device_id"]
    retired = client.post(f"/api/v1/devices/{uid}/retire-key", headers=tokens["technician"])
    secrets.append(retired.json()["secret"])
    client.post(f"/api/v1/devices/{uid}/rotate-key", headers=tokens["technician"])
    code = client.post(f"/api/v1/devices/{uid}/enrollment", headers=tokens["technician"])
    secrets.append(code.json()["enrollment_code"])
    batch = client.post("/api/v1/devices/batch", json={
        "devices": [{"pole_id": "S-1", "board": "emulated"}], "enrollment": True},
        headers=tokens["operator"]).json()
    secrets += [batch[0]["secret"], batch[0]["enrollment_code"]]
    hashes = list(session.execute(select(ApiToken.token_hash)).scalars())

    everything = json.dumps(audit(client, tokens, limit=1000))
    stored = json.dumps([r.model_dump(mode="json") for r in
                         session.execute(select(AuditRecord)).scalars()])
    assert len(audit(client, tokens, limit=1000)) == 9  # 4 tokens, 2 nodes, 3 key actions
    for secret in secrets + hashes:
        assert secret not in everything and secret not in stored
        assert secret.upper() not in everything and secret.lower() not in everything


def test_the_audit_route_is_documented_with_its_errors(client):
    route = client.get("/openapi.json").json()["paths"]["/api/v1/audit"]["get"]
    assert set(route["responses"]) >= {"200", "401", "403", "422"}
    assert {p["name"] for p in route["parameters"]} == {
        "actor", "target", "action", "outcome", "since", "until", "cursor", "limit"}
    assert route["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/AuditPage")


def test_key_statements_and_refused_uploads_are_recorded(client, tokens, trusted, release_key,
                                                         upload, tmp_path):
    from ota.keys import generate_private_key, make_rotation, raw_public_key

    rotation = make_rotation(release_key, raw_public_key(generate_private_key()), serial=1)
    as_json = dict(tokens["operator"], **{"Content-Type": "application/json"})
    published = client.post("/api/v1/keys/statements", content=rotation, headers=as_json)
    assert published.status_code == 201, published.text
    record = last(client, tokens, action="key_statement.publish")
    assert (record["target"], record["outcome"]) == ("key_statement:1", "ok")
    replayed = client.post("/api/v1/keys/statements", content=rotation, headers=as_json)
    assert replayed.status_code == 409
    record = last(client, tokens, action="key_statement.publish")
    assert (record["target"], record["outcome"], record["status"]) == (
        "key_statements", "refused", 409)
    assert "replayed" in record["reason"]

    junk = tmp_path / "junk.llb"
    junk.write_bytes(b"not a bundle")
    assert upload(junk).status_code == 422
    record = last(client, tokens, action="release.register")
    assert (record["target"], record["outcome"], record["status"]) == ("releases", "refused",
                                                                        422)
