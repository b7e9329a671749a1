"""The node on a street's Wi-Fi with a cold-booted RTC: association failure, link loss and weak
signal ridden through with nothing lost; a clock that starts in 2000 set by NTP or the fleet
server, and every reading delivered with its true time."""

import json

from tests.rigs.driver_harness import run_on_board, running_world
from tools.emulator.launcher import NODE_HEAP_KB
from tools.emulator.scenario import DEFAULT_START_EPOCH, RTC_COLD_EPOCH, NetFault, Scenario

NIGHT_START = DEFAULT_START_EPOCH + 10 * 3600  # 22:00

# A node with Wi-Fi credentials and an uplink that records what reaches it, when. It answers
# the time as the fleet server would (the world's true time), when asked.
RUN = """
from core.node import Node
from core.node_main import make_wifi
from core.log import Log

class Uplink:
    def __init__(self, ask_time):
        self.calls = []  # (kind, board ms)
        self.readings = []  # (seq, ts, metric)
        self.statuses = []
        if ask_time:
            self.server_time = self._time

    def _time(self):
        self.calls.append(("time", board.ticks_ms()))
        return TRUE_EPOCH_AT_BOOT + board.ticks_ms() // 1000

    def checkin(self, status):
        self.calls.append(("checkin", board.ticks_ms()))
        self.statuses.append(status)
        return None

    def post_telemetry(self, records):
        self.calls.append(("upload", board.ticks_ms()))
        for seq, payload in records:
            r = json.loads(payload)
            self.readings.append((seq, r["ts"], r["m"]))
        return records[-1][0]

lines = []
class Keep:
    def write(self, s):
        if "wifi" in s or "clock" in s:
            lines.append(s.strip())

with open(board.flash_dir + "/wifi.json", "w") as f:
    f.write(json.dumps({"ssid": "street-7", "password": PASSWORD}))
log = Log(clock_ms=board.ticks_ms, stream=Keep())
up = Uplink(ASK_TIME)
node = Node(board, uplink=up, log=log, wifi=make_wifi(board, log))
node.run(until_ms=RUN_MS)
node.upload()
import gc
gc.collect()
print(json.dumps({"calls": up.calls, "statuses": up.statuses[-3:], "log": lines,
                  "clock_ok": node.clock_ok, "queued": node.queued_records,
                  "left": len(node.queue)}))
for r in up.readings:
    print(json.dumps(r))
"""


def _run(tmp_path, scenario, run_s, ask_time=False, password="correct horse"):
    code = (f"TRUE_EPOCH_AT_BOOT = {scenario.start_epoch}\nASK_TIME = {ask_time}\n"
            f"RUN_MS = {run_s * 1000}\nPASSWORD = {json.dumps(password)}\n" + RUN)
    with running_world(scenario) as world:
        out, *readings = run_on_board(world, code, tmp_path, heap_kb=NODE_HEAP_KB)
        assert world.records.boots[0][0] == 0  # the truth below counts from the board's boot
        associations = world.wifi.associations
        ntp_queries = world.ntp_queries
        lamp = list(world.records.lamp)
    return out, readings, associations, ntp_queries, lamp


def test_wifi_link_lost_for_half_an_hour_loses_no_reading_and_keeps_the_lamp(tmp_path):
    scenario = Scenario(start_epoch=NIGHT_START, bus_stop_per_h=2.0,
                        net_faults=[NetFault("link_lost", 600, 2400)])
    out, readings, associations, _ntp, lamp = _run(tmp_path, scenario, 3600)
    calls = out["calls"]
    # nothing was tried on the network while the link was down
    assert not [c for c in calls if 600_000 + 1000 < c[1] < 2_400_000]
    assert any(c[1] > 2_400_000 and c[0] == "upload" for c in calls)
    # every reading reached the server, once, in order, with nothing left queued
    seqs = [r[0] for r in readings]
    assert seqs == list(range(1, out["queued"] + 1)) and out["left"] == 0
    # readings taken while the link was down are among them, with their true times
    down = [r for r in readings if NIGHT_START + 700 < r[1] < NIGHT_START + 2300]
    assert len(down) >= 10
    # the lamp kept following the street while the link was down
    assert [t for t, _duty in lamp if 600_000 < t < 2_400_000]
    # the node noticed, backed off, came back, and reports the reconnection
    text = "\n".join(out["log"])
    assert "wifi_lost reason=beacon_timeout" in text
    assert "wifi_connect_failed reason=no_ap_found" in text
    retries = [int(x.split("retry_s=")[1].split()[0]) for x in out["log"] if "retry_s=" in x]
    assert retries[:4] == [2, 4, 8, 16] and max(retries) <= 300
    assert associations == 2
    assert out["statuses"][-1]["wifi_reconnects"] == 1
    assert out["statuses"][-1]["rssi"] == scenario.wifi_rssi_dbm
    assert "correct horse" not in text  # the passphrase is never logged


def test_association_failing_at_boot_then_weak_signal(tmp_path):
    scenario = Scenario(start_epoch=NIGHT_START, ntp_reachable=True,
                        net_faults=[NetFault("association_fails", 0, 120),
                                    NetFault("weak_signal", 120, 3600)])
    out, readings, associations, _ntp, _lamp = _run(tmp_path, scenario, 900)
    text = "\n".join(out["log"])
    assert "wifi_connect_failed reason=association_failed" in text
    assert associations == 1 and out["statuses"][-1]["wifi_reconnects"] == 0
    assert out["statuses"][-1]["rssi"] == -87
    assert [r[0] for r in readings] == list(range(1, out["queued"] + 1))


def test_wrong_passphrase_is_reported_and_the_lamp_runs_on(tmp_path):
    scenario = Scenario(start_epoch=NIGHT_START, wifi_password="the real one")
    out, readings, associations, ntp, lamp = _run(tmp_path, scenario, 300, password="a typo!!")
    assert "wifi_connect_failed reason=wrong_password" in "\n".join(out["log"])
    assert associations == 0 and not out["calls"] and not readings
    assert "a typo!!" not in "\n".join(out["log"])
    assert lamp[0][1] == 65535  # lit, and driven by its own sensors (no network needed)
    assert out["clock_ok"] is False and ntp == 0  # no NTP without a link


def _assert_true_times(readings, start_epoch, run_s):
    """Every reading's ts lies within the run, in true time (a reading is stamped when taken,
    its 15-minute interval figures at its end)."""
    assert readings
    for _seq, ts, metric in readings:
        assert start_epoch <= ts <= start_epoch + run_s, (metric, ts)
        assert ts > RTC_COLD_EPOCH + 10 * 365 * 86400


def test_clock_from_2000_set_by_ntp_before_the_first_reading(tmp_path):
    scenario = Scenario(start_epoch=NIGHT_START)
    out, readings, _a, ntp, _lamp = _run(tmp_path, scenario, 1200)
    assert out["clock_ok"] and ntp >= 1
    assert [x for x in out["log"] if "clock_set" in x and "source=ntp" in x]
    _assert_true_times(readings, NIGHT_START, 1200)
    assert [c for c in out["calls"] if c[0] == "time"] == []


def test_clock_from_2000_without_ntp_is_set_by_the_fleet_server_and_early_readings_corrected(
        tmp_path):
    # Wi-Fi comes up only after 5 minutes and no NTP server answers: five minutes of readings
    # are stamped in 2000, then corrected once the fleet server gives the time
    scenario = Scenario(start_epoch=NIGHT_START, ntp_reachable=False,
                        net_faults=[NetFault("association_fails", 0, 300)])
    out, readings, _a, _ntp, _lamp = _run(tmp_path, scenario, 1200, ask_time=True)
    calls = out["calls"]
    first_time = next(c[1] for c in calls if c[0] == "time")
    assert first_time > 300_000
    # no check-in or upload before the clock was set
    assert min(c[1] for c in calls if c[0] != "time") >= first_time
    assert out["clock_ok"] and [x for x in out["log"] if "clock_set" in x and "source=fleet" in x]
    _assert_true_times(readings, NIGHT_START, 1200)
    early = [r for r in readings if r[1] < NIGHT_START + 300]
    assert len(early) >= 5  # the readings from before the link, corrected, not lost
    assert [r[0] for r in readings] == list(range(1, out["queued"] + 1))
