"""The node's clock against a forged NTP reply (MicroPython unix port): a set clock is not moved
by minutes unless the fleet server's signed time agrees; small corrections go through."""

from __future__ import annotations

import pytest

TRUE = 1_790_000_000  # the true time in these cases (2026)

# A node whose clock was set, its board's RTC and NTP answer given, and an uplink whose
# server_time (the fleet's signed time) answers FLEET, or fails when FLEET is None.
CASE = """
import json
from core import clock_sync

class Board:
    flash_dir = "."
    def __init__(self, rtc, ntp):
        self.rtc, self.ntp = rtc, ntp
    def epoch_s(self):
        return self.rtc
    def set_epoch(self, t):
        self.rtc = t
    def ntp_s(self):
        return self.ntp

class Uplink:
    asked = 0
    def server_time(self):
        Uplink.asked += 1
        if FLEET is None:
            raise OSError("ECONNRESET")
        return FLEET

class Log:
    def __init__(self):
        self.lines = []
    def _add(self, level, event, **fields):
        self.lines.append(level + " " + event + " " + json.dumps(fields))
    def warn(self, event, **fields):
        self._add("WARN", event, **fields)
    def info(self, event, **fields):
        self._add("INFO", event, **fields)

class Node:
    clock_ok = True
    restamp = False
    def __init__(self):
        self.board = Board(RTC, NTP)
        self.uplink = Uplink()
        self.log = Log()

node = Node()
ok = clock_sync.sync(node)
print(json.dumps({"ok": ok, "rtc": node.board.rtc, "asked": Uplink.asked,
                  "log": node.log.lines}))
"""


def _sync(mpy, rtc: int, ntp: int, fleet: int | None) -> dict:
    code = f"RTC, NTP, FLEET = {rtc}, {ntp}, {fleet}\n" + CASE
    [out] = mpy(code)
    return out


@pytest.mark.parametrize("shift_s", [3600, -3600, 86400 * 30])
def test_forged_ntp_moving_a_set_clock_is_refused_when_the_fleet_disagrees(mpy, shift_s):
    out = _sync(mpy, rtc=TRUE, ntp=TRUE + shift_s, fleet=TRUE)
    assert out["ok"] is False and out["rtc"] == TRUE
    assert out["asked"] == 1
    [line] = out["log"]
    assert line.startswith("WARN clock_refused") and f'"step_s": {shift_s}' in line


def test_forged_ntp_with_the_fleet_unreachable_keeps_the_running_clock(mpy):
    out = _sync(mpy, rtc=TRUE, ntp=TRUE - 7200, fleet=None)
    assert out["ok"] is False and out["rtc"] == TRUE and out["asked"] == 1
    assert out["log"][0].startswith("WARN clock_refused") and '"fleet": false' in out["log"][0]


def test_a_clock_set_wrong_before_is_corrected_when_the_fleet_agrees_with_ntp(mpy):
    # e.g. set by a forged reply at a cold boot: the true NTP time, confirmed, moves it back
    out = _sync(mpy, rtc=TRUE + 3600, ntp=TRUE, fleet=TRUE + 2)
    assert out["ok"] is True and out["rtc"] == TRUE and out["asked"] == 1
    assert [x.split(" ")[1] for x in out["log"]] == ["clock_set"]


def test_a_small_correction_needs_no_confirmation(mpy):
    out = _sync(mpy, rtc=TRUE, ntp=TRUE + 45, fleet=None)
    assert out["ok"] is True and out["rtc"] == TRUE + 45 and out["asked"] == 0
