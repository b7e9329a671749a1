"""Key statements on the server: the chain by serial, forged or replayed ones refused, their effect
on the trusted keys and rollouts, and how many nodes still trust a revoked key."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select, update

from fleet.models import KeyStatement, Rollout, SigningKey
from ota.keys import (
    generate_private_key,
    key_id,
    make_revocation,
    make_rotation,
    raw_public_key,
)
from tests.rigs.device_signing import reply_signed_by, signed_headers

STATEMENTS = "/api/v1/keys/statements"
BASE = {"fw_version": "1.0.0", "uptime_s": 60, "config_version": 0}


@pytest.fixture
def publish(client, tokens):
    """POST a statement envelope (the bytes `release rotate/revoke` writes) as the operator."""

    def send(envelope: bytes | str, role: str = "operator"):
        return client.post(STATEMENTS, content=envelope,
                           headers=dict(tokens[role], **{"Content-Type": "application/json"}))

    return send


def keys_by_id(client, tokens) -> dict[str, dict]:
    return {k["key_id"]: k for k in client.get("/api/v1/keys", headers=tokens["reader"]).json()}


def trust(client, tokens, key) -> str:
    resp = client.post("/api/v1/keys", json={"public_key": raw_public_key(key).hex()},
                       headers=tokens["operator"])
    assert resp.status_code == 201, resp.text
    return resp.json()["key_id"]


def test_rotation_is_stored_and_moves_the_servers_trust(trusted, release_key, publish, client,
                                                       tokens, make_bundle, upload):
    new = generate_private_key()
    resp = publish(make_rotation(release_key, raw_public_key(new), serial=1))
    assert resp.status_code == 201, resp.text
    stored = resp.json()
    assert stored["serial"] == 1 and stored["kind"] == "rotation"
    assert stored["key_id"] == trusted
    assert stored["summary"] == f"rotation {trusted} -> {key_id(new)} (old key retired)"
    keys = keys_by_id(client, tokens)
    assert keys[key_id(new)]["introduced_by_serial"] == 1
    assert keys[key_id(new)]["name"] == f"rotated from {trusted}"
    assert keys[trusted]["revoked_at"] is not None and keys[trusted]["revoked_by_serial"] == 1
    assert upload(make_bundle("1.1.0", 11, key=new)).status_code == 201
    refused = upload(make_bundle("1.2.0", 12))
    assert refused.status_code == 422 and "revoked" in refused.json()["detail"]
    assert "sign the release with a key that is not revoked" in refused.json()["detail"]


def test_forged_statement_upload_is_refused(trusted, release_key, publish, client, tokens,
                                            session):
    new, stranger = generate_private_key(), generate_private_key()
    by_stranger = publish(make_rotation(stranger, raw_public_key(new), serial=1))
    assert by_stranger.status_code == 422
    assert by_stranger.json()["detail"].startswith("statement refused (unknown_key)")
    genuine = make_rotation(release_key, raw_public_key(new), serial=1)
    swapped = genuine.replace(raw_public_key(new).hex().encode(),
                              raw_public_key(stranger).hex().encode())
    tampered = publish(swapped)
    assert tampered.status_code == 422
    assert tampered.json()["detail"].startswith("statement refused (bad_signature)")
    outer = json.loads(genuine)
    outer["statement"] = outer["statement"].replace('"retire_old":true', '"retire_old":1')
    assert publish(json.dumps(outer)).json()["detail"].startswith(
        "statement refused (bad_signature)")
    assert session.execute(select(KeyStatement)).first() is None
    assert set(keys_by_id(client, tokens)) == {trusted}


def test_malformed_statement_upload_is_refused(trusted, publish):
    junk = publish(b'{"key_id":"zz","signature":"00","statement":"{}"}')
    assert junk.status_code == 422
    assert junk.json()["detail"].startswith("statement refused (malformed)")
    extra = publish(b'{"key_id":"a","signature":"b","statement":"c","extra":1}')
    assert extra.status_code == 422  # the envelope has exactly three fields


def test_statement_with_the_wrong_serial_says_which_serial_to_sign_with(trusted, release_key,
                                                                        publish):
    signer_new = generate_private_key()
    early = publish(make_revocation(release_key, ["0" * 16], serial=2))
    assert early.status_code == 409
    assert early.json()["detail"] == (
        "statement refused (out_of_order): the statement has serial 2; the server's key set is "
        "at serial 0: sign this statement with --serial 1")
    first = make_rotation(release_key, raw_public_key(signer_new), serial=1, retire_old=False)
    assert publish(first).status_code == 201
    again = publish(first)
    assert again.status_code == 409
    assert again.json()["detail"] == (
        "statement refused (replayed): this statement is stored already (serial 1); the "
        "server's key set is at serial 1: sign a new statement with --serial 2")
    older = publish(make_revocation(release_key, ["0" * 16], serial=1))
    assert older.status_code == 409
    assert older.json()["detail"] == (
        "statement refused (replayed): the statement has serial 1; the server's key set is "
        "at serial 1: sign this statement with --serial 2")


def test_replayed_rotation_is_refused(trusted, release_key, publish, client, tokens):
    new = generate_private_key()
    assert publish(make_rotation(release_key, raw_public_key(new), serial=1,
                                 retire_old=False)).status_code == 201
    resent = publish(make_rotation(release_key, raw_public_key(new), serial=2,
                                   retire_old=False))
    assert resent.status_code == 409
    assert f"key {key_id(new)} is known already" in resent.json()["detail"]
    assert len(client.get(STATEMENTS, headers=tokens["reader"]).json()) == 1


def test_rotation_to_a_key_trusted_by_hand_is_refused_with_advice(trusted, release_key,
                                                                  publish, client, tokens):
    new = generate_private_key()
    trust(client, tokens, new)
    resp = publish(make_rotation(release_key, raw_public_key(new), serial=1))
    assert resp.status_code == 409
    assert "do not `release trust` the new key by hand" in resp.json()["detail"]


def test_revocation_that_leaves_no_key_is_refused(trusted, release_key, publish, client,
                                                  tokens):
    resp = publish(make_revocation(release_key, [trusted], serial=1))
    assert resp.status_code == 422
    assert resp.json()["detail"].startswith("statement refused (no_key_left)")
    assert "rotate to a new key first" in resp.json()["detail"]
    assert keys_by_id(client, tokens)[trusted]["revoked_at"] is None


def test_statement_signed_by_a_key_revoked_on_the_server_is_refused(trusted, release_key,
                                                                    publish, client, tokens):
    other = generate_private_key()
    trust(client, tokens, other)
    client.post(f"/api/v1/keys/{trusted}/revoke", headers=tokens["operator"])
    resp = publish(make_revocation(release_key, [key_id(other)], serial=1))
    assert resp.status_code == 422
    assert resp.json()["detail"].startswith("statement refused (revoked_key)")
    assert "(revoked on the server)" in resp.json()["detail"]


def test_revoking_a_key_id_the_server_never_saw_keeps_it_out(trusted, release_key, publish,
                                                             client, tokens):
    unseen = generate_private_key()
    resp = publish(make_revocation(release_key, [key_id(unseen)], serial=1))
    assert resp.status_code == 201, resp.text
    row = keys_by_id(client, tokens)[key_id(unseen)]
    assert row["public_key"] == "" and row["revoked_by_serial"] == 1
    again = client.post("/api/v1/keys", json={"public_key": raw_public_key(unseen).hex()},
                        headers=tokens["operator"])
    assert again.status_code == 409 and "revoked" in again.json()["detail"]
    rotated_in = publish(make_rotation(release_key, raw_public_key(unseen), serial=2))
    assert rotated_in.status_code == 409
    assert "statement refused (replayed)" in rotated_in.json()["detail"]


def test_pretty_printed_envelope_is_stored_canonical_and_listed_in_order(trusted, release_key,
                                                                         publish, client,
                                                                         tokens):
    b, c = generate_private_key(), generate_private_key()
    first = make_rotation(release_key, raw_public_key(b), serial=1, retire_old=False)
    assert publish(json.dumps(json.loads(first), indent=2)).status_code == 201
    second = make_revocation(b, [key_id(c)], serial=2)
    assert publish(second).status_code == 201
    chain = client.get(STATEMENTS, headers=tokens["reader"]).json()
    assert [s["serial"] for s in chain] == [1, 2]
    assert [s["envelope"] for s in chain] == [first.decode(), second.decode()]
    assert chain[1]["key_id"] == key_id(b) and chain[1]["summary"] == f"revokes {key_id(c)}"
    assert chain[0]["created_by"] == "test-operator"


def test_only_an_operator_publishes_statements(trusted, release_key, publish):
    envelope = make_revocation(release_key, ["0" * 16], serial=1)
    assert publish(envelope, role="reader").status_code == 403
    assert publish(envelope, role="technician").status_code == 403


# -- revoked keys stop releases -------------------------------------------------------------


@pytest.fixture
def two_keys(client, tokens, trusted, release_key):
    """The test's key and a second base key, both trusted."""
    other = generate_private_key()
    trust(client, tokens, other)
    return release_key, other


@pytest.fixture
def rolling(two_keys, register, device_call, make_bundle, upload, client, tokens):
    """Four nodes on 1.0.0 and an active rollout of 1.1.0 signed by the test's key."""
    nodes = [register() for _ in range(4)]
    for n in nodes:
        assert device_call(n, "/device/v1/checkin", BASE).status_code == 200
    release = upload(make_bundle("1.1.0", 11))
    assert release.status_code == 201, release.text
    resp = client.post("/api/v1/rollouts", json={
        "release_id": release.json()["id"], "waves": [100], "success_threshold_pct": None},
        headers=tokens["operator"])
    assert resp.status_code == 201, resp.text
    return nodes, resp.json()


def offers(device_call, nodes, **fields) -> list:
    return [device_call(n, "/device/v1/checkin", dict(BASE, **fields)).json()["update"]
            for n in nodes]


def test_revocation_pauses_rollout_of_its_releases(rolling, two_keys, publish, client, tokens,
                                                   device_call):
    nodes, rollout = rolling
    signer, other = two_keys
    assert all(offers(device_call, nodes))
    assert publish(make_revocation(other, [key_id(signer)], serial=1)).status_code == 201
    shown = client.get(f"/api/v1/rollouts/{rollout['id']}", headers=tokens["reader"]).json()
    assert shown["state"] == "paused"
    assert shown["state_reason"] == f"release signed by revoked key {key_id(signer)}"
    resumed = client.post(f"/api/v1/rollouts/{rollout['id']}/resume",
                          headers=tokens["operator"])
    assert resumed.status_code == 409
    assert f"release signed by revoked key {key_id(signer)}" in resumed.json()["detail"]
    assert offers(device_call, nodes) == [None] * 4


def test_revoking_on_the_server_pauses_rollout_too(rolling, two_keys, client, tokens):
    _, rollout = rolling
    signer, _ = two_keys
    client.post(f"/api/v1/keys/{key_id(signer)}/revoke", headers=tokens["operator"])
    shown = client.get(f"/api/v1/rollouts/{rollout['id']}", headers=tokens["reader"]).json()
    assert (shown["state"], shown["state_reason"]) == (
        "paused", f"release signed by revoked key {key_id(signer)}")


def test_release_signed_by_revoked_key_is_never_offered(rolling, two_keys, publish, client,
                                                        tokens, device_call, session):
    nodes, rollout = rolling
    signer, other = two_keys
    assert publish(make_revocation(other, [key_id(signer)], serial=1)).status_code == 201
    # something sets the rollout active again behind the API's back
    session.execute(update(Rollout).where(Rollout.id == rollout["id"]).values(state="active"))
    session.commit()
    assert offers(device_call, nodes, keyset=1) == [None] * 4
    again = client.post("/api/v1/rollouts", json={"release_id": rollout["release_id"]},
                        headers=tokens["operator"])
    assert again.status_code == 409  # still active; and a new one would be refused too
    session.execute(update(Rollout).where(Rollout.id == rollout["id"]).values(state="aborted"))
    session.commit()
    fresh = client.post("/api/v1/rollouts", json={"release_id": rollout["release_id"]},
                        headers=tokens["operator"])
    assert fresh.status_code == 409
    assert f"release signed by revoked key {key_id(signer)}" in fresh.json()["detail"]


# -- who still trusts a revoked key ---------------------------------------------------------


def test_nodes_still_trusting_a_revoked_key_are_counted_and_listed(two_keys, publish, register,
                                                                   device_call, client, tokens):
    signer, other = two_keys
    behind, current, silent = register(), register(), register()
    gone = register()
    client.post(f"/api/v1/devices/{gone['device_id']}/decommission", headers=tokens["operator"])
    assert publish(make_revocation(other, [key_id(signer)], serial=1)).status_code == 201
    device_call(behind, "/device/v1/checkin", dict(BASE, keyset=0))
    device_call(current, "/device/v1/checkin", dict(BASE, keyset=1))
    device_call(silent, "/device/v1/checkin", BASE)  # older firmware: no keyset
    key = keys_by_id(client, tokens)[key_id(signer)]
    assert key["nodes_trusting"] == 2
    assert "revoked by statement 1" in key["note"]
    assert keys_by_id(client, tokens)[key_id(other)]["nodes_trusting"] is None
    listed = client.get(f"/api/v1/keys/{key_id(signer)}/nodes", headers=tokens["reader"]).json()
    assert [(n["device_id"], n["keyset"]) for n in listed] == [
        (silent["device_id"], None), (behind["device_id"], 0)]
    assert listed[1]["pole_id"] == behind["pole_id"] and listed[1]["last_seen"]
    chain = client.get(STATEMENTS, headers=tokens["reader"]).json()
    assert chain[0]["nodes_behind"] == 2


def test_a_key_revoked_on_the_server_only_is_trusted_by_every_node(two_keys, register, client,
                                                                   tokens):
    signer, other = two_keys
    register(), register()
    resp = client.post(f"/api/v1/keys/{key_id(signer)}/revoke", headers=tokens["operator"])
    assert resp.json()["nodes_trusting"] == 2
    key = keys_by_id(client, tokens)[key_id(signer)]
    assert key["nodes_trusting"] == 2 and key["revoked_by_serial"] is None
    assert key["note"].startswith("revoked on the server only: every node still trusts it")
    assert len(client.get(f"/api/v1/keys/{key_id(signer)}/nodes",
                          headers=tokens["reader"]).json()) == 2
    unrevoked = client.get(f"/api/v1/keys/{key_id(other)}/nodes", headers=tokens["reader"])
    assert unrevoked.status_code == 409
    assert client.get(f"/api/v1/keys/{'0' * 16}/nodes",
                      headers=tokens["reader"]).status_code == 404


def test_a_later_statement_revoking_a_server_revoked_key_reaches_the_nodes(two_keys, publish,
                                                                           client, tokens,
                                                                           session):
    signer, other = two_keys
    client.post(f"/api/v1/keys/{key_id(signer)}/revoke", headers=tokens["operator"])
    revoked_at = keys_by_id(client, tokens)[key_id(signer)]["revoked_at"]
    assert publish(make_revocation(other, [key_id(signer)], serial=1)).status_code == 201
    key = keys_by_id(client, tokens)[key_id(signer)]
    assert key["revoked_by_serial"] == 1 and key["revoked_at"] == revoked_at
    row = session.execute(select(SigningKey).where(SigningKey.key_id == key_id(signer))
                          ).scalar_one()
    assert row.revoked_by_serial == 1


def test_two_statements_racing_for_one_serial_store_only_one(trusted, release_key, publish,
                                                             client, tokens, monkeypatch):
    import fleet.key_statements
    from ota.keys import KeyRing

    first, second = generate_private_key(), generate_private_key()
    assert publish(make_rotation(release_key, raw_public_key(first), serial=1,
                                 retire_old=False)).status_code == 201
    # the second request read the key set before the first one committed
    stale = KeyRing(serial=0)
    stale.add(raw_public_key(release_key))
    monkeypatch.setattr(fleet.key_statements, "key_ring", lambda session: stale)
    resp = publish(make_rotation(release_key, raw_public_key(second), serial=1,
                                 retire_old=False))
    assert resp.status_code == 409
    assert resp.json()["detail"].endswith(
        "the server's key set is at serial 1: sign this statement with --serial 2")
    assert key_id(second) not in keys_by_id(client, tokens)
    assert len(client.get(STATEMENTS, headers=tokens["reader"]).json()) == 1


def test_a_revoked_keys_release_is_not_served_even_by_its_url(rolling, two_keys, publish,
                                                               client, tokens):
    """Someone who kept an old offer's URL (or guesses one) asks for the bundle after its
    key's revocation: the server refuses it, signed as any reply to the node."""
    nodes, rollout = rolling
    signer, other = two_keys
    url = f"/device/v1/releases/{rollout['release_id']}/bundle"
    creds = nodes[0]

    def get():
        headers = signed_headers(creds["device_id"], creds["secret"], "GET", url, b"")
        return client.get(url, headers=headers), headers["X-Nonce"]

    assert get()[0].status_code == 200
    assert publish(make_revocation(other, [key_id(signer)], serial=1)).status_code == 201
    refused, nonce = get()
    assert refused.status_code == 410
    assert f"release signed by revoked key {key_id(signer)}" in refused.json()["detail"]
    assert reply_signed_by(refused, bytes.fromhex(creds["secret"]), nonce)
