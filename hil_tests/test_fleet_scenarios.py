"""Fleet scenarios on the `unix` backend: emulated lampposts (real MicroPython) and a live server.

Each node is a MicroPython unix-port process booted from its A/B slot, with register-level
peripheral models in a world; the server is uvicorn on a free port with a fresh SQLite
database, or, for the scenarios parametrised with "postgres", a fresh PostgreSQL database (there
plain check-ins take the server's quick path and the rest its full path). Virtual time starts
in the past and runs faster than real time, so a night or an hour-long outage takes seconds
while every reading stays in the server's past.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hil_tests.backends import selected_boards
from ota.keys import generate_private_key, key_id, make_revocation, make_rotation, raw_public_key
from tests.rigs.device_signing import reply_headers, signed_headers
from tests.rigs.hil_rig import Rig
from tests.rigs.mitm import Exchange, MitmProxy, Reply, certificate_files, fleet_ca
from tests.rigs.netfault import FaultProxy
from tests.rigs.scratch_postgres import scratch_postgres
from tools.emulator.fleet_process import start_fleet_server
from tools.emulator.scenario import Fault, NetFault, Scenario
from tools.emulator.world import LAMP_RATED_W

pytestmark = pytest.mark.slow
DAY = 86400
CHECKIN_INTERVAL_S = 30  # virtual seconds, the rig's default for its nodes
BOTH_DATABASES = pytest.mark.parametrize("database", ["sqlite", "postgres"])


@pytest.fixture
def database() -> str:
    """The server's database: SQLite unless a scenario is parametrised with both."""
    return "sqlite"


@pytest.fixture
def rig(request: pytest.FixtureRequest, tmp_path: Path, database: str) -> Iterator[Rig]:
    """A live fleet server and a rig to provision emulated lampposts against it."""
    if "unix" not in selected_boards(request.config.getoption("--hil-board")):
        pytest.skip("the unix backend (emulated lampposts) is not selected")
    with contextlib.ExitStack() as stack:
        url = None
        if database == "postgres":
            url = stack.enter_context(scratch_postgres("lamplighter_hil"))
        # The server names the next check-in in every reply; make it the rig nodes' interval.
        server = start_fleet_server(tmp_path / "server", database_url=url, extra_env={
            "LAMPLIGHTER_CHECKIN_INTERVAL_S": str(CHECKIN_INTERVAL_S)})
        stack.callback(server.stop)
        bench = Rig(server, tmp_path / "rig")
        stack.callback(bench.stop)
        yield bench


def _readings(rig: Rig, **params: object) -> list[dict]:
    rows: list[dict] = []
    after = None
    while True:
        query = dict(params, limit=10000, **({"after": after} if after else {}))
        page = rig.api("GET", "/api/v1/telemetry/readings", params=query)
        assert isinstance(page, dict)
        rows.extend(page["readings"])
        after = page["next"]
        if not after:
            return rows


def _rollout_nodes(rig: Rig, rollout_id: int) -> dict[str, str]:
    rows = rig.api("GET", f"/api/v1/rollouts/{rollout_id}/nodes")
    assert isinstance(rows, list)
    return {r["device_id"]: r["state"] for r in rows}


def _all_online(rig: Rig, count: int) -> bool:
    devices = rig.devices()
    return len(devices) == count and all(d["online"] for d in devices.values())


def _crash_at_start(app: Path) -> None:
    main = app / "lib" / "core" / "node_main.py"
    main.write_text('raise RuntimeError("this release cannot start")\n' + main.read_text())


@BOTH_DATABASES
def test_1_new_node_checks_in_and_its_telemetry_has_units(rig, hil_record, database):
    [node] = rig.add_nodes(1)
    rig.wait_until("the node online", lambda: _all_online(rig, 1))
    catalogue = {m["name"]: m["unit"] for m in rig.api("GET", "/api/v1/telemetry/metrics")}
    wanted = {"temperature_c", "humidity_pct", "pressure_hpa", "lux", "pm25_ugm3"}
    rig.wait_until("readings of every environmental metric", lambda: wanted <= {
        r["metric"] for r in _readings(rig, device=node.device_id)})
    rows = _readings(rig, device=node.device_id)
    for row in rows:
        assert row["unit"] == catalogue[row["metric"]]
        assert row["pole_id"] == node.pole_id
    temps = [r["value"] for r in rows if r["metric"] == "temperature_c"]
    assert all(-40 <= t <= 85 for t in temps)
    hil_record("readings", len(rows))
    if database == "postgres":  # the node's plain check-ins went the quick way
        rig.stop()
        rig.server.stop()
        found = re.search(r"quick check-ins: (\d+) settled", rig.server.log_path.read_text())
        assert found and int(found.group(1)) >= 1
        hil_record("quick_checkins", int(found.group(1)))


def test_2_a_night_with_pedestrians_dims_brightens_and_saves_energy(rig, hil_record):
    # 16:00 to 06:00 of a day in the past, at 600× real time: a 14-hour evening and night.
    dusk = (int(time.time()) // DAY - 2) * DAY + 16 * 3600
    rig.speed, rig.epoch = 600.0, dusk
    [node] = rig.add_nodes(1, checkin_interval_s=900)
    world = node.launcher.world
    night_ms = 14 * 3600 * 1000
    assert node.launcher.wait_virtual(night_ms, timeout=240)
    records = world.records
    start_ms, end_ms = 2 * 3600 * 1000, 13 * 3600 * 1000  # 18:00 to 05:00: dark
    levels = [records.lamp_level_at(t) for t in range(start_ms, end_ms, 5000)]
    assert min(levels) < 50, "the lamp never dimmed on an empty street"
    assert max(levels) == 100, "the lamp never went to full for a pedestrian"
    used = records.energy_wh(start_ms, end_ms)
    always_on = LAMP_RATED_W * (end_ms - start_ms) / 3.6e6
    saved = 100 * (1 - used / always_on)
    assert saved > 30
    hil_record("energy_night_wh", round(used, 1))
    hil_record("energy_saved_pct", round(saved, 1))
    rig.wait_until("energy readings on the server", lambda: any(
        r["metric"] == "energy_wh" for r in _readings(rig, device=node.device_id)), timeout=60)


def test_3_a_dead_sensor_reaches_the_server_the_lamp_fails_lit_others_report(rig, hil_record):
    evening = (int(time.time()) // DAY - 1) * DAY + 19 * 3600  # dark, nobody about at first
    fault_s = 1800
    rig.speed, rig.epoch = 60.0, evening
    [node] = rig.add_nodes(1, scenario=lambda i: Scenario(
        start_epoch=evening, seed=i, footfall_scale=0.0, bus_stop_per_h=0.0,
        faults=[Fault("veml7700", "missing", fault_s)]))
    rig.wait_until("the light-sensor fault on the server", lambda: rig.devices()[
        node.device_id]["last_status"].get("sensor_faults", {}).get("veml7700", 0) > 0,
        timeout=180)
    world = node.launcher.world
    rig.wait_until("two virtual minutes past the fault",
                   lambda: world.now_ms > (fault_s + 120) * 1000)
    records = world.records
    assert records.lamp_level_at(fault_s * 1000 - 60_000) < 100  # dimmed before the fault
    now_ms = world.now_ms
    after = [records.lamp_level_at(t) for t in range(fault_s * 1000 + 20_000, now_ms, 5000)]
    assert after and min(after) == 100  # fail lit from then on
    rig.wait_until("other sensors still reporting after the fault", lambda: {
        "temperature_c", "pm25_ugm3"} <= {
        r["metric"] for r in _readings(rig, device=node.device_id,
                                       start=evening + fault_s + 60)}, timeout=120)
    hil_record("lamp_after_fault_pct", min(after))


def test_4_an_hour_long_outage_loses_and_duplicates_nothing(rig, hil_record):
    # a TCP proxy: TLS passes through it, and the certificate covers 127.0.0.1
    proxy = FaultProxy("127.0.0.1", int(rig.server.url.rsplit(":", 1)[1]),
                       scheme=rig.server.url.split("://", 1)[0])
    try:
        rig.speed = 120.0
        [node] = rig.add_nodes(1, checkin_interval_s=60, node_url=proxy.url)
        rig.wait_until("the node online", lambda: _all_online(rig, 1))
        world = node.launcher.world
        proxy.outage(True)
        cut_at = world.now_ms
        assert node.launcher.wait_virtual(cut_at + 3600 * 1000, timeout=120)
        refused = proxy.refused
        proxy.outage(False)
        rig.wait_until("the queue drained after the outage", lambda: (
            (s := rig.devices()[node.device_id]["last_status"]).get("queue_len") == 0
            and s.get("uptime_s", 0) * 1000 > cut_at + 3600 * 1000), timeout=180)
        seqs = sorted(r["seq"] for r in _readings(rig, device=node.device_id))
        assert refused > 0
        assert seqs == list(range(1, len(seqs) + 1)), "a gap or a duplicate in the sequence"
        assert rig.devices()[node.device_id]["last_status"]["queue_dropped"] == 0
        hil_record("readings_after_outage", len(seqs))
        hil_record("connections_refused", refused)
    finally:
        proxy.stop()


def test_5_rollout_to_ten_nodes_canary_first_then_all(rig, hil_record):
    rig.add_nodes(10)
    rig.wait_until("ten nodes online", lambda: _all_online(rig, 10), timeout=180)
    release = rig.release("0.2.0", 2)
    rollout = rig.api("POST", "/api/v1/rollouts", json={
        "release_id": release["id"], "waves": [10, 100], "success_threshold_pct": 100,
        "failure_threshold_pct": 50})
    assert [w["planned"] for w in rollout["waves"]] == [1, 9]
    rig.wait_until("every node committed", lambda: sorted(
        _rollout_nodes(rig, rollout["id"]).values()) == ["committed"] * 10, timeout=300)
    events = rig.api("GET", f"/api/v1/rollouts/{rollout['id']}/events")
    order = [(e["state"], e["device_id"]) for e in events]
    canary_commit = next(i for i, (s, _) in enumerate(order) if s == "committed")
    offered_before = [d for s, d in order[:canary_commit] if s == "offered"]
    assert len(offered_before) == 1, "only the canary is offered before it commits"
    assert rig.api("GET", f"/api/v1/rollouts/{rollout['id']}")["state"] == "completed"
    rig.wait_until("all on 0.2.0", lambda: {
        d["fw_version"] for d in rig.devices().values()} == {"0.2.0"}, timeout=120)
    hil_record("nodes_updated", 10)


@BOTH_DATABASES
def test_6_a_bad_release_rolls_back_on_the_canary_and_pauses(rig, hil_record):
    rig.add_nodes(4)
    rig.wait_until("four nodes online", lambda: _all_online(rig, 4), timeout=120)
    release = rig.release("0.3.0", 3, patch=_crash_at_start)
    rollout = rig.api("POST", "/api/v1/rollouts", json={
        "release_id": release["id"], "waves": [25, 100], "failure_threshold_pct": 50})
    rig.wait_until("the canary rolled back", lambda: list(
        _rollout_nodes(rig, rollout["id"]).values()) == ["rolled_back"], timeout=240)
    status = rig.api("GET", f"/api/v1/rollouts/{rollout['id']}")
    assert status["state"] == "paused"
    time.sleep(3)  # several more check-ins of every node
    assert len(_rollout_nodes(rig, rollout["id"])) == 1, "another node was offered the release"
    rig.wait_until("every node back on 0.1.0 and online", lambda: all(
        d["fw_version"] == "0.1.0" and d["online"] for d in rig.devices().values()))
    hil_record("rollout_state", status["state"])


def test_7_power_cuts_during_an_update_brick_nothing(rig, hil_record):
    nodes = rig.add_nodes(4, checkin_interval_s=20)
    rig.wait_until("four nodes online", lambda: _all_online(rig, 4), timeout=120)
    release = rig.release("0.4.0", 4)
    rollout = rig.api("POST", "/api/v1/rollouts", json={
        "release_id": release["id"], "waves": [100], "failure_threshold_pct": 100})
    rng = random.Random(7)
    cuts = 0
    deadline = time.monotonic() + 150
    while cuts < 50 and time.monotonic() < deadline:
        node = rng.choice(nodes)
        time.sleep(rng.uniform(0.05, 0.6))
        node.launcher.power_cut()
        cuts += 1
        time.sleep(rng.uniform(0.0, 0.3))
        node.launcher.power_restore()
    assert cuts >= 50
    final = ("committed", "rolled_back")
    rig.wait_until("every node committed or rolled back", lambda: (
        len(states := _rollout_nodes(rig, rollout["id"])) == 4
        and all(s in final for s in states.values())), timeout=300)
    rig.wait_until("every node online on a signed version", lambda: all(
        d["online"] and d["fw_version"] in ("0.1.0", "0.4.0")
        for d in rig.devices().values()), timeout=120)
    committed = sum(s == "committed" for s in _rollout_nodes(rig, rollout["id"]).values())
    hil_record("power_cuts", cuts)
    hil_record("bricked", 0)
    hil_record("committed", committed)
    httpx.get(rig.server.url + "/api/v1/healthz", verify=rig.server.ssl_context).raise_for_status()


class _OfferInjector:
    """Between a node and the server, a party that holds the node's key (a server taken over,
    or a key stolen from it) and, when armed, writes its own update offer into check-in
    replies, signed as the server would: the release key set is then the node's last defence.
    Every request and the rest of each reply pass unchanged."""

    def __init__(self, rig: Rig, tmp_path: Path) -> None:
        assert rig.server.tls is not None
        cert, key = certificate_files(tmp_path / "injector", ca=fleet_ca(rig.server.tls.directory))
        self.offer: dict | None = None
        self.bundle = b""  # the offered release's bundle, served whatever the server says
        self.injected = 0
        self.secrets: dict[str, str] = {}  # device id -> its key, as the injector holds it
        self.proxy = MitmProxy(rig.server.url, rig.server.ssl_context, cert, key,
                               tamper=self._inject)
        self.url = self.proxy.url

    def _inject(self, exchange: Exchange, reply: Reply) -> Reply | None:
        if self.offer is not None and exchange.path == self.offer["url"] and self.bundle:
            return self._serve_bundle(exchange)
        if (self.offer is None or not exchange.path.endswith("/device/v1/checkin")
                or reply.status != 200):
            return None
        doc = json.loads(reply.body)
        doc["update"] = self.offer
        body = json.dumps(doc).encode()
        secret = self.secrets[exchange.request_headers["X-Device-Id"]]
        headers = {k: v for k, v in reply.headers.items()
                   if k.lower() not in ("x-server-time", "x-reply-signature")}
        headers.update(reply_headers(secret, exchange.request_headers["X-Nonce"], 200, body))
        self.injected += 1
        return Reply(200, headers, body)

    def _serve_bundle(self, exchange: Exchange) -> Reply:
        """The bundle the server no longer serves (its key is revoked), by byte range, signed
        under the node's key as the server's download would be."""
        data = self.bundle
        first, _, last = (exchange.request_headers.get("Range") or "bytes=0-").removeprefix(
            "bytes=").partition("-")
        start, end = int(first), min(int(last or len(data) - 1), len(data) - 1)
        headers = reply_headers(self.secrets[exchange.request_headers["X-Device-Id"]],
                                exchange.request_headers["X-Nonce"], 206,
                                bundle_sha256=hashlib.sha256(data).hexdigest())
        headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
        return Reply(206, headers, data[start:end + 1])

    def stop(self) -> None:
        self.proxy.stop()


def _identity(rig: Rig, node) -> dict:
    return json.loads((rig.work / node.pole_id / "identity.json").read_text())


def test_8_a_rotated_key_reaches_a_lamppost_and_a_revoked_one_is_refused(rig, hil_record,
                                                                         tmp_path):
    """Key statements over the air: a lamppost provisioned with the rig's key alone installs a
    release signed only by a key a rotation introduced; after a revocation of that key the
    server refuses and never offers its releases, and the lamppost refuses one offered anyway."""
    injector = _OfferInjector(rig, tmp_path)
    try:
        [node] = rig.add_nodes(1, node_url=injector.url)
        injector.secrets[node.device_id] = _identity(rig, node)["secret"]
        rig.wait_until("the node online", lambda: _all_online(rig, 1))
        second = generate_private_key()
        rotation = make_rotation(rig.key, raw_public_key(second), serial=1, retire_old=False)
        rig.api("POST", "/api/v1/keys/statements", json=json.loads(rotation))

        release = rig.release("0.5.0", 5, key=second)
        assert release["key_id"] == key_id(second)
        rollout = rig.api("POST", "/api/v1/rollouts", json={
            "release_id": release["id"], "waves": [100]})
        rig.wait_until("the release signed by the new key committed", lambda: list(
            _rollout_nodes(rig, rollout["id"]).values()) == ["committed"], timeout=240)
        assert rig.devices()[node.device_id]["keyset"] == 1

        late_bundle = rig.release("0.6.0", 6, key=second, upload=False)
        assert isinstance(late_bundle, Path)
        late = httpx.post(f"{rig.server.url}/api/v1/releases", content=late_bundle.read_bytes(),
                          headers=rig.server.operator_headers, timeout=60,
                          verify=rig.server.ssl_context).json()  # signed before the revocation
        revocation = make_revocation(rig.key, [key_id(second)], serial=2)
        rig.api("POST", "/api/v1/keys/statements", json=json.loads(revocation))
        rig.wait_until("the node applied the revocation", lambda: (
            rig.devices()[node.device_id]["keyset"] == 2))
        assert rig.api("GET", f"/api/v1/keys/{key_id(second)}/nodes") == []

        # The server never offers what the revoked key signed, and no longer takes it.
        refused = httpx.post(f"{rig.server.url}/api/v1/releases",
                             content=rig.release("0.7.0", 7, key=second, upload=False)
                             .read_bytes(), headers=rig.server.operator_headers, timeout=60,
                             verify=rig.server.ssl_context)
        assert refused.status_code == 422 and "revoked" in refused.text
        offered = httpx.post(f"{rig.server.url}/api/v1/rollouts",
                             json={"release_id": late["id"], "waves": [100]},
                             headers=rig.server.operator_headers, timeout=60,
                             verify=rig.server.ssl_context)
        if offered.status_code == 201:
            late_rollout = offered.json()
            assert late_rollout["state"] == "paused" and "revoked" in late_rollout[
                "state_reason"]
            time.sleep(3 * CHECKIN_INTERVAL_S / rig.speed + 2)
            assert _rollout_nodes(rig, late_rollout["id"]) == {}
        else:
            assert offered.status_code in (409, 422) and "revoked" in offered.text

        # Offered anyway, by someone between the node and the server: refused on the node.
        # ... and its bundle, which the server itself no longer serves (410)
        injector.bundle = late_bundle.read_bytes()
        injector.offer = {"rollout_id": 9999, "release_id": late["id"], "version": "0.6.0",
                          "sequence": 6, "size": late["bundle_size"],
                          "url": f"/device/v1/releases/{late['id']}/bundle"}
        rig.wait_until("the node refused the revoked key's release", lambda: any(
            "update_refused" in line and "revoked_key" in line
            for line in node.launcher.lines), timeout=180)
        injector.offer = None
        rig.wait_until("the node still on 0.5.0 and online", lambda: (
            (d := rig.devices()[node.device_id])["online"] and d["fw_version"] == "0.5.0"))
        hil_record("offers_injected", injector.injected)
        hil_record("keyset", 2)
    finally:
        injector.stop()


def test_9_a_device_key_rotates_over_the_air_through_a_power_cut(rig, hil_record, tmp_path):
    """An operator rotates a lamppost's key. The next key reaches the node in a signed check-in
    reply; the power goes out before the node's next request could prove it (the path is cut
    the moment the key is delivered). The server still takes both keys; back on, the node
    signs with the new one, the server retires the old, and the node keeps checking in."""
    assert rig.server.tls is not None
    cert, key = certificate_files(tmp_path / "gate", ca=fleet_ca(rig.server.tls.directory))
    delivered: list[dict] = []
    proxy: MitmProxy

    def cut_after_delivery(exchange: Exchange, reply: Reply) -> Reply | None:
        if exchange.path.endswith("/checkin") and reply.status == 200:
            nxt = json.loads(reply.body).get("next_key")
            if nxt:
                delivered.append(nxt)
                proxy.blocked = True  # nothing more reaches the server
        return None

    proxy = MitmProxy(rig.server.url, rig.server.ssl_context, cert, key,
                      tamper=cut_after_delivery)
    try:
        [node] = rig.add_nodes(1, node_url=proxy.url)
        rig.wait_until("the node online", lambda: _all_online(rig, 1))
        old = _identity(rig, node)
        started = rig.api("POST", f"/api/v1/devices/{node.device_id}/rotate-key")
        assert started["next_key_version"] == 2
        rig.wait_until("the next key delivered", lambda: bool(delivered))
        rig.wait_until("the node stored the next key",
                       lambda: _identity(rig, node).get("key_version") == 2, timeout=30)
        node.launcher.power_cut()
        new = _identity(rig, node)
        assert new["secret"] != old["secret"] and new["device_id"] == old["device_id"]
        # not proved yet: the server still knows the node by its old key, and takes it
        assert rig.devices()[node.device_id]["key_version"] == 1
        assert _signed_checkin(rig, node.device_id, old["secret"]).status_code == 200
        seen = rig.devices()[node.device_id]["last_seen"]
        proxy.blocked = False
        node.launcher.power_restore()
        rig.wait_until("the node proved the new key", lambda: (
            (d := rig.devices()[node.device_id])["key_version"] == 2 and d["last_seen"] != seen))
        assert _signed_checkin(rig, node.device_id, old["secret"]).status_code == 401
        before = rig.devices()[node.device_id]["last_seen"]
        rig.wait_until("the node checking in on its new key", lambda: (
            rig.devices()[node.device_id]["last_seen"] != before))
        assert _identity(rig, node)["key_version"] == 2
        hil_record("key_version", 2)
        hil_record("deliveries_before_the_cut", len(delivered))
    finally:
        proxy.stop()


def _signed_checkin(rig: Rig, device_id: str, secret: str) -> httpx.Response:
    """A check-in signed with `secret`, sent from the host as the node would."""
    body = json.dumps({"fw_version": "0.1.0"}).encode()
    headers = signed_headers(device_id, secret, "POST", "/device/v1/checkin", body)
    return httpx.post(f"{rig.server.url}/device/v1/checkin", content=body, headers=headers,
                      verify=rig.server.ssl_context, timeout=30)


def test_10_a_cold_rtc_without_ntp_and_a_power_cut_before_the_clock_is_set(rig, hil_record):
    """A lamppost whose street has no NTP server, whose Wi-Fi refuses it for its first 12 s,
    and whose power fails 5 s after it came on: both boots start its RTC at 2000-01-01. Once on
    the network it asks the fleet server's time (in a reply signed for it), and every reading
    of both boots reaches the server, in sequence, with a true time — the second boot's
    exactly, the first's placed before the second began."""
    rig.speed = 1.0  # virtual time is real time, so the server's clock is the world's truth
    start = int(time.time())
    [node] = rig.add_nodes(1, checkin_interval_s=30, scenario=lambda i: Scenario(
        start_epoch=start, seed=i, ntp_reachable=False,
        net_faults=[NetFault("association_fails", 0, 12)]))
    launcher = node.launcher
    time.sleep(5)
    launcher.power_cut()
    time.sleep(1.5)
    launcher.power_restore()
    restored = time.time()  # the second boot, on the server's clock
    rig.wait_until("the node online", lambda: _all_online(rig, 1), timeout=120)
    rig.wait_until("the clock set", lambda: launcher.events("clock_estimated"), timeout=60)
    [(_ms, estimated)] = launcher.events("clock_estimated")
    end = int(estimated["end"])  # the first boot's readings are seq 1 .. end - 1
    # the queue never empties for long (readings keep coming): wait for both boots' readings
    rig.wait_until("both boots' readings delivered", lambda: {
        r["seq"] for r in _readings(rig, device=node.device_id)} >= set(range(1, end + 3)),
        timeout=120)
    readings = _readings(rig, device=node.device_id)
    seqs = sorted(r["seq"] for r in readings)
    assert seqs == list(range(1, len(seqs) + 1)), "a gap or a duplicate in the sequence"
    boots = launcher.world.records.boots
    assert len(boots) == 2 and [cause for _ms, cause in boots] == ["power_on", "power_on"]
    now = time.time()
    stamps = [_epoch(r["ts"]) for r in readings]
    assert all(start - 15 <= ts <= now + 5 for ts in stamps), (start, now, sorted(stamps)[:5])
    set_lines = launcher.events("clock_set")
    assert [f["source"] for _ms, f in set_lines] == ["fleet"]
    first_boot = [_epoch(r["ts"]) for r in readings if r["seq"] < end]
    second_boot = [_epoch(r["ts"]) for r in readings if r["seq"] >= end]
    assert first_boot and second_boot
    # the first boot's readings, taken before its clock was ever set: placed before the
    # second boot began (how long the post was off is unknown to it); stamps are whole seconds
    assert all(start - 1 <= ts <= restored + 1 for ts in first_boot), (
        start, restored, first_boot)
    # the second boot's, stamped in 2000 until the fleet server's time came: exact
    assert all(ts >= restored - 2 for ts in second_boot), (restored, sorted(second_boot)[:5])
    hil_record("readings", len(readings))
    hil_record("first_boot_readings", len(first_boot))


def _epoch(ts: object) -> float:
    """A reading's ts from the API (ISO 8601 or epoch seconds) as epoch seconds."""
    if isinstance(ts, int | float):
        return float(ts)
    from datetime import datetime

    return datetime.fromisoformat(str(ts).replace("Z", "+00:00")).timestamp()



def _wait_line(node, predicate, what: str, timeout: float = 120) -> str:
    """The first of the node's log lines that `predicate` accepts (polled every 10 ms)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in list(node.launcher.lines):
            if predicate(line):
                return line
        time.sleep(0.01)
    tail = list(node.launcher.lines)[-12:]
    raise AssertionError(f"timed out waiting for {what}; node log: {json.dumps(tail)[:3000]}")


def _downloading(line: str) -> bool:
    """The update client's log line after a download window ("<have>/<size> bytes")."""
    return " update " in line and "phase=downloading" in line and "bytes" in line


@pytest.mark.timeout(600)
def test_11_rollouts_never_hang_a_node_cut_mid_download_times_out_a_window_holds_an_offer(
        rig, hil_record, database):
    """Issue 14 on emulated lampposts. (a) Four nodes, waves 50/100: one of the canary wave's
    two nodes is switched off in the middle of its download. The other canary commits, but the
    wave (success threshold 100 %) waits on the silent one until the server (no scheduler)
    counts it `timeout` once its 30 s deadline has passed; then, its failures (1 of 2) under the
    failure threshold, the wave moves on and the rollout completes. (b) A node whose
    own clock is 6 virtual minutes before its maintenance window is offered the update (the
    server's clock is inside the window): it holds the offer, reports that it waits for the
    window, and downloads, installs and reboots only once its clock reaches the window."""
    nodes = rig.add_nodes(4, group="rig", checkin_interval_s=20)
    rig.wait_until("four nodes online", lambda: _all_online(rig, 4), timeout=180)

    # (a) a node switched off mid-download
    release = rig.release("0.11.0", 11)
    rollout = rig.api("POST", "/api/v1/rollouts", json={
        "release_id": release["id"], "target": {"group": "rig"}, "waves": [50, 100],
        "success_threshold_pct": 100, "failure_threshold_pct": 60,
        "deadlines": {"offered": 30, "downloading": 30, "installing": 120,
                      "installed": 180}})
    rid = rollout["id"]
    planned = rig.api("GET", f"/api/v1/rollouts/{rid}/nodes", params={"planned": "true"})
    canaries = [n for n in nodes if n.device_id in
                {r["device_id"] for r in planned if r["wave"] == 0}]
    assert len(canaries) == 2
    victim = None
    deadline = time.monotonic() + 120
    while victim is None and time.monotonic() < deadline:
        victim = next((n for n in canaries if any(
            _downloading(line) for line in list(n.launcher.lines))), None)
        time.sleep(0.01)
    assert victim is not None, "no canary started downloading"
    victim.launcher.power_cut()
    state = json.loads((rig.work / victim.pole_id / "update" / "state.json").read_text())
    assert state["phase"] == "downloading", state  # switched off mid-download
    seen: list = []

    def timed_out_and_completed() -> bool:
        seen[:] = [rig.api("GET", f"/api/v1/rollouts/{rid}/nodes"),
                   rig.api("GET", f"/api/v1/rollouts/{rid}")]
        return ({r["device_id"]: r["state"] for r in seen[0]}.get(victim.device_id)
                == "timeout" and seen[1]["state"] == "completed")

    try:
        rig.wait_until("the switched-off node counted timeout and the rollout completed",
                       timed_out_and_completed, timeout=180)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nrollout: {json.dumps(seen)[:4000]}") from None
    status = rig.api("GET", f"/api/v1/rollouts/{rid}")
    wave0, wave1 = status["waves"]
    assert (wave0["timed_out"], wave0["failed"], wave0["committed"]) == (1, 1, 1), wave0
    assert wave1["committed"] == 2, wave1
    row = {r["device_id"]: r for r in rig.api("GET", f"/api/v1/rollouts/{rid}/nodes")}[
        victim.device_id]
    # switched off before or after its first progress report reached the server
    assert row["detail"].startswith(("timeout: downloading", "timeout: offered")), row
    events = rig.api("GET", f"/api/v1/rollouts/{rid}/events")
    order = [(e["state"], e["device_id"]) for e in events]
    timeout_at = order.index(("timeout", victim.device_id))
    [advanced] = [i for i, (state, _) in enumerate(order) if state == "advanced"]
    # the wave (success threshold 100 %) moved on only once the silent node timed out
    assert timeout_at < advanced, order
    assert "1 timed out" in events[advanced]["detail"], events[advanced]
    hil_record("timed_out", 1)

    # (b) an offer that reaches a node before its window: the window is this UTC hour and
    # the next (the server is inside it); the node's clock starts 6 minutes before this hour
    # began and runs at 4x, so it reaches the window about 90 s from now
    window_start = int(time.time()) // 3600 * 3600
    hour = time.gmtime(window_start).tm_hour
    lead_s = 360
    rig.speed, rig.epoch = 4.0, window_start - lead_s
    [held] = rig.add_nodes(1, group="window", checkin_interval_s=20)
    release_b = rig.release("0.12.0", 12)
    rollout_b = rig.api("POST", "/api/v1/rollouts", json={
        "release_id": release_b["id"], "target": {"group": "window"}, "waves": [100],
        "window": {"start_hour": hour, "end_hour": (hour + 2) % 24, "tz": "UTC"}})
    waiting = _wait_line(held, lambda line: "waiting for the window" in line,
                         "the node holding the offer until its window")
    assert f"opens at {window_start}" in waiting, waiting
    first = _wait_line(held, _downloading, "the first download window", timeout=240)
    boot_ms = held.launcher.world.records.boots[0][0]
    node_clock = window_start - lead_s + (boot_ms + int(first.split(" ", 1)[0])) / 1000
    assert node_clock >= window_start - 2, (first, node_clock, window_start)
    rig.wait_until("the held node committed inside its window", lambda: list(
        _rollout_nodes(rig, rollout_b["id"]).values()) == ["committed"], timeout=240)
    boots = held.launcher.world.records.boots
    assert len(boots) == 2 and window_start - lead_s + boots[1][0] / 1000 >= window_start
    assert rig.devices()[held.device_id]["fw_version"] == "0.12.0"
    hil_record("node_clock_before_window_s", lead_s)
