"""The one-statement check-in (PostgreSQL): it settles plain check-ins, and everything else —
commands, configuration, replays, rotated keys, decommissioned nodes — still gets the full path's
answer even when the node's secret is already cached."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from fleet.auth import SignedHeaders
from fleet.checkin_quick import QuickCheckin
from fleet.core.settings import get_settings
from fleet.schemas import CheckIn
from tests.rigs.device_signing import signed_headers

pytestmark = pytest.mark.parametrize("db_url", ["postgres"], indirect=True)  # SQLite: full path

REPORT = {"fw_version": "1.2.0", "uptime_s": 60, "config_version": 0, "lamp_level_pct": 30}


@pytest.fixture
def quick(client):
    return client.app.state.quick_checkin


def test_plain_checkins_are_settled_in_one_statement(quick, register, device_call, client,
                                                     tokens):
    creds = register()
    for uptime in (60, 120, 180):
        resp = device_call(creds, "/device/v1/checkin", dict(REPORT, uptime_s=uptime))
        assert resp.status_code == 200 and resp.json()["commands"] == []
    assert quick.settled == 3
    shown = client.get(f"/api/v1/devices/{creds['device_id']}", headers=tokens["reader"]).json()
    assert shown["online"] is True and shown["last_status"]["uptime_s"] == 180


def test_a_replayed_quick_checkin_is_refused(quick, register, client):
    creds = register()
    body = b'{"fw_version": "1.2.0", "uptime_s": 60}'
    headers = signed_headers(creds["device_id"], creds["secret"], "POST", "/device/v1/checkin",
                             body)
    assert client.post("/device/v1/checkin", content=body, headers=headers).status_code == 200
    again = client.post("/device/v1/checkin", content=body, headers=headers)
    assert again.status_code == 401 and again.json()["detail"] == "replayed nonce"
    assert quick.settled == 1


def test_commands_and_config_reach_a_node_whose_secret_is_cached(quick, register, device_call,
                                                                 client, tokens):
    creds = register(group="quay")
    device_call(creds, "/device/v1/checkin", REPORT)
    op = tokens["operator"]
    sent = client.post(f"/api/v1/devices/{creds['device_id']}/commands",
                       json={"type": "identify"}, headers=op)
    assert sent.status_code in (200, 201), sent.text
    client.put("/api/v1/groups/quay/config", json={"config": {"dimming": {"dim_level": 25}}},
               headers=op)
    reply = device_call(creds, "/device/v1/checkin", REPORT).json()
    assert [c["type"] for c in reply["commands"]] == ["identify"]
    assert reply["config"] == {"dimming": {"dim_level": 25}}
    assert quick.settled == 1  # only the first one


def test_rotation_and_decommission_apply_to_a_cached_node_at_once(quick, register, device_call,
                                                                  client, tokens):
    creds = register()
    assert device_call(creds, "/device/v1/checkin", REPORT).status_code == 200
    rotated = client.post(f"/api/v1/devices/{creds['device_id']}/retire-key",
                          headers=tokens["technician"]).json()
    assert device_call(creds, "/device/v1/checkin", REPORT).status_code == 401
    assert device_call(rotated, "/device/v1/checkin", REPORT).status_code == 200
    assert device_call(rotated, "/device/v1/checkin", REPORT).status_code == 200
    client.post(f"/api/v1/devices/{creds['device_id']}/decommission",
                headers=tokens["operator"])
    refused = device_call(rotated, "/device/v1/checkin", REPORT)
    assert refused.status_code == 403 and "decommissioned" in refused.json()["detail"]
    # the first check-in, and the second with the new key (the first one with it found the old
    # key cached, failed to verify there, and was answered by the full path)
    assert quick.settled == 2


def test_a_pending_rotation_is_delivered_rather_than_settled_quickly(quick, register,
                                                                    device_call, client, tokens):
    creds = register()
    assert device_call(creds, "/device/v1/checkin", REPORT).status_code == 200
    started = client.post(f"/api/v1/devices/{creds['device_id']}/rotate-key",
                          headers=tokens["technician"])
    assert started.status_code == 202
    reply = device_call(creds, "/device/v1/checkin", REPORT)
    assert reply.status_code == 200 and reply.json()["next_key"]["version"] == 2
    assert quick.settled == 1  # only the check-in before the rotation


def test_a_bad_signature_from_a_cached_node_is_refused(quick, register, device_call):
    creds = register()
    assert device_call(creds, "/device/v1/checkin", REPORT).status_code == 200
    forged = device_call(creds, "/device/v1/checkin", REPORT, secret="00" * 32)
    assert forged.status_code == 401 and forged.json()["detail"] == "bad signature"


def _signed(creds: dict, body: bytes) -> SignedHeaders:
    headers = signed_headers(creds["device_id"], creds["secret"], "POST", "/device/v1/checkin",
                             body)
    return SignedHeaders(uid=headers["X-Device-Id"], ts_text=headers["X-Timestamp"],
                         ts=int(headers["X-Timestamp"]), nonce=headers["X-Nonce"],
                         signature=headers["X-Signature"], received_at=time.time(), stale=False)


def _call(creds: dict, uptime_s: int) -> tuple[SignedHeaders, bytes, CheckIn]:
    body = json.dumps(dict(REPORT, uptime_s=uptime_s)).encode()
    return _signed(creds, body), body, CheckIn.model_validate_json(body)


def test_concurrent_checkins_share_statements_one_row_per_node(register, db_url, client,
                                                               tokens):
    """Check-ins arriving together are written together; two from one node never share one."""
    nodes = [register() for _ in range(6)]
    settings = get_settings()
    quick = QuickCheckin(db_url, settings.master_key_bytes(), 300, settings.clock_skew_s)

    async def together(calls):
        return await asyncio.gather(*(
            quick.attempt("POST", "/device/v1/checkin", signed, body, report)
            for signed, body, report in calls))

    async def scenario():
        try:
            first = await together([_call(creds, 500) for creds in nodes])  # secrets cached
            before = quick.statements
            # every node again, node 0 twice: all queue before the first statement is sent
            second = await together([_call(creds, 1000 + n) for n, creds in enumerate(nodes)]
                                    + [_call(nodes[0], 2000)])
            return first, second, quick.statements - before
        finally:
            await quick.close()

    first, second, statements = asyncio.run(scenario())
    assert all(reply is not None for reply in first + second)
    assert quick.settled == 13
    assert statements == 2  # six nodes in one statement; node 0's second report in the next
    shown = client.get(f"/api/v1/devices/{nodes[0]['device_id']}",
                       headers=tokens["reader"]).json()
    assert shown["last_status"]["uptime_s"] == 2000


def _publish_revocation(client, tokens, signer, serial: int) -> str:
    from ota.keys import make_revocation

    envelope = make_revocation(signer, [f"{serial:016x}"], serial=serial)
    resp = client.post("/api/v1/keys/statements", content=envelope,
                       headers=dict(tokens["operator"], **{"Content-Type": "application/json"}))
    assert resp.status_code == 201, resp.text
    return envelope.decode()


def test_quick_path_delivers_statements(quick, register, device_call, client, tokens, trusted,
                                        release_key, session):
    """A node with statements to receive is answered by the full path, which carries them."""
    from sqlalchemy import select

    from fleet.models import Device

    creds = register()
    current = dict(REPORT, keyset=0)
    assert device_call(creds, "/device/v1/checkin", current).json()["key_statements"] == []
    assert quick.settled == 1
    first = _publish_revocation(client, tokens, release_key, 1)
    second = _publish_revocation(client, tokens, release_key, 2)
    reply = device_call(creds, "/device/v1/checkin", current).json()
    assert reply["key_statements"] == [first, second]
    assert quick.settled == 1
    caught_up = device_call(creds, "/device/v1/checkin", dict(REPORT, keyset=2)).json()
    assert caught_up["key_statements"] == []
    assert quick.settled == 2
    row = session.execute(select(Device).where(Device.uid == creds["device_id"])).scalar_one()
    assert row.keyset_serial == 2 and row.keyset_error is None
    # a node that reports no key set (older firmware) is not held back by the chain
    old = register()
    assert device_call(old, "/device/v1/checkin", REPORT).json()["key_statements"] == []
    assert quick.settled == 3


def test_quick_path_leaves_a_changed_keyset_refusal_to_the_full_path(quick, register,
                                                                     device_call, session):
    from sqlalchemy import select

    from fleet.models import Device, DeviceEvent

    creds = register()
    refusal = "malformed: statement is not in canonical form"
    refused = dict(REPORT, keyset=0, keyset_error=refusal)
    for _ in range(3):
        assert device_call(creds, "/device/v1/checkin", refused).status_code == 200
    assert quick.settled == 2  # the first one recorded the change, the same refusal is plain
    assert device_call(creds, "/device/v1/checkin", dict(REPORT, keyset=0)).status_code == 200
    assert quick.settled == 2  # cleared: a change again
    assert device_call(creds, "/device/v1/checkin", dict(REPORT, keyset=0)).status_code == 200
    assert quick.settled == 3
    device = session.execute(select(Device).where(Device.uid == creds["device_id"])).scalar_one()
    assert device.keyset_serial == 0 and device.keyset_error is None
    kinds = session.execute(select(DeviceEvent.detail).where(
        DeviceEvent.device_id == device.id, DeviceEvent.kind == "keyset_error")).scalars().all()
    assert [d["error"] for d in kinds] == [refusal, ""]


def test_quick_replies_give_the_nodes_desired_interval(quick, register, device_call, client,
                                                       tokens):
    """The interval comes from the node's desired configuration (its own profile over its
    group's), not from the server's setting alone."""
    creds, other = register(group="quay"), register(group="quay")
    op = tokens["operator"]
    assert client.put("/api/v1/groups/quay/config", json={"config": {"checkin_interval_s": 600}},
                      headers=op).status_code == 200
    assert client.put(f"/api/v1/devices/{creds['device_id']}/config",
                      json={"config": {"checkin_interval_s": 900}}, headers=op).status_code == 200
    current = dict(REPORT, config_version=2)
    assert device_call(creds, "/device/v1/checkin", current).json()["next_checkin_s"] == 900
    assert device_call(other, "/device/v1/checkin", dict(REPORT, config_version=1)).json()[
        "next_checkin_s"] == 600
    assert quick.settled == 2


def test_a_standing_configuration_refusal_is_settled_quickly(quick, register, device_call,
                                                             client, tokens, session):
    """A node that keeps refusing its desired version is not sent it again, quickly; a new
    refusal is an event, which the full path records."""
    from sqlalchemy import select

    from fleet.models import Device, DeviceEvent

    creds = register(group="quay")
    assert client.put("/api/v1/groups/quay/config", json={"config": {"checkin_interval_s": 600}},
                      headers=tokens["operator"]).status_code == 200
    refusing = dict(REPORT, config_version=0,
                    config_refused={"version": 1, "reason": "checkin_interval_s: too long"})
    for n in range(3):
        reply = device_call(creds, "/device/v1/checkin", refusing).json()
        assert reply["config"] is None and reply["next_checkin_s"] == 600
        assert quick.settled == n  # the first one records the refusal (an event)
    device = session.execute(select(Device).where(Device.uid == creds["device_id"])).scalar_one()
    assert (device.config_refused_version, device.config_behind_checkins) == (1, 3)
    events = session.execute(select(DeviceEvent.detail).where(
        DeviceEvent.device_id == device.id, DeviceEvent.kind == "config_refused")).scalars()
    assert list(events) == [{"version": 1, "reason": "checkin_interval_s: too long"}]
    applied = device_call(creds, "/device/v1/checkin", dict(REPORT, config_version=1)).json()
    assert applied["config"] is None and quick.settled == 3  # cleared without an event
    session.expire_all()
    device = session.execute(select(Device).where(Device.uid == creds["device_id"])).scalar_one()
    assert (device.config_error, device.config_behind_checkins) == (None, 0)
