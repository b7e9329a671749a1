"""Power cuts (SIGKILL of the node) at random moments: the node resumes, its queue intact."""

import json
import random
import time

import pytest

from tools.emulator.launcher import Launcher
from tools.emulator.scenario import Scenario

FAST = {"sample_period_ms": {"occupancy": 1000, "light": 1000, "bme280": 1000, "pms5003": 1000}}


@pytest.mark.slow
def test_node_survives_power_cuts_and_delivers_every_queued_record_once(tmp_path):
    rng = random.Random(2026)
    launcher = Launcher(tmp_path / "flash", Scenario(seed=3), config=FAST)
    launcher.world.telemetry_accept = False  # the server is unreachable: records pile up
    with launcher:
        queued_at_boot = []
        for cut in range(3):
            assert launcher.wait_virtual((cut + 1) * 2 * 3600 * 1000)
            time.sleep(rng.uniform(0.0, 0.3))  # somewhere in the middle of a tick or a write
            checkins = list(launcher.world.records.checkins)
            launcher.power_cut()
            deadline = time.monotonic() + 5
            while launcher.world.connected and time.monotonic() < deadline:
                time.sleep(0.01)  # the world notices the dropped connection
            lamp_when_off = launcher.world.records.lamp[-1][1]
            launcher.power_restore()
            deadline = time.monotonic() + 30
            while len(launcher.events("boot")) < cut + 2 and time.monotonic() < deadline:
                time.sleep(0.02)
            boot = launcher.events("boot")[-1][1]
            queued_at_boot.append(int(boot["queued"]))
            # nothing the node had queued before the cut is gone (a torn last write at most)
            assert int(boot["queued"]) >= checkins[-1][1]["queue_len"]
            assert lamp_when_off == 65535  # the lamp is lit while the controller is off
        assert queued_at_boot == sorted(queued_at_boot) and queued_at_boot[0] > 50
        # the server comes back: the node drains its queue
        launcher.world.telemetry_accept = True
        now = launcher.world.now_ms
        assert launcher.wait_virtual(now + 40 * 60 * 1000)
        records = dict(launcher.world.records.telemetry)
        last_status = launcher.world.records.checkins[-1][1]
    boots = [cause for _, cause in launcher.world.records.boots]
    assert boots == ["power_on"] * 4
    seqs = sorted(records)
    assert seqs == list(range(1, seqs[-1] + 1))  # every seq once, none missing
    assert len(seqs) >= queued_at_boot[-1]
    assert last_status["queue_dropped"] == 0
    timestamps = []
    for seq in seqs:
        rec = json.loads(records[seq])
        assert set(rec) == {"ts", "m", "v"}
        timestamps.append(rec["ts"])
    assert timestamps == sorted(timestamps)  # queued in order, delivered in order
