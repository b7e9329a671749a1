"""Replies a node can trust: every device reply signed for its request, keys rotated over the
air, enrollment that neither leaks nor strands. Each test is an attack or a failure a node
meets on a real network."""

from __future__ import annotations

import json
import time

from fleet.core.crypto import rotation_pad, xor32
from tests.rigs.device_signing import reply_signed_by, signed_headers

REPORT = {"fw_version": "1.0.0"}


def _call(client, creds, path, payload, *, secret=None, ts=None):
    body = json.dumps(payload).encode()
    headers = signed_headers(creds["device_id"], secret or creds["secret"], "POST", path, body,
                             ts=ts)
    return client.post(path, content=body, headers=headers), headers["X-Nonce"]


def test_a_checkin_reply_is_signed_for_its_request_and_no_other(register, client):
    creds = register()
    key = bytes.fromhex(creds["secret"])
    resp, nonce = _call(client, creds, "/device/v1/checkin", REPORT)
    assert resp.status_code == 200
    assert reply_signed_by(resp, key, nonce)
    assert not reply_signed_by(resp, key, nonce[::-1]), "a reply replayed to another request"
    resp.headers["x-server-time"] = str(int(resp.headers["x-server-time"]) + 3600)
    assert not reply_signed_by(resp, key, nonce), "a reply whose server time was moved"


def test_a_telemetry_refusal_is_signed_so_a_forged_one_cannot_make_a_node_drop_readings(
        register, client):
    creds = register()
    resp, nonce = _call(client, creds, "/device/v1/telemetry",
                        {"readings": [{"seq": 1, "ts": 5}]})
    assert resp.status_code == 422
    assert reply_signed_by(resp, bytes.fromhex(creds["secret"]), nonce)


def test_a_reply_to_an_unproven_request_is_unsigned(register, client):
    creds = register()
    resp, nonce = _call(client, creds, "/device/v1/checkin", REPORT, secret="00" * 32)
    assert resp.status_code == 401
    assert "x-reply-signature" not in resp.headers


def test_server_time_reaches_a_drifted_node_only_in_a_signed_reply(register, client):
    creds = register()
    resp, nonce = _call(client, creds, "/device/v1/checkin", REPORT, ts=int(time.time()) - 7200)
    assert resp.status_code == 401 and "stale timestamp" in resp.json()["detail"]
    assert abs(int(resp.headers["x-server-time"]) - time.time()) < 5
    assert reply_signed_by(resp, bytes.fromhex(creds["secret"]), nonce)
    # a stranger's stale request learns the time too, but from an unsigned reply
    forged, _ = _call(client, creds, "/device/v1/checkin", REPORT, secret="00" * 32,
                      ts=int(time.time()) - 7200)
    assert forged.status_code == 401 and "x-reply-signature" not in forged.headers


def test_a_key_rotates_over_the_air_and_the_old_key_stops_at_the_proof(register, client,
                                                                      tokens):
    creds = register()
    uid, old = creds["device_id"], bytes.fromhex(creds["secret"])
    started = client.post(f"/api/v1/devices/{uid}/rotate-key", headers=tokens["technician"])
    assert started.status_code == 202 and started.json()["next_key_version"] == 2
    again = client.post(f"/api/v1/devices/{uid}/rotate-key", headers=tokens["technician"])
    assert again.status_code == 409 and "retire" in again.json()["detail"]
    resp, nonce = _call(client, creds, "/device/v1/checkin", REPORT)
    assert resp.status_code == 200 and reply_signed_by(resp, old, nonce)
    delivered = resp.json()["next_key"]
    assert delivered["version"] == 2
    new = xor32(bytes.fromhex(delivered["key"]), rotation_pad(old, uid, 2))
    # the reply was lost: the node checks in with the old key, and is sent the same key again
    resp, _ = _call(client, creds, "/device/v1/checkin", REPORT)
    assert resp.json()["next_key"] == delivered
    # the proof: the first request signed with the new key, answered under the new key
    newer = dict(creds, secret=new.hex())
    resp, nonce = _call(client, newer, "/device/v1/checkin", REPORT)
    assert resp.status_code == 200 and reply_signed_by(resp, new, nonce)
    assert resp.json()["next_key"] is None
    assert _call(client, creds, "/device/v1/checkin", REPORT)[0].status_code == 401
    shown = client.get(f"/api/v1/devices/{uid}", headers=tokens["reader"]).json()
    assert shown["key_version"] == 2


def test_a_retired_key_cuts_off_a_pending_rotation_too(register, client, tokens):
    creds = register()
    uid = creds["device_id"]
    client.post(f"/api/v1/devices/{uid}/rotate-key", headers=tokens["technician"])
    resp, _ = _call(client, creds, "/device/v1/checkin", REPORT)
    nxt = xor32(bytes.fromhex(resp.json()["next_key"]["key"]),
                rotation_pad(bytes.fromhex(creds["secret"]), uid, 2))
    retired = client.post(f"/api/v1/devices/{uid}/retire-key", headers=tokens["technician"])
    assert retired.status_code == 200
    for secret in (creds["secret"], nxt.hex()):
        assert _call(client, creds, "/device/v1/checkin", REPORT,
                     secret=secret)[0].status_code == 401
    assert _call(client, retired.json(), "/device/v1/checkin", REPORT)[0].status_code == 200


def _codes(client, tokens, n=1):
    body = {"devices": [{"pole_id": f"E-{time.monotonic_ns()}-{i}"} for i in range(n)],
            "enrollment": True}
    resp = client.post("/api/v1/devices/batch", json=body, headers=tokens["technician"])
    assert resp.status_code == 201
    return resp.json()


def _enroll(client, code, nonce="enrollnonce-0001"):
    return client.post("/device/v1/enroll", json={"code": code}, headers={"X-Nonce": nonce})


def test_an_enrollment_reply_is_signed_with_the_code(client, tokens):
    [issued] = _codes(client, tokens)
    resp = _enroll(client, issued["enrollment_code"])
    assert resp.status_code == 200
    assert reply_signed_by(resp, issued["enrollment_code"].encode(), "enrollnonce-0001")
    assert not reply_signed_by(resp, b"ANOTHER-CODE", "enrollnonce-0001")


def test_a_lost_enrollment_reply_does_not_strand_the_node(client, tokens, device_call):
    [issued] = _codes(client, tokens)
    code = issued["enrollment_code"]
    first = _enroll(client, code).json()  # committed on the server; the reply never arrived
    second = _enroll(client, code, "enrollnonce-0002")
    assert second.status_code == 200
    fresh = second.json()
    assert fresh["secret"] != first["secret"] and fresh["key_version"] == 3
    assert device_call(first, "/device/v1/checkin", {}).status_code == 401  # retired
    assert device_call(fresh, "/device/v1/checkin", {}).status_code == 200
    # once the identity has been used, the code is spent for good
    third = _enroll(client, code, "enrollnonce-0003")
    assert third.status_code == 409 and "already used" in third.json()["detail"]


def test_guessing_enrollment_codes_is_rate_limited_per_address(client):
    statuses = [_enroll(client, f"GUES-SING-{i:04d}-AAAA").status_code for i in range(31)]
    assert statuses[:30] == [404] * 30
    assert statuses[30] == 429


def test_a_depot_enrolling_many_nodes_from_one_address_is_not_limited(client, tokens):
    issued = _codes(client, tokens, 35)
    statuses = [_enroll(client, d["enrollment_code"]).status_code for d in issued]
    assert statuses == [200] * 35


def test_hammering_one_enrollment_code_is_rate_limited(client, tokens):
    [issued] = _codes(client, tokens)
    code = issued["enrollment_code"]
    statuses = [_enroll(client, code, f"enrollnonce-{i:04d}").status_code for i in range(11)]
    assert statuses[0] == 200 and statuses[-1] == 429
    resp = _enroll(client, code, "enrollnonce-9999")
    assert resp.status_code == 429 and int(resp.headers["retry-after"]) > 0
    assert "too many enrollment attempts for this code" in resp.json()["detail"]


def test_a_node_without_a_clock_gets_the_time_in_a_reply_signed_for_its_request(register,
                                                                               client):
    creds = register()
    key = bytes.fromhex(creds["secret"])
    resp, nonce = _call(client, creds, "/device/v1/time", {}, ts=0)
    assert resp.status_code == 200
    assert abs(int(resp.headers["x-server-time"]) - time.time()) < 5
    assert abs(resp.json()["time"] - time.time()) < 5
    assert reply_signed_by(resp, key, nonce)
    # asking changes nothing: the same signed request again is answered, not a replay refusal
    headers = signed_headers(creds["device_id"], creds["secret"], "POST", "/device/v1/time",
                             b"{}", ts=0, nonce=nonce)
    again = client.post("/device/v1/time", content=b"{}", headers=headers)
    assert again.status_code == 200 and reply_signed_by(again, key, nonce)
    assert _call(client, creds, "/device/v1/checkin", REPORT)[0].status_code == 200


def test_a_stranger_asking_the_time_as_a_node_gets_no_signed_answer(register, client, tokens):
    creds = register()
    forged, _ = _call(client, creds, "/device/v1/time", {}, secret="00" * 32, ts=0)
    assert forged.status_code == 401 and "x-reply-signature" not in forged.headers
    unknown, _ = _call(client, dict(creds, device_id="lp-nobody"), "/device/v1/time", {}, ts=0)
    assert unknown.status_code == 401
    uid = creds["device_id"]
    retired = client.post(f"/api/v1/devices/{uid}/decommission", headers=tokens["operator"])
    assert retired.status_code == 200
    refused, _ = _call(client, creds, "/device/v1/time", {}, ts=0)
    assert refused.status_code == 403
