"""The node answers each command at its next check-in: ok with what it did, or refused with a
reason (an unknown type, a bad argument, a command that failed); answers saved by older
firmware (bare ids) are still sent, as ok; and against a live fleet server, which then shows
each command acked with the node's result."""

import json

import httpx

from tests.rigs.driver_harness import run_on_board, running_world
from tools.emulator.launcher import NODE_HEAP_KB
from tools.emulator.scenario import DEFAULT_START_EPOCH, Scenario

NIGHT_START = DEFAULT_START_EPOCH + 10 * 3600  # 22:00, dark, nobody about

ANSWERS_RUN = """
import os
from core.node import Node

# what firmware before answers left behind a reboot command: bare ids
flash = board.flash_dir.rstrip("/")
with open(flash + "/node_state.json", "w") as f:
    f.write(json.dumps({"commands_done": [7]}))

class FakeUplink:
    def __init__(self):
        self.statuses = []
        self.replies = [{"commands": [
            {"id": 1, "type": "identify"},
            {"id": 2, "type": "lamp_override", "args": {"level_pct": 40, "minutes": 5}},
            {"id": 3, "type": "lamp_override", "args": {"level_pct": 140}},
            {"id": 4, "type": "lamp_override", "args": {"level_pct": 40, "minutes": "ten"}},
            {"id": 5, "type": "self_destruct"},
            {"id": 6, "type": "identify", "args": [1]},
            {"id": 8, "type": "lamp_override", "args": {"level_pct": 25}},
            {"id": 9, "type": "lamp_override", "args": {}},
            {"id": 10, "type": "lamp_override", "args": {"level_pct": 33}},
            {"id": 11, "type": "identify"}], "next_checkin_s": 60}]

    def checkin(self, status):
        self.statuses.append(status)
        return self.replies.pop(0) if self.replies else None

    def post_telemetry(self, records):
        return records[-1][0]

up = FakeUplink()
node = Node(board, uplink=up)
real_override = node.policy.set_override

def picky_override(level, until_ms=None):
    if level == 33:
        raise MemoryError()  # a command that fails while it runs
    real_override(level, until_ms)

node.policy.set_override = picky_override
node.run(until_ms=400000)  # check-ins at 5 s, 305 s (the configured interval), 365 s
for status in up.statuses:
    print(json.dumps(status["acks"]))
print(json.dumps({"left": "node_state.json" in os.listdir(flash)}))
"""


def test_each_command_is_answered_ok_with_a_result_or_refused_with_a_reason(tmp_path):
    scenario = Scenario(start_epoch=NIGHT_START, footfall_scale=0.0, bus_stop_per_h=0.0)
    with running_world(scenario) as world:
        *acks, out = run_on_board(world, ANSWERS_RUN, tmp_path, heap_kb=NODE_HEAP_KB)
    assert acks[0] == [{"id": 7, "ok": True}]  # saved by older firmware, sent once
    assert out["left"] is False  # the saved answers are consumed
    assert acks[1] == [
        {"id": 1, "ok": True, "result": "blinking 10 s"},
        {"id": 2, "ok": True, "result": "level 40 % for 5 min"},
        {"id": 3, "ok": False, "reason": "bad level_pct"},
        {"id": 4, "ok": False, "reason": "bad minutes"},
        {"id": 5, "ok": False, "reason": "unknown command"},
        {"id": 6, "ok": False, "reason": "bad args"},
        {"id": 8, "ok": True, "result": "level 25 % until cleared"},
        {"id": 9, "ok": True, "result": "override cleared"},
        {"id": 10, "ok": False, "reason": "failed: MemoryError()"},
        {"id": 11, "ok": True, "result": "blinking 10 s"},  # the next one still runs
    ]
    assert acks[2] == []  # answered once: the server has them


LIVE_RUN = """
import time
from core.node import Node
from net.uplink import Uplink

flash = board.flash_dir.rstrip("/")
ca = %(ca)r
if ca:
    with open(flash + "/fleet_ca.der", "wb") as f:
        f.write(ca)
up = Uplink(json.loads(%(ident)r), time.time, root=flash)
node = Node(board, uplink=up)
node.run(until_ms=320000)  # check-ins at 5 s (the commands) and 305 s (the answers)
print(json.dumps({"checkin_errors": node.uplink_errors}))
"""


def test_a_node_answers_the_fleet_servers_commands(live_server, tmp_path):
    """The answers travel: the server shows each command acked with the node's result."""
    creds = live_server.register("CMD-LIVE")
    uid = creds["device_id"]
    sent = []
    for body in ({"type": "identify"},
                 {"type": "lamp_override", "args": {"level_pct": 80, "minutes": 15}}):
        resp = httpx.post(f"{live_server.url}/api/v1/devices/{uid}/commands", json=body,
                          headers=live_server.operator_headers, verify=live_server.ssl_context)
        assert resp.status_code == 201, resp.text
        sent.append(resp.json()["id"])
    ident = {"device_id": uid, "secret": creds["secret"], "server": live_server.url}
    ca = live_server.tls.ca_der() if live_server.tls is not None else None
    if ca is None:
        ident["insecure_http"] = True
    scenario = Scenario(start_epoch=NIGHT_START, footfall_scale=0.0, bus_stop_per_h=0.0)
    with running_world(scenario) as world:
        out = run_on_board(world, LIVE_RUN % {"ca": ca, "ident": json.dumps(ident)}, tmp_path,
                           heap_kb=NODE_HEAP_KB)
    assert out[-1] == {"checkin_errors": 0}
    shown = [httpx.get(f"{live_server.url}/api/v1/devices/{uid}/commands/{cid}",
                       headers=live_server.operator_headers,
                       verify=live_server.ssl_context).json() for cid in sent]
    assert [(c["state"], c["ok"], c["reason"], c["result"]) for c in shown] == [
        ("acked", True, "", "blinking 10 s"), ("acked", True, "", "level 80 % for 15 min")]
