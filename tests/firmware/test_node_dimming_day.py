"""A simulated 24 h on the full node (boot.py + main.py on MicroPython) with pedestrians and faults.

Everything is asserted from the world's record of the lamp's PWM duty.
"""

import pytest

from tools.emulator.launcher import Launcher
from tools.emulator.scenario import Fault, Scenario

H = 3600.0
DIM, FULL = 30, 100  # the default configuration's levels
HOLD_S, RAMP_DOWN_S = 30, 10
NIGHT_FAULT = (10 * H, 10.5 * H)  # 22:00-22:30: the light sensor drops off the bus
DAY_FAULT = (22 * H, 22.3 * H)  # 10:00-10:18: the radar goes silent


# A whole emulated day (about a minute and a half): CI runs it, `make test-fast` leaves it out.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    scenario = Scenario(seed=7, faults=[Fault("veml7700", "missing", *NIGHT_FAULT),
                                        Fault("ld2410", "silent", *DAY_FAULT)])
    flash = tmp_path_factory.mktemp("node") / "flash"
    launcher = Launcher(flash, scenario, end_ms=int(24 * H * 1000),
                        config={"sample_period_ms": {"occupancy": 500}})
    with launcher:
        assert launcher.wait_done(timeout=280), "the simulated day did not finish in time"
    return scenario, launcher


def _level(launcher, t_s):
    return launcher.world.records.lamp_level_at(int(t_s * 1000))


def _inside(t, window, margin=0.0):
    return window[0] + margin <= t <= window[1]


def test_off_by_day(day):
    scenario, launcher = day
    checked = 0
    for minute in range(2, 24 * 60):
        t = minute * 60.0
        if scenario.lux(t) > 200 and scenario.lux(t - 120) > 200 and not _inside(t, DAY_FAULT):
            assert _level(launcher, t) == 0, f"lamp lit by day at {t / H:.2f} h"
            checked += 1
    assert checked > 400


def test_dimmed_when_the_street_is_empty_at_night(day):
    scenario, launcher = day
    spans = scenario.presence_spans(0, 24 * H, scenario.radar_reach_m)
    checked = 0
    for minute in range(0, 24 * 60):
        t = minute * 60.0 + 17.0
        if scenario.lux(t - 300) > 5 or scenario.lux(t) > 5 or _inside(t, NIGHT_FAULT):
            continue
        quiet_since = t - HOLD_S - RAMP_DOWN_S - 3
        if any(lo <= t and hi >= quiet_since for lo, hi in spans):
            continue
        assert abs(_level(launcher, t) - DIM) < 0.01, f"not dimmed at {t / H:.2f} h"
        checked += 1
    assert checked > 100


def test_full_on_presence_at_night(day):
    scenario, launcher = day
    checked = 0
    for lo, _hi in scenario.presence_spans(0, 24 * H, scenario.radar_reach_m):
        if scenario.lux(lo - 300) > 5 or scenario.lux(lo) > 5 or _inside(lo, NIGHT_FAULT):
            continue
        assert _level(launcher, lo + 3.0) == FULL, f"not lit for a pedestrian at {lo / H:.2f} h"
        checked += 1
    assert checked > 20


def test_full_on_sensor_fault_by_night_and_by_day(day):
    _scenario, launcher = day
    for window in (NIGHT_FAULT, DAY_FAULT):
        t = window[0] + 6.0  # detection (radar silence: 3 s) and the 1 s ramp up
        while t < window[1]:
            assert _level(launcher, t) == FULL, f"not fail-lit during a fault at {t / H:.2f} h"
            t += 20.0


def test_the_node_ran_the_whole_day_without_rebooting(day):
    _scenario, launcher = day
    assert [cause for _, cause in launcher.world.records.boots] == ["power_on"]
    faults = launcher.world.records.checkins[-1][1]["sensor_faults"]
    assert faults["veml7700"] >= 1 and faults["ld2410"] >= 1 and faults["controller"] == 0
