"""The node's link attacked from the middle: the real firmware on MicroPython, a live fleet
server over TLS, and a proxy between them that presents another certificate, or ends TLS and
alters, replays or forges the server's replies (lamp off, configuration, acked_seq, server
time). Whatever it sends, the node changes nothing, drops nothing, and its log names each
refusal."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.rigs.driver_harness import run_on_board, running_world
from tests.rigs.mitm import MitmProxy, Reply, certificate_files, fleet_ca
from tools.emulator.fleet_process import FleetServer
from tools.emulator.launcher import NODE_HEAP_KB
from tools.emulator.scenario import DEFAULT_START_EPOCH, Scenario

LAMP_OFF = {"id": 9001, "type": "lamp_override", "args": {"level_pct": 0, "minutes": 600}}


def _proxy(server: FleetServer, tmp_path: Path, *, fleet_issued: bool, tamper=None) -> MitmProxy:
    assert server.tls is not None
    ca = fleet_ca(server.tls.directory) if fleet_issued else None
    cert, key = certificate_files(tmp_path / "mitm", ca=ca)
    return MitmProxy(server.url, server.ssl_context, cert, key, tamper=tamper)


def _uplink_script(creds: dict, server: FleetServer, url: str, body: str,
                   clock_offset: int = 0) -> str:
    """A node script with an Uplink through `url`, the fleet CA pinned, a log kept in a list."""
    ident = {"device_id": creds["device_id"], "secret": creds["secret"], "server": url,
             "key_version": creds.get("key_version", 1)}
    return (
        "import json, time\nfrom net.uplink import Uplink\nfrom core.log import Log\n"
        "lines = []\nclass Keep:\n    def write(self, s):\n        lines.append(s)\n"
        "log = Log(stream=Keep())\n"
        f"with open('fleet_ca.der', 'wb') as f:\n    f.write({server.ca_der!r})\n"
        f"up = Uplink(json.loads({json.dumps(json.dumps(ident))}), "
        f"lambda: time.time() + {clock_offset}, log=log, root='.')\n"
        "def attempt(fn, *args):\n"
        "    try:\n        return ['ok', fn(*args)]\n"
        "    except Exception as e:\n        return ['failed', repr(e)]\n" + body)


def test_a_proxy_with_a_certificate_from_another_ca_is_refused(mpy, live_server, tmp_path):
    creds = live_server.register("MITM-1")
    proxy = _proxy(live_server, tmp_path, fleet_issued=False)
    try:
        out = mpy(_uplink_script(creds, live_server, proxy.url,
                                 "print(json.dumps(attempt(up.checkin, {'fw_version': '1'})))\n"))
    finally:
        proxy.stop()
    outcome, error = out[-1]
    assert outcome == "failed"
    assert "certificate" in error.lower() or "verif" in error.lower(), error
    assert proxy.handshake_failures >= 1
    assert proxy.exchanges == [], "a request reached the impostor"


def _altered_checkin(exchange, reply: Reply) -> Reply | None:
    if not exchange.path.endswith("/checkin") or reply.status != 200:
        return None
    doc = json.loads(reply.body)
    doc.update(commands=[LAMP_OFF], config={"dimming": {"dim_level": 0}}, config_version=99)
    return Reply(reply.status, reply.headers, json.dumps(doc).encode())


def test_an_altered_checkin_reply_is_refused_and_logged(mpy, live_server, tmp_path):
    creds = live_server.register("MITM-2")
    proxy = _proxy(live_server, tmp_path, fleet_issued=True, tamper=_altered_checkin)
    try:
        out = mpy(_uplink_script(creds, live_server, proxy.url,
                                 "print(json.dumps(attempt(up.checkin, {'fw_version': '1'})))\n"
                                 "print(json.dumps(lines))\n"))
    finally:
        proxy.stop()
    (outcome, error), lines = out[-2], out[-1]
    assert outcome == "failed" and "bad signature" in error
    assert any("reply_refused" in line and "bad signature" in line for line in lines), lines
    assert [e.tampered for e in proxy.exchanges] == [True]


def test_a_replayed_checkin_reply_is_refused(mpy, live_server, tmp_path):
    """The proxy keeps the first genuine reply (signed, lamp and all) and answers every later
    check-in with it."""
    creds = live_server.register("MITM-3")
    recorded: list[Reply] = []

    def replay(exchange, reply: Reply) -> Reply | None:
        if not recorded:
            recorded.append(reply)
            return None
        return recorded[0]

    proxy = _proxy(live_server, tmp_path, fleet_issued=True, tamper=replay)
    try:
        out = mpy(_uplink_script(creds, live_server, proxy.url,
                                 "print(json.dumps(attempt(up.checkin, {'fw_version': '1'})))\n"
                                 "print(json.dumps(attempt(up.checkin, {'fw_version': '1'})))\n"
                                 "print(json.dumps(lines))\n"))
    finally:
        proxy.stop()
    first, second, lines = out[-3], out[-2], out[-1]
    assert first[0] == "ok" and first[1]["next_checkin_s"] > 0
    assert second[0] == "failed" and "bad signature" in second[1]
    assert sum("reply_refused" in line for line in lines) == 1


def test_a_forged_server_time_does_not_move_the_clock(mpy, live_server, tmp_path):
    """A node two hours slow is told by the server's signed 401 what time it is; the proxy
    moves that time a day on. The node refuses it and keeps its clock."""
    creds = live_server.register("MITM-4")

    def shift_time(exchange, reply: Reply) -> Reply | None:
        headers = dict(reply.headers)
        headers["x-server-time"] = str(int(headers["x-server-time"]) + 86400)
        return Reply(reply.status, headers, reply.body)

    proxy = _proxy(live_server, tmp_path, fleet_issued=True, tamper=shift_time)
    try:
        out = mpy(_uplink_script(creds, live_server, proxy.url,
                                 "r = attempt(up.checkin, {'fw_version': '1'})\n"
                                 "print(json.dumps([r, up.offset_s, lines]))\n",
                                 clock_offset=-7200))
    finally:
        proxy.stop()
    (outcome, error), offset, lines = out[-1]
    assert outcome == "failed" and "bad signature" in error
    assert offset == 0
    assert not any("clock_corrected" in line for line in lines)
    assert any("reply_refused" in line and "status=401" in line for line in lines), lines


def test_a_forged_acked_seq_is_refused(mpy, live_server, tmp_path):
    creds = live_server.register("MITM-5")

    def claim_everything(exchange, reply: Reply) -> Reply | None:
        if not exchange.path.endswith("/telemetry"):
            return None
        return Reply(reply.status, reply.headers, json.dumps(
            {"stored": 0, "duplicates": 0, "acked_seq": 10 ** 9}).encode())

    proxy = _proxy(live_server, tmp_path, fleet_issued=True, tamper=claim_everything)
    now = int(time.time())
    records = [(seq, json.dumps({"m": "lux", "v": seq, "ts": now})) for seq in (1, 2, 3)]
    try:
        out = mpy(_uplink_script(creds, live_server, proxy.url,
                                 f"recs = [(s, p.encode()) for s, p in {records!r}]\n"
                                 "print(json.dumps(attempt(up.post_telemetry, recs)))\n"))
    finally:
        proxy.stop()
    outcome, error = out[-1]
    assert outcome == "failed" and "bad signature" in error


NODE_DAY = """
import gc
from core.node import Node
from net.uplink import Uplink
with open(board.flash_dir + '/fleet_ca.der', 'wb') as f:
    f.write({ca!r})
up = Uplink(json.loads({ident!r}), board.epoch_s, root=board.flash_dir)
node = Node(board, uplink=up)
up.log = node.log
node.run(until_ms={until})
gc.collect()
print(json.dumps({{"queued": len(node.queue), "produced": node.queued_records,
                   "errors": node.uplink_errors, "lamp": node.lamp.target,
                   "config": node.cfg.get("version", 0),
                   "log": [l for l in node.log.recent() if "refused" in l]}}))
"""


@pytest.mark.slow
def test_a_hijacked_terminator_cannot_switch_off_the_lamp_or_drop_readings(live_server,
                                                                           tmp_path):
    """A whole node's night through a TLS terminator that has been taken over: every check-in
    reply says "lamp off for ten hours, dim to 0", every telemetry reply claims all readings
    held. The node keeps its lamp and its configuration and every reading; once the link is
    honest again, every reading reaches the server."""
    creds = live_server.register("MITM-6")
    ident = json.dumps({"device_id": creds["device_id"], "secret": creds["secret"],
                        "server": "", "key_version": creds["key_version"]})
    tampering = {"on": True}

    def hostile(exchange, reply: Reply) -> Reply | None:
        if not tampering["on"] or reply.status != 200:
            return None
        if exchange.path.endswith("/telemetry"):
            return Reply(200, reply.headers, json.dumps(
                {"stored": 0, "duplicates": 0, "acked_seq": 10 ** 9}).encode())
        return _altered_checkin(exchange, reply)

    proxy = _proxy(live_server, tmp_path, fleet_issued=True, tamper=hostile)
    ident = ident.replace('"server": ""', f'"server": "{proxy.url}"')
    night = Scenario(start_epoch=DEFAULT_START_EPOCH + 10 * 3600, footfall_scale=0.0,
                     bus_stop_per_h=0.0)
    try:
        with running_world(night) as world:
            [first] = run_on_board(world, NODE_DAY.format(ca=live_server.ca_der, ident=ident,
                                                          until=1_000_000),
                                   tmp_path, heap_kb=NODE_HEAP_KB)
            tampering["on"] = False
            [second] = run_on_board(world, NODE_DAY.format(ca=live_server.ca_der, ident=ident,
                                                           until=1_000_000),
                                    tmp_path, heap_kb=NODE_HEAP_KB)
    finally:
        proxy.stop()
    assert first["produced"] > 0 and first["queued"] == first["produced"]
    assert first["errors"] > 0 and first["lamp"] > 0 and first["config"] == 0
    assert any("reply_refused" in line for line in first["log"])
    assert any(e.tampered for e in proxy.exchanges)
    assert second["queued"] == 0
    with live_server.client(headers=live_server.operator_headers) as api:
        page = api.get("/api/v1/telemetry/readings",
                       params={"device": creds["device_id"], "limit": 5000}).json()
    assert len(page["readings"]) == first["produced"] + second["produced"]


@pytest.mark.slow
def test_a_server_that_trickles_a_checkin_reply_cannot_hold_the_node(mpy):
    """A server (or anyone on the path) that answers a check-in one byte every half second,
    never finishing: the node gives the whole exchange 30 s, then gets back to its lamp."""
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def trickle() -> None:
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10000\r\n\r\n")
        try:
            for _ in range(400):
                conn.sendall(b" ")
                time.sleep(0.5)
        except OSError:
            pass
        conn.close()

    threading.Thread(target=trickle, daemon=True).start()
    ident = {"device_id": "ll-trickle", "secret": "00" * 32,
             "server": f"http://127.0.0.1:{port}", "insecure_http": True}
    started = time.monotonic()
    out = mpy("import json, time\nfrom net.uplink import Uplink\n"
              f"up = Uplink(json.loads({json.dumps(json.dumps(ident))}), time.time)\n"
              "try:\n    up.checkin({'fw_version': '1'})\n    print(json.dumps('answered'))\n"
              "except Exception as e:\n    print(json.dumps(repr(e)))\n", timeout=120)
    took = time.monotonic() - started
    listener.close()
    assert "stalled" in out[-1] or "timed out" in out[-1], out
    assert took < 60


def test_a_lost_enrollment_reply_and_a_forged_one_do_not_strand_the_node(mpy, live_server,
                                                                         tmp_path):
    """The first enrollment reply is committed on the server and swapped on the way for a
    forged identity; the node refuses it, keeps its code, and on its next attempt gets a fresh
    identity (the server's grace period) that works."""
    issued = live_server.client(headers=live_server.operator_headers).post(
        "/api/v1/devices/batch", json={"devices": [{"pole_id": "MITM-E1"}], "enrollment": True}
    ).json()[0]
    forged = {"device_id": issued["device_id"], "pole_id": "MITM-E1", "secret": "ab" * 32,
              "key_version": 9}

    def swap_first(exchange, reply: Reply) -> Reply | None:
        if exchange.path.endswith("/enroll") and len(exchange_log) == 0:
            exchange_log.append(reply)
            return Reply(200, {"content-type": "application/json"}, json.dumps(forged).encode())
        return None

    exchange_log: list[Reply] = []
    proxy = _proxy(live_server, tmp_path, fleet_issued=True, tamper=swap_first)
    doc = {"code": issued["enrollment_code"], "server": proxy.url, "pole_id": "MITM-E1"}
    try:
        out = mpy(
            "import json\nfrom net import enroll\nfrom core.log import Log\n"
            "lines = []\nclass Keep:\n    def write(self, s):\n        lines.append(s)\n"
            "log = Log(stream=Keep())\n"
            f"open('fleet_ca.der', 'wb').write({live_server.ca_der!r})\n"
            f"open('enrollment.json', 'w').write({json.dumps(json.dumps(doc))})\n"
            "first = enroll.redeem('.', log=log)\n"
            "second = enroll.redeem('.', log=log)\n"
            "print(json.dumps([first, second, json.load(open('identity.json')), lines]))\n",
            cwd=tmp_path)
    finally:
        proxy.stop()
    first, second, identity, lines = out[-1]
    assert (first, second) == ("retry", "enrolled")
    assert any("reply_refused" in line for line in lines), lines
    assert identity["secret"] != forged["secret"]
    assert identity["secret"] != json.loads(exchange_log[0].body)["secret"]  # the lost one
    creds = dict(identity, device_id=issued["device_id"])
    out = mpy(_uplink_script(creds, live_server, live_server.url,
                             "print(json.dumps(attempt(up.checkin, {'fw_version': '1'})))\n"))
    assert out[-1][0] == "ok"


def _time_script(creds: dict, server: FleetServer, url: str) -> str:
    return _uplink_script(creds, server, url,
                          "print(json.dumps(attempt(up.server_time)))\n"
                          "print(json.dumps(attempt(up.server_time)))\n"
                          "print(json.dumps(lines))\n")


def test_a_node_without_a_clock_takes_the_time_only_from_a_reply_signed_for_it(
        mpy, live_server, tmp_path):
    """A node whose RTC says 2000 asks the fleet server's time (POST /device/v1/time, X-Timestamp
    0). The proxy moves the first answer's time a year back, then replays the first genuine
    answer to the second question: both are refused; honest, the answer is the server's time."""
    creds = live_server.register("MITM-T1")
    genuine: list[Reply] = []

    def forge_then_replay(exchange, reply: Reply) -> Reply | None:
        if not exchange.path.endswith("/time"):
            return None
        if not genuine:
            genuine.append(reply)
            headers = dict(reply.headers)
            headers["x-server-time"] = str(int(headers["x-server-time"]) - 365 * 86400)
            return Reply(reply.status, headers, reply.body)
        return genuine[0]

    proxy = _proxy(live_server, tmp_path, fleet_issued=True, tamper=forge_then_replay)
    try:
        out = mpy(_time_script(creds, live_server, proxy.url))
    finally:
        proxy.stop()
    forged, replayed, lines = out[-3], out[-2], out[-1]
    assert forged[0] == "failed" and "bad signature" in forged[1]
    assert replayed[0] == "failed" and "bad signature" in replayed[1]
    assert sum("reply_refused" in line and "/device/v1/time" in line for line in lines) == 2
    honest = mpy(_time_script(creds, live_server, live_server.url))
    assert honest[-3][0] == "ok" and abs(honest[-3][1] - time.time()) < 5
    # asked with X-Timestamp 0: no request the node signs carries a clock it does not have
    stamps = [{k.lower(): v for k, v in e.request_headers.items()}["x-timestamp"]
              for e in proxy.exchanges]
    assert stamps == ["0", "0"]
