"""Device signatures and API tokens: every refusal a real attacker or a broken node would meet."""

from __future__ import annotations

import time

from tests.rigs.device_signing import signed_headers


def test_signed_checkin_is_accepted(register, device_call):
    creds = register()
    resp = device_call(creds, "/device/v1/checkin", {"fw_version": "1.0.0"})
    assert resp.status_code == 200, resp.text


def test_wrong_key_is_refused(register, device_call):
    creds = register()
    resp = device_call(creds, "/device/v1/checkin", {}, secret="00" * 32)
    assert resp.status_code == 401
    assert resp.json()["detail"] == "bad signature"


def test_stale_timestamp_is_refused(register, device_call):
    creds = register()
    resp = device_call(creds, "/device/v1/checkin", {}, ts=int(time.time()) - 3600)
    assert resp.status_code == 401
    assert "stale timestamp" in resp.json()["detail"]


def test_future_timestamp_is_refused(register, device_call):
    creds = register()
    resp = device_call(creds, "/device/v1/checkin", {}, ts=int(time.time()) + 3600)
    assert resp.status_code == 401
    assert "stale timestamp" in resp.json()["detail"]


def test_replayed_nonce_is_refused(register, device_call):
    creds = register()
    first = device_call(creds, "/device/v1/checkin", {}, nonce="n" * 20)
    assert first.status_code == 200
    replay = device_call(creds, "/device/v1/checkin", {}, nonce="n" * 20)
    assert replay.status_code == 401
    assert replay.json()["detail"] == "replayed nonce"


def test_tampered_body_is_refused(register, device_call):
    creds = register()
    resp = device_call(creds, "/device/v1/checkin", {"fw_version": "1.0.0"},
                       body=b'{"fw_version": "6.6.6"}')
    assert resp.status_code == 401
    assert resp.json()["detail"] == "bad signature"


def test_node_a_cannot_post_as_node_b(register, device_call, client, tokens):
    a, b = register(), register()
    resp = device_call(a, "/device/v1/checkin", {"fw_version": "evil"}, as_device=b["device_id"])
    assert resp.status_code == 401
    shown = client.get(f"/api/v1/devices/{b['device_id']}", headers=tokens["reader"]).json()
    assert shown["fw_version"] == ""


def test_unknown_device_is_refused(register, device_call):
    creds = register()
    resp = device_call(creds, "/device/v1/checkin", {}, as_device="ll-000000000000")
    assert resp.status_code == 401
    assert resp.json()["detail"] == "unknown device"


def test_missing_headers_are_named(client):
    resp = client.post("/device/v1/checkin", json={})
    assert resp.status_code == 401
    assert "X-Signature" in resp.json()["detail"]


def test_decommissioned_node_is_refused(register, device_call, client, tokens):
    creds = register()
    resp = client.post(f"/api/v1/devices/{creds['device_id']}/decommission",
                       headers=tokens["operator"])
    assert resp.status_code == 200 and resp.json()["status"] == "decommissioned"
    resp = device_call(creds, "/device/v1/checkin", {})
    assert resp.status_code == 403
    assert "decommissioned" in resp.json()["detail"]


def test_a_retired_key_is_refused_at_once(register, device_call, client, tokens):
    creds = register()
    resp = client.post(f"/api/v1/devices/{creds['device_id']}/retire-key",
                       headers=tokens["technician"])
    assert resp.status_code == 200
    new = resp.json()
    assert new["key_version"] == 2 and new["secret"] != creds["secret"]
    assert device_call(creds, "/device/v1/checkin", {}).status_code == 401
    assert device_call(new, "/device/v1/checkin", {}).status_code == 200


def test_device_endpoint_refuses_an_operator_token(client, tokens):
    resp = client.post("/device/v1/checkin", json={}, headers=tokens["operator"])
    assert resp.status_code == 401
    assert "not an API token" in resp.json()["detail"]


def test_operator_endpoint_refuses_a_device_signature(register, client):
    creds = register()
    headers = signed_headers(creds["device_id"], creds["secret"], "GET", "/api/v1/devices", b"")
    resp = client.get("/api/v1/devices", headers=headers)
    assert resp.status_code == 401
    assert "not a device signature" in resp.json()["detail"]


def test_data_reader_cannot_do_operator_actions(register, client, tokens):
    creds = register()
    reader = tokens["reader"]
    assert client.post("/api/v1/devices", json={"pole_id": "X-1"},
                       headers=reader).status_code == 403
    resp = client.post(f"/api/v1/devices/{creds['device_id']}/decommission", headers=reader)
    assert resp.status_code == 403
    assert "reader token cannot" in resp.json()["detail"]
    assert client.put("/api/v1/groups/default/config", json={"config": {}},
                      headers=reader).status_code == 403


def test_technician_cannot_decommission(register, client, tokens):
    creds = register()
    resp = client.post(f"/api/v1/devices/{creds['device_id']}/decommission",
                       headers=tokens["technician"])
    assert resp.status_code == 403


def test_unknown_token_is_refused(client):
    resp = client.get("/api/v1/devices", headers={"Authorization": "Bearer nope"})
    assert resp.status_code == 401
