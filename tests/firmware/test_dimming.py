"""Dimming policy on MicroPython: hysteresis, presence, fail lit, overrides, a simulated day."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from pathlib import Path

# Steps are [now_ms, lux, occupied, fault, minute_of_day or null]; the device prints, per
# step, [level, ramp_ms, state].
RUN = """
import json
from algorithms.dimming import DimmingPolicy
policy = DimmingPolicy(**json.loads(%r))
with open("steps.txt") as src:
    for line in src:
        now, lux, occupied, fault, minute = json.loads(line)
        level, ramp = policy.decide(now, lux, occupied, fault, minute_of_day=minute)
        print(json.dumps([level, ramp, policy.state]))
"""


def run(mpy: Callable[..., list], folder: Path, steps: list, **policy) -> list:
    (folder / "steps.txt").write_text("".join(json.dumps(s) + "\n" for s in steps))
    return mpy(RUN % json.dumps(policy))


def levels(rows: list) -> list[int]:
    return [row[0] for row in rows]


def seconds(start_s: int, count: int, lux, occupied=False, fault=False, minute=None) -> list:
    """One step per second from start_s."""
    return [[(start_s + i) * 1000, lux, occupied, fault, minute] for i in range(count)]


def test_day_is_off_and_night_dims_when_empty_and_is_full_on_presence(mpy, tmp_path):
    steps = (
        seconds(0, 60, 5000.0)
        + seconds(60, 120, 5.0)
        + seconds(180, 10, 5.0, occupied=True)
        + seconds(190, 30, 5.0)
    )
    rows = run(mpy, tmp_path, steps)
    assert set(levels(rows[:60])) == {0}
    assert rows[59][2] == "day"
    assert rows[179][:1] == [30] and rows[179][2] == "night"  # dark for 2 min: dimmed
    assert set(levels(rows[180:190])) == {100}
    assert rows[180][1] == 1000  # ramp up fast on presence
    assert set(levels(rows[190:])) == {30}
    assert rows[190][1] == 10000  # ramp down slowly


def test_dusk_needs_the_light_to_stay_low_for_the_confirmation_time(mpy, tmp_path):
    steps = seconds(0, 10, 500.0) + seconds(10, 60, 10.0)
    rows = run(mpy, tmp_path, steps, confirm_ms=30000)
    night_from = next(i for i, row in enumerate(rows) if row[2] == "night")
    assert night_from == 10 + 30  # 30 s after lux first fell below dusk_lux


def test_no_flapping_while_the_light_wanders_between_the_thresholds(mpy, tmp_path):
    rng = random.Random(5)
    # lux drifts down through dusk with noise of +-8 lux around the thresholds
    steps = []
    for i in range(1800):
        base = 80.0 - i * 0.05
        steps.append([i * 1000, max(0.0, base + rng.uniform(-8.0, 8.0)), False, False, None])
    rows = run(mpy, tmp_path, steps)
    states = [row[2] for row in rows]
    changes = sum(1 for a, b in zip(states, states[1:], strict=False) if a != b)
    assert changes == 1  # exactly one switch from day to night
    assert states[-1] == "night"


def test_headlights_passing_at_night_do_not_switch_the_lamp_off(mpy, tmp_path):
    steps = seconds(0, 120, 4.0) + seconds(120, 8, 800.0) + seconds(128, 60, 4.0)
    rows = run(mpy, tmp_path, steps)
    assert set(levels(rows[5:])) == {30}
    assert {row[2] for row in rows} == {"night"}


def test_sensor_fault_gives_full_light_by_day_and_by_night(mpy, tmp_path):
    steps = (
        seconds(0, 60, 5000.0)
        + seconds(60, 10, 5000.0, fault=True)
        + seconds(70, 10, None)  # the light sensor itself is gone
        + seconds(80, 60, 5000.0)
        + seconds(140, 60, 3.0)
        + seconds(200, 10, 3.0, fault=True)
    )
    rows = run(mpy, tmp_path, steps)
    assert set(levels(rows[60:80])) == {100}
    assert levels(rows)[139] == 0  # recovered: day again
    assert levels(rows)[199] == 30
    assert set(levels(rows[200:210])) == {100}


def test_before_any_light_reading_the_lamp_is_full(mpy, tmp_path):
    rows = run(mpy, tmp_path, seconds(0, 5, None))
    assert set(levels(rows)) == {100}


OVERRIDE = """
import json
from algorithms.dimming import DimmingPolicy
p = DimmingPolicy()
out = []
out.append(p.decide(0, 5000.0, False, False)[0])         # day: off
p.set_override(80, 10000)
out.append(p.decide(1000, 5000.0, False, False)[0])      # override wins by day
out.append(p.decide(10000, 5000.0, False, False)[0])     # expired: off again
p.set_override(0)
out.append(p.decide(11000, 3.0, True, False)[0])         # operator off at night, even occupied
out.append(p.decide(12000, None, False, False)[0])       # ...but a fault still lights: fail lit
out.append(p.decide(13000, 3.0, False, True)[0])
p.set_override(50)
out.append(p.decide(14000, 3.0, False, True)[0])         # a non-zero override holds in a fault
p.clear_override()
out.append(p.decide(60000, 3.0, False, False)[0])        # dark since 11 s: night, empty: dim
try:
    p.set_override(101)
    out.append("accepted")
except ValueError:
    out.append("refused")
print(json.dumps(out))
"""


def test_operator_override_wins_except_switching_off_during_a_fault(mpy):
    assert mpy(OVERRIDE)[0] == [0, 80, 0, 0, 100, 100, 50, 30, "refused"]


def test_schedule_sets_the_empty_street_level_inside_its_window(mpy, tmp_path):
    schedule = [[60, 300, 10], [1380, 30, 50]]  # 01:00-05:00 at 10 %, 23:00-00:30 at 50 %
    steps = [
        [0, 3.0, False, False, 22 * 60],  # dark: night at once
        [1000, 3.0, False, False, 23 * 60 + 30],  # inside the window that wraps midnight
        [2000, 3.0, False, False, 15],
        [3000, 3.0, False, False, 45],  # between windows: plain dim level
        [4000, 3.0, False, False, 120],
        [5000, 3.0, True, False, 121],  # presence still means full
        [6000, 3.0, False, False, 300],  # end is exclusive
        [7000, 3.0, False, False, None],  # no clock: schedule ignored
    ]
    rows = run(mpy, tmp_path, steps, schedule=schedule)
    assert levels(rows) == [30, 50, 50, 30, 10, 100, 30, 30]


def minute_lux(minute: int, rng: random.Random) -> float:
    """A late-November day: sunrise 07:30, sunset 16:30, street light spill at night."""
    sunrise, sunset = 7 * 60 + 30, 16 * 60 + 30
    if sunrise <= minute <= sunset:
        daylight = 15000.0 * math.sin(math.pi * (minute - sunrise) / (sunset - sunrise))
    else:
        daylight = 0.0
    return max(0.0, daylight + 3.0 + rng.uniform(-1.0, 1.0))


RUN_DAY = """
import json
from algorithms.dimming import DimmingPolicy, energy_wh
from algorithms.occupancy import Occupancy
policy = DimmingPolicy(schedule=[[60, 300, 10]])
occ = Occupancy(debounce_ms=200, hold_ms=30000)
used = 0.0
always_on = 0.0
with open("day.txt") as src:
    for line in src:
        minute, lux, radar = json.loads(line)
        now = minute * 60000
        occupied = occ.update(now, 0, radar)
        level, ramp = policy.decide(now, lux, occupied, lux is None, minute_of_day=minute)
        used += energy_wh(level, 60000, 60.0)
        if policy.state == "night" or lux is None:
            always_on += energy_wh(100, 60000, 60.0)
        print(json.dumps([minute, level]))
print(json.dumps([used, always_on, occ.take_count()]))
"""


def test_a_simulated_day_with_pedestrians_headlights_and_a_sensor_fault(mpy, tmp_path):
    rng = random.Random(2026)
    pedestrians = {18 * 60 + 30, 23 * 60 + 15, 2 * 60 + 40, 6 * 60 + 10}
    headlights = {21 * 60 + 5, 21 * 60 + 40}
    fault = set(range(13 * 60, 13 * 60 + 5))
    lines = []
    for minute in range(1440):
        lux: float | None = minute_lux(minute, rng)
        if minute in headlights:
            lux = 900.0
        if minute in fault:
            lux = None
        lines.append(json.dumps([minute, lux, minute in pedestrians]) + "\n")
    (tmp_path / "day.txt").write_text("".join(lines))
    *rows, (used_wh, night_wh, events) = mpy(RUN_DAY)
    level_at = dict(rows)

    def at(hour: int, minute: int = 0) -> int:
        return level_at[hour * 60 + minute]

    assert at(0) == 30  # night, empty street: dimmed
    assert at(2, 0) == 10 and at(4, 30) == 10  # the 01:00-05:00 schedule
    assert at(2, 40) == 100  # a late walker gets full light
    assert at(6, 10) == 100 and at(6, 11) == 30  # early commuter, then dim again
    assert at(10) == 0 and at(12) == 0 and at(15) == 0  # daytime: off
    assert at(13, 2) == 100  # light sensor failed at midday: fail lit
    assert at(13, 10) == 0  # it came back
    assert at(17) == 30  # after dusk
    assert at(18, 30) == 100 and at(18, 32) == 30
    assert at(21, 5) == 30 and at(21, 6) == 30  # passing headlights ignored
    assert at(23, 15) == 100
    assert events == len(pedestrians)
    saving = 1 - used_wh / night_wh
    print(f"dimming used {used_wh:.0f} Wh against {night_wh:.0f} Wh always on ({saving:.0%} saved)")
    assert 0.6 < saving < 0.8


ENERGY = """
import json
from algorithms.dimming import energy_wh
print(json.dumps([energy_wh(100, 3600000, 60.0), energy_wh(30, 1800000, 60.0),
                  energy_wh(0, 3600000, 60.0)]))
"""


def test_energy_is_linear_in_level_and_time(mpy):
    full_hour, dim_half_hour, off = mpy(ENERGY)[0]
    assert full_hour == 60.0
    assert abs(dim_half_hour - 9.0) < 1e-9
    assert off == 0.0
