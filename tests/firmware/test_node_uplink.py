"""The node with an uplink: status, configuration and commands from check-ins, telemetry upload,
and fail-lit behaviour when the loop itself throws."""

import time

from tests.rigs.driver_harness import run_on_board, running_world
from tools.emulator.launcher import NODE_HEAP_KB, Launcher
from tools.emulator.scenario import DEFAULT_START_EPOCH, Scenario

NIGHT_START = DEFAULT_START_EPOCH + 10 * 3600  # 22:00, dark, nobody about

FAKE_UPLINK_RUN = """
from core.node import Node

class FakeUplink:
    def __init__(self):
        self.statuses = []
        self.seqs = []
        self.metrics = {}
        self.replies = [{"config": {"dimming": {"dim_level": 10}}, "config_version": 5,
                         "commands": [{"id": "c1", "type": "lamp_override",
                                       "args": {"level_pct": 55, "minutes": 2}}],
                         "next_checkin_s": 60}]

    def checkin(self, status):
        self.statuses.append(status)
        return self.replies.pop(0) if self.replies else None

    def post_telemetry(self, records):
        for seq, payload in records:
            self.seqs.append(seq)
            self.metrics[json.loads(payload)["m"]] = 1
        return records[-1][0]

up = FakeUplink()
node = Node(board, uplink=up)
node.run(until_ms=300000)
healthy_update = node.occupancy.update
def broken(*args):
    raise RuntimeError("injected")
node.occupancy.update = broken
node.run(until_ms=305500)
errors_seen = node.loop_errors
node.occupancy.update = healthy_update
node.run(until_ms=960000)  # past the first 15-minute report
import gc
gc.collect()  # the fake uplink's records share the node's heap: make room to print them
# One line per status: a single JSON string of them all needs one large block, and a heap
# holding modules compiled from source is too fragmented to promise one.
for status in up.statuses:
    print(json.dumps(status))
print(json.dumps({"seqs": up.seqs, "metrics": list(up.metrics), "errors": errors_seen,
                  "saved": json.loads(open(board.flash_dir + "/config.json").read())["version"]}))
"""


def test_checkin_applies_config_and_commands_uploads_and_fails_lit(tmp_path):
    scenario = Scenario(start_epoch=NIGHT_START, footfall_scale=0.0, bus_stop_per_h=0.0)
    with running_world(scenario) as world:
        *statuses, out = run_on_board(world, FAKE_UPLINK_RUN, tmp_path, heap_kb=NODE_HEAP_KB)
        level = world.records.lamp_level_at
        boot_ms = world.records.boots[0][0]

        def at(s):
            return level(boot_ms + int(s * 1000))

        assert at(0) == 100  # lit from power-up
        assert abs(at(60) - 55) < 0.01  # the operator's override
        assert abs(at(200) - 10) < 0.01  # the new configuration's dim level
        assert at(302) == 100  # an exception in the loop: lit at once
        assert abs(at(400) - 10) < 0.01  # and back to normal once the loop runs again
    first, second = statuses[0], statuses[1]
    for key in ("fw_version", "uptime_s", "mem_free", "rssi", "boot_reason", "sensor_faults",
                "config_version", "queue_len", "queue_dropped", "lamp_level_pct"):
        assert key in first
    assert first["config_version"] == 0 and second["config_version"] == 5
    assert second["acks"] == [{"id": "c1", "ok": True, "result": "level 55 % for 2 min"}]
    assert out["saved"] == 5
    assert out["errors"] >= 3 and statuses[-1]["sensor_faults"]["controller"] >= 3
    assert out["seqs"] == list(range(1, len(out["seqs"]) + 1))
    metrics = set(out["metrics"])
    assert {"temperature_c", "humidity_pct", "pressure_hpa", "pm25_ugm3", "pm10_ugm3", "lux",
            "presence_count", "lamp_level_pct", "energy_wh"} <= metrics


def test_reboot_command_restarts_the_node_and_is_acknowledged(tmp_path):
    launcher = Launcher(tmp_path / "flash", Scenario(), config={"checkin_interval_s": 60})
    launcher.world.checkin_replies.append({"commands": [{"id": "r9", "type": "reboot"}]})
    with launcher:
        deadline = time.monotonic() + 60
        while len(launcher.world.records.checkins) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
    causes = [cause for _, cause in launcher.world.records.boots]
    assert causes[:2] == ["power_on", "soft"]
    statuses = [s for _, s in launcher.world.records.checkins]
    assert statuses[1]["boot_reason"] == "soft"
    assert statuses[1]["acks"] == [{"id": "r9", "ok": True, "result": "rebooting"}]
    assert statuses[2]["acks"] == []


FLAKY_UPLINK_RUN = """
from core.node import Node

class Rejected(Exception):
    pass

class FlakyUplink:
    def __init__(self):
        self.posts = 0
        self.stored = []

    def checkin(self, status):
        raise OSError(113)  # no route to host

    def post_telemetry(self, records):
        self.posts += 1
        if self.posts == 1:
            raise OSError(110)  # timed out: keep the records, retry later
        if self.posts == 2:
            raise Rejected(422, "bad reading")  # refused for its content: drop that batch
        self.stored.extend(s for s, _ in records)
        return records[-1][0]

up = FlakyUplink()
node = Node(board, cfg={"telemetry_batch": 2}, uplink=up)
node.run(until_ms=300000)
print(json.dumps({"stored": up.stored, "controller": node.sensor_faults()["controller"],
                  "uplink_errors": node.uplink_errors, "rejected": node.rejected_records,
                  "queued": node.queued_records, "left": len(node.queue)}))
"""


def test_network_errors_and_refused_batches_never_touch_the_lamp(tmp_path):
    scenario = Scenario(start_epoch=NIGHT_START, footfall_scale=0.0, bus_stop_per_h=0.0)
    with running_world(scenario) as world:
        [out] = run_on_board(world, FLAKY_UPLINK_RUN, tmp_path, heap_kb=NODE_HEAP_KB)
        dim_from = next(ms for ms, duty in world.records.lamp if ms > 0 and duty < 65535)
        levels = [duty for ms, duty in world.records.lamp if dim_from + 15000 < ms < 300000]
    assert out["controller"] == 0 and out["uplink_errors"] >= 2
    assert levels == []  # steady at the dim level: no fail-lit flashes from uplink trouble
    assert out["rejected"] == 2  # exactly the refused batch
    assert out["stored"] == list(range(3, out["queued"] - out["left"] + 1))


NAMED_REFUSAL_RUN = FLAKY_UPLINK_RUN.replace(
    'raise Rejected(422, "bad reading")',
    'raise Rejected(422, b\'{"detail": {"error": "reading 1: out of range", "index": 1}}\')')


def test_a_refused_reading_is_dropped_alone_and_its_neighbours_are_delivered(tmp_path):
    scenario = Scenario(start_epoch=NIGHT_START, footfall_scale=0.0, bus_stop_per_h=0.0)
    with running_world(scenario) as world:
        [out] = run_on_board(world, NAMED_REFUSAL_RUN, tmp_path, heap_kb=NODE_HEAP_KB)
    assert out["rejected"] == 1  # only the reading the server named
    delivered = out["queued"] - out["left"]
    assert out["stored"] == [1] + list(range(3, delivered + 1))  # seq 2 dropped, no duplicate


UP_TO_DATE_RUN = """
from core.node import Node

class UpToDate:
    # What the server answers when nothing is newer: the reply's optional fields are null.
    def __init__(self):
        self.checkins = 0

    def checkin(self, status):
        self.checkins += 1
        return {"server_time": 0, "next_checkin_s": 60, "config_version": None, "config": None,
                "commands": [], "update": None}

    def post_telemetry(self, records):
        return records[-1][0]

up = UpToDate()
node = Node(board, uplink=up)
node.run(until_ms=600000)  # check-ins at about 5 s and 305 s (the default), then every 60 s
print(json.dumps({"checkins": up.checkins, "errors": node.log.counts["error"],
                  "version": node.cfg["version"]}))
"""


def test_a_reply_with_nothing_newer_changes_nothing_and_logs_no_error(tmp_path):
    with running_world(Scenario(start_epoch=NIGHT_START)) as world:
        [out] = run_on_board(world, UP_TO_DATE_RUN, tmp_path, heap_kb=NODE_HEAP_KB)
    assert out["checkins"] >= 5  # every 60 s, as the reply said
    assert out["errors"] == 0 and out["version"] == 0


REFUSING_RUN = """
from core.node import Node

LONG = "k" * 300  # an unknown key whose reason is longer than a check-in may carry

class Refusing:
    # Configurations a server stored before it validated them: refused, replaced by another
    # refused one, then a good one (which clears the refusal).
    def __init__(self):
        self.statuses = []
        self.replies = [{"config": {LONG: 1}, "config_version": 3},
                        {"config": None, "config_version": None},
                        {"config": {"dimming": {"dim_level": 500}}, "config_version": 4},
                        {"config": {"dimming": {"dim_level": 20}}, "config_version": 6}]

    def checkin(self, status):
        self.statuses.append(status)
        reply = self.replies.pop(0) if self.replies else {}
        reply["next_checkin_s"] = 60
        return reply

    def post_telemetry(self, records):
        return records[-1][0]

up = Refusing()
node = Node(board, cfg={"checkin_interval_s": 60}, uplink=up)
node.run(until_ms=300000)  # check-ins at about 5, 65, 125, 185 and 245 s
for status in up.statuses:
    print(json.dumps([status.get("config_refused")]))  # one line each: "[null]" or "[{…}]"
print(json.dumps({"version": node.cfg["version"], "errors": node.log.counts["error"],
                  "versions": [s["config_version"] for s in up.statuses]}))
"""


def test_a_refused_configuration_is_reported_until_a_later_one_is_applied(tmp_path):
    with running_world(Scenario(start_epoch=NIGHT_START)) as world:
        *lines, out = run_on_board(world, REFUSING_RUN, tmp_path, heap_kb=NODE_HEAP_KB)
    assert len(lines) == 5, lines
    first, second, third, fourth, fifth = (line[0] for line in lines)
    assert first is None  # never refused one: nothing reported
    assert second["version"] == 3 and second["reason"].startswith("k" * 100)
    assert len(second["reason"]) == 200  # the first error, cut to what a check-in may carry
    assert third == second  # reported at each check-in while it stands
    assert fourth == {"version": 4,
                      "reason": "dimming.dim_level: must be between 0 and 100"}
    assert fifth is None  # version 6 applied: the refusal no longer stands
    assert out["version"] == 6 and out["versions"] == [0, 0, 0, 0, 6]
    assert out["errors"] == 2  # one config_refused line per refusal
