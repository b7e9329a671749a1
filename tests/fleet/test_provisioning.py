"""Registering nodes singly and in batches, enrollment codes, and secrets at rest."""

from __future__ import annotations

from sqlalchemy import select

from fleet.models import Device


def test_register_one_returns_identity_and_lists_it(register, client, tokens):
    creds = register(pole_id="HB-0001", tags=["led-v2"], group="harbour-east")
    assert creds["device_id"].startswith("ll-") and len(bytes.fromhex(creds["secret"])) == 32
    shown = client.get(f"/api/v1/devices/{creds['device_id']}", headers=tokens["reader"]).json()
    assert shown["pole_id"] == "HB-0001" and shown["group"] == "harbour-east"
    assert shown["tags"] == ["led-v2"] and shown["online"] is False
    assert "secret" not in shown


def test_secret_is_encrypted_at_rest(register, session):
    creds = register()
    row = session.execute(select(Device).where(Device.uid == creds["device_id"])).scalar_one()
    assert bytes.fromhex(creds["secret"]) not in row.secret_enc
    assert len(row.secret_enc) == 12 + 32 + 16  # nonce, ciphertext, tag


def test_batch_is_all_or_nothing(register, client, tokens):
    register(pole_id="DUP-1")
    body = {"devices": [{"pole_id": "NEW-1"}, {"pole_id": "DUP-1"}]}
    resp = client.post("/api/v1/devices/batch", json=body, headers=tokens["operator"])
    assert resp.status_code == 409
    assert "DUP-1" in resp.json()["detail"]
    listed = client.get("/api/v1/devices", headers=tokens["reader"]).json()
    assert [d["pole_id"] for d in listed] == ["DUP-1"]


def test_batch_with_enrollment_codes_and_redeem(client, tokens, device_call):
    body = {"devices": [{"pole_id": f"F-{i}", "district": "north"} for i in range(3)],
            "enrollment": True}
    resp = client.post("/api/v1/devices/batch", json=body, headers=tokens["technician"])
    assert resp.status_code == 201
    issued = resp.json()
    assert len({d["enrollment_code"] for d in issued}) == 3
    first = issued[0]
    redeemed = client.post("/device/v1/enroll", json={"code": first["enrollment_code"]})
    assert redeemed.status_code == 200
    creds = redeemed.json()
    assert creds["device_id"] == first["device_id"] and creds["key_version"] == 2
    assert device_call(creds, "/device/v1/checkin", {}).status_code == 200
    again = client.post("/device/v1/enroll", json={"code": first["enrollment_code"]})
    assert again.status_code == 409
    assert client.post("/device/v1/enroll", json={"code": "AAAA-BBBB-CCCC-DDDD"}).status_code == 404


def test_bad_registration_gets_a_reason(client, tokens):
    resp = client.post("/api/v1/devices", json={"pole_id": "P 1", "lat": 123},
                       headers=tokens["operator"])
    assert resp.status_code == 422
    fields = {tuple(e["loc"]) for e in resp.json()["detail"]}
    assert ("body", "lat") in fields and ("body", "pole_id") in fields


def test_filters_list_by_group_district_tag_and_status(register, client, tokens):
    register(group="a", district="north", tags=["x"])
    b = register(group="b", district="south")
    client.post(f"/api/v1/devices/{b['device_id']}/decommission", headers=tokens["operator"])
    h = tokens["reader"]
    assert len(client.get("/api/v1/devices?group=a", headers=h).json()) == 1
    assert len(client.get("/api/v1/devices?district=south", headers=h).json()) == 1
    assert len(client.get("/api/v1/devices?tag=x", headers=h).json()) == 1
    assert len(client.get("/api/v1/devices?status=decommissioned", headers=h).json()) == 1
    assert client.get("/api/v1/devices/ll-nothere", headers=h).status_code == 404
