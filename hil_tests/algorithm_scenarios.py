"""Input sequences for filters, occupancy and dimming, and the calls that feed them to a runner."""

from __future__ import annotations

import functools
import json
import math
import random
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hil_tests import device_drivers as drv
from hil_tests.backends.base import FIRMWARE_LIB

SAMPLE = tuple[Any, ...]  # the inputs behind one output line, for messages and margin checks


@dataclass
class Scenario:
    """Modules to load, then code runs; `samples[i]` describes the inputs of run i's lines."""

    name: str
    modules: tuple[str, ...]
    runs: list[str] = field(default_factory=list)
    checked: list[bool] = field(default_factory=list)  # send with Board.exec_checked
    samples: list[list[SAMPLE]] = field(default_factory=list)

    def add(self, code: str, samples: list[SAMPLE] | None = None) -> None:
        """A data batch (checked on the board by _ok)."""
        self.runs.append(code)
        self.checked.append(False)
        self.samples.append(samples or [])

    def define(self, code: str) -> None:
        """A definition or a setting: must arrive intact, so it is sent echo-checked."""
        self.runs.append(code)
        self.checked.append(True)
        self.samples.append([])


_DEFAULTS_CODE = "import json\nfrom core import config\nprint(json.dumps(config.DEFAULTS))"


@functools.cache
def _firmware_defaults_json() -> str:
    from tests.rigs.micropython import run_micropython

    with tempfile.TemporaryDirectory() as tmp:
        out = run_micropython(_DEFAULTS_CODE, path_dirs=[FIRMWARE_LIB], cwd=Path(tmp))
    return out.stdout.strip().splitlines()[-1]


def firmware_defaults() -> dict[str, Any]:
    """config.DEFAULTS of firmware/lib/core/config.py, as MicroPython itself evaluates them."""
    return json.loads(_firmware_defaults_json())


def batch_args(batch: list[Any]) -> str:
    """`batch, length, checksum` as the drivers' _ok expects them (see device_drivers)."""
    check = len(batch)
    for v in batch:
        check = (check * 31 + (7 if v is None else v)) % 65521
    return f"{batch!r}, {len(batch)}, {check}"


def _grid(value: float) -> int:
    # Inputs go to the board as n / 256: exact in float32 and double alike.
    return round(value * 256)


# ---------------------------------------------------------------- filters


@dataclass(frozen=True)
class FilterSignal:
    """One metric's raw samples (n / 256, None = failed read) and its filter settings."""

    metric: str
    period_ms: int
    samples: list[int | None]


def _with_gaps(rng: random.Random, samples: list[int | None], rate: float) -> list[int | None]:
    return [None if rng.random() < rate else n for n in samples]


def temperature_signal(rng: random.Random) -> FilterSignal:
    """Slow sine with sensor noise, isolated spikes, a 2-sample burst, a step, failed reads."""
    values = []
    for i in range(360):
        v = 17.0 + 3.0 * math.sin(i / 60.0) + rng.gauss(0.0, 0.05)
        if i >= 220:
            v += 4.0  # a genuine step (a heater switched on): followed after 3 samples
        if rng.random() < 0.04:
            v += rng.choice((-1.0, 1.0)) * rng.uniform(3.0, 10.0)
        values.append(v)
    for i in (100, 101):  # a burst of window // 2 samples: still rejected
        values[i] += 8.0
    samples = [_grid(v) for v in values]
    return FilterSignal("temperature_c", 10_000, _with_gaps(rng, samples, 0.02))


def humidity_signal(rng: random.Random) -> FilterSignal:
    """Noisy humidity, then a perfectly flat stretch where only the heartbeat reports."""
    values = [55.0 + 5.0 * math.sin(i / 40.0) + rng.gauss(0.0, 0.8) for i in range(200)]
    values += [61.25] * 130  # 130 x 10 s: longer than the 900 s heartbeat
    values += [61.25 + rng.gauss(0.0, 0.8) for _ in range(40)]
    return FilterSignal("humidity_pct", 10_000, [_grid(v) for v in values])


def pm25_signal(rng: random.Random) -> FilterSignal:
    """Whole µg/m³ (a PMS5003 reports integers): flat runs, steps, single and double bursts."""
    values: list[float] = []
    level = 12
    for i in range(300):
        if i in (80, 190):
            level = 30 if level == 12 else 8
        v = level + rng.choice((-1, 0, 0, 0, 1))
        if rng.random() < 0.03:
            v += rng.randint(40, 120)
        values.append(float(v))
    values[150] += 90.0
    values[151] += 85.0
    return FilterSignal("pm25_ugm3", 30_000, _with_gaps(rng, [_grid(v) for v in values], 0.01))


def lux_signal(rng: random.Random) -> FilterSignal:
    """Dawn: lux rising a thousandfold with 3 % noise, headlight flashes, failed reads."""
    values = []
    for i in range(360):
        v = 0.5 * math.exp(i / 45.0)
        v = min(v, 3000.0) * (1.0 + rng.gauss(0.0, 0.03))
        if rng.random() < 0.03:
            v += rng.uniform(150.0, 600.0)
        values.append(max(v, 0.0))
    return FilterSignal("lux", 2_000, _with_gaps(rng, [_grid(v) for v in values], 0.02))


def filter_signals(seed: int = 8) -> list[FilterSignal]:
    rng = random.Random(seed)
    signals = [temperature_signal(rng), humidity_signal(rng), pm25_signal(rng), lux_signal(rng)]
    for signal in signals:  # n / 256 must be exact in the micro:bit's 22-bit significand
        assert all(n is None or abs(n) < 2**21 for n in signal.samples), signal.metric
    return signals


def filter_scenario(batch: int = 24, seed: int = 8) -> Scenario:
    """Every signal through MetricPipeline (and a bare SpikeFilter) with the node's defaults."""
    metrics = firmware_defaults()["metrics"]
    scenario = Scenario("filters", ("filters",))
    for code in drv.PRELUDE:
        scenario.define(code)
    scenario.define(drv.FILTER_SETUP)
    scenario.define(drv.FILTER_RUN)
    for signal in filter_signals(seed):
        cfg = metrics[signal.metric]
        scenario.define(f"_fset({cfg!r})")
        for start in range(0, len(signal.samples), batch):
            chunk = signal.samples[start : start + batch]
            t0 = start * signal.period_ms
            scenario.add(
                f"_frun({batch_args([t0, signal.period_ms, *chunk])})",
                [(signal.metric, start + j, n) for j, n in enumerate(chunk)],
            )
    return scenario


# ---------------------------------------------------------------- occupancy

_DTS = (20, 50, 100, 150, 199, 200, 201, 250, 400, 1000)


def occupancy_inputs(seed: int = 8, count: int = 2400) -> list[tuple[int, int, bool | None]]:
    """(dt_ms, pir, radar) samples: people passing, PIR glitches, radar faults, long gaps."""
    rng = random.Random(seed)
    out: list[tuple[int, int, bool | None]] = []
    present_left = 0
    radar_fault_left = 0
    for _ in range(count):
        dt = rng.choice(_DTS)
        if rng.random() < 0.03:
            dt = rng.choice((5_000, 15_000, 29_999, 30_000, 30_001, 45_000))
        if present_left <= 0 and rng.random() < 0.04:
            present_left = rng.randint(3, 40)
        if radar_fault_left <= 0 and rng.random() < 0.005:
            radar_fault_left = rng.randint(20, 120)
        present = present_left > 0
        present_left -= 1
        pir = 1 if present and rng.random() < 0.85 else 0
        if rng.random() < 0.04:
            pir ^= 1  # a glitch, usually shorter than the debounce
        radar: bool | None = present and rng.random() < 0.7
        if not present and rng.random() < 0.01:
            radar = True  # the radar sees someone the PIR misses
        if radar_fault_left > 0:
            radar = None
            radar_fault_left -= 1
        out.append((dt, pir, radar))
    return out


def occupancy_scenario(batch: int = 60, seed: int = 8) -> Scenario:
    """The PIR/radar sequence through Occupancy with the node's debounce and hold."""
    cfg = firmware_defaults()["occupancy"]
    scenario = Scenario("occupancy", ("occupancy",))
    for code in drv.PRELUDE:
        scenario.define(code)
    scenario.define(drv.OCCUPANCY_SETUP)
    scenario.define(drv.OCCUPANCY_RUN)
    scenario.define(f"_oset({cfg['debounce_ms']}, {cfg['hold_ms']})")
    inputs = occupancy_inputs(seed)
    for start in range(0, len(inputs), batch):
        chunk = inputs[start : start + batch]
        flat: list[int] = []
        for dt, pir, radar in chunk:
            flat += [dt, pir + 2 * (2 if radar is None else int(radar))]
        samples: list[SAMPLE] = [(start + j, *s) for j, s in enumerate(chunk)]
        scenario.add(f"_orun({batch_args(flat)})", samples + [("count",)])
    return scenario


# ---------------------------------------------------------------- a day of dimming

DAY_STEP_MS = 20_000
DAY_BATCH = 27  # 9 minutes of samples per run (overrides start on a run boundary)
LAMP_RATED_W = 60.0
DAY_SCHEDULE = [(60, 300, 20)]  # 01:00-05:00: empty street at 20 %
DAY_LUX_FAULT = (130, 145)  # minutes: the light sensor returns nothing 02:10-02:25
DAY_OTHER_FAULT = (1380, 1385)  # minutes: another sensor reports a fault 23:00-23:05
DAY_RADAR_FAULT = (180, 240)  # minutes: radar faulty 03:00-04:00
# (minute, level, minutes): operator overrides applied at a batch boundary
DAY_OVERRIDES = [(135, 0, 5), (1260, 50, 30)]


def _daylight(minute: float, rng: random.Random) -> float:
    if minute < 390 or minute >= 1110:  # night, with a little sky glow
        return max(0.0, 0.6 + rng.gauss(0.0, 0.3))
    if minute < 480:  # dawn 06:30-08:00
        return 1.0 * math.exp((minute - 390) / 11.2) + rng.gauss(0.0, 8.0)
    if minute < 1020:  # day, with a storm darkening it to between the thresholds
        if 840 <= minute < 850:
            return 45.0 + rng.gauss(0.0, 3.0)
        return 3000.0 + 12000.0 * math.sin(math.pi * (minute - 480) / 540) * rng.uniform(0.9, 1)
    return 3000.0 * math.exp(-(minute - 1020) / 11.0) + rng.gauss(0.0, 8.0)  # dusk


def _in(window: tuple[int, int], minute: float) -> bool:
    return window[0] <= minute < window[1]


def day_inputs(seed: int = 8) -> list[int]:
    """lux16 * 16 + flags every 20 s for 24 h: see device_drivers.DAY_RUN for the encoding."""
    rng = random.Random(seed)
    samples = 24 * 3600 * 1000 // DAY_STEP_MS
    out: list[int] = []
    walk_left = 0
    for i in range(samples):
        minute = i * DAY_STEP_MS / 60000
        lux = max(0.0, _daylight(minute, rng))
        if (minute < 390 or minute >= 1110) and rng.random() < 0.01:
            lux += rng.uniform(80.0, 200.0)  # headlights for one sample (20 s < confirm)
        if walk_left <= 0 and rng.random() < 0.06:
            walk_left = rng.randint(2, 9)  # someone walks past for 40 s - 3 min
        walking = walk_left > 0
        walk_left -= 1
        flags = 0
        if walking and rng.random() < 0.9:
            flags |= 1
        if walking and rng.random() < 0.8:
            flags |= 2
        if _in(DAY_OTHER_FAULT, minute):
            flags |= 4
        if _in(DAY_RADAR_FAULT, minute):
            flags = (flags & ~2) | 8
        lux16 = -1 if _in(DAY_LUX_FAULT, minute) else round(lux * 16)
        out.append(lux16 * 16 + flags)
    return out


def dimming_day_scenario(seed: int = 8) -> Scenario:
    """24 h of light and pedestrians through Occupancy + DimmingPolicy, faults, overrides."""
    defaults = firmware_defaults()
    scenario = Scenario("dimming day", ("occupancy", "dimming"))
    scenario.define(drv.BATCH_CHECK)
    scenario.define(drv.DAY_SETUP)
    scenario.define(drv.DAY_STEP)
    scenario.define(drv.DAY_RUN)
    occ = defaults["occupancy"]
    scenario.define(
        f"_dset({defaults['dimming']!r}, {DAY_SCHEDULE!r}, {occ['debounce_ms']}, "
        f"{occ['hold_ms']}, {LAMP_RATED_W!r})"
    )
    overrides = {minute * 60000 // DAY_STEP_MS: (level, span) for minute, level, span in
                 DAY_OVERRIDES}
    inputs = day_inputs(seed)
    for start in range(0, len(inputs), DAY_BATCH):
        if start in overrides:
            level, span = overrides[start]
            until = start * DAY_STEP_MS + span * 60000
            scenario.define(f"_dp.set_override({level}, {until})")
        chunk = inputs[start : start + DAY_BATCH]
        scenario.add(
            f"_drun({batch_args([start, DAY_STEP_MS, *chunk])})",
            [("batch", start, len(chunk))],
        )
    return scenario
