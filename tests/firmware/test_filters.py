"""Spike rejection, smoothing and report-on-change, run on MicroPython against known signals."""

from __future__ import annotations

import json
import random
import statistics
from collections.abc import Callable
from pathlib import Path

# The signal is streamed from a file one sample per line, so the device holds no big lists.
RUN_SPIKE_FILTER = """
import json
from algorithms.filters import SpikeFilter
f = SpikeFilter(window=%d, k=3.0, min_mad=%r)
with open("signal.txt") as src:
    for line in src:
        print(json.dumps(f.update(float(line))))
print(json.dumps(f.rejected))
"""


def write_signal(folder: Path, signal: list[float | None]) -> None:
    (folder / "signal.txt").write_text("".join(f"{x!r}\n" for x in signal))


def spike_filter(
    mpy: Callable[..., list],
    folder: Path,
    signal: list[float],
    window: int = 5,
    min_mad: float = 0.01,
) -> tuple[list[float], int]:
    """Run SpikeFilter on the device; return (outputs, rejected count)."""
    write_signal(folder, signal)
    *out, rejected = mpy(RUN_SPIKE_FILTER % (window, min_mad))
    return out, rejected


def test_isolated_and_paired_spikes_are_replaced_by_the_local_level(mpy, tmp_path):
    rng = random.Random(7)
    truth = [20.0 + 0.02 * i for i in range(300)]
    signal = [t + rng.gauss(0.0, 0.1) for t in truth]
    spikes = {40: 15.0, 90: -12.0, 150: 30.0, 151: 28.0, 220: 9.0}  # 150-151: a 2-sample burst
    for i, jump in spikes.items():
        signal[i] += jump
    out, rejected = spike_filter(mpy, tmp_path, signal)
    for i in spikes:
        assert abs(out[i] - truth[i]) < 0.5, (i, out[i], truth[i])
    assert rejected >= len(spikes)
    # ordinary noisy samples are mostly untouched, and any replaced one stays within the noise
    normal = [i for i in range(300) if i not in spikes]
    replaced = [i for i in normal if out[i] != signal[i]]
    print(f"window 5: {len(replaced)} of {len(normal)} noisy samples replaced by the median")
    assert len(replaced) < 0.15 * len(normal)
    assert all(abs(out[i] - truth[i]) < 0.3 for i in replaced)


def test_a_genuine_step_is_followed_within_half_a_window(mpy, tmp_path):
    for window in (5, 7):
        signal = [20.0] * 50 + [25.0] * 30  # flat, then a real step: MAD was zero before it
        out, _ = spike_filter(mpy, tmp_path, signal, window=window)
        lag = window // 2 + 1
        assert all(v == 20.0 for v in out[:50])
        assert out[50 + lag - 1] == 25.0, out[48:60]
        assert all(v == 25.0 for v in out[50 + lag - 1 :])


def test_quantised_flat_signal_keeps_its_small_real_changes(mpy, tmp_path):
    # a PM sensor reports whole ug/m3: a slow drift from 5 to 9 must come through
    signal = [5.0] * 20 + [6.0] * 20 + [7.0] * 20 + [8.0] * 20 + [9.0] * 20
    out, _ = spike_filter(mpy, tmp_path, signal, min_mad=1.0)
    assert out == signal


RUN_PIPELINE = """
import json
from algorithms.filters import MetricPipeline
p = MetricPipeline(spike_window=5, spike_k=3.0, alpha=%r, deadband=%r, heartbeat_ms=%d)
step_ms = %d
with open("signal.txt") as src:
    for i, line in enumerate(src):
        now = i * step_ms
        raw = None if line.strip() == "None" else float(line)
        print(json.dumps([now, p.push(now, raw), p.last]))
"""


def pipeline(
    mpy: Callable[..., list],
    folder: Path,
    signal: list[float | None],
    alpha: float = 0.3,
    deadband: float = 0.2,
    heartbeat_ms: int = 900_000,
    step_ms: int = 1000,
) -> tuple[list[float], list[tuple[int, float]]]:
    """Run MetricPipeline on the device; return (smoothed value per sample, reports)."""
    write_signal(folder, signal)
    rows = mpy(RUN_PIPELINE % (alpha, deadband, heartbeat_ms, step_ms))
    smoothed = [last for _, _, last in rows]
    reports = [(now, value) for now, value, _ in rows if value is not None]
    return smoothed, reports


def test_smoothing_reduces_sensor_noise(mpy, tmp_path):
    rng = random.Random(11)
    truth = 18.0
    signal = [truth + rng.gauss(0.0, 0.3) for _ in range(2000)]
    smoothed, _ = pipeline(mpy, tmp_path, signal, alpha=0.3)
    raw_err = statistics.pstdev([x - truth for x in signal[100:]])
    smooth_err = statistics.pstdev([x - truth for x in smoothed[100:]])
    ratio = smooth_err / raw_err
    print(f"noise std raw {raw_err:.3f} -> smoothed {smooth_err:.3f} (x{ratio:.2f})")
    # an EMA with alpha 0.3 should leave about sqrt(0.3 / 1.7) = 0.42 of white noise
    assert 0.3 < ratio < 0.5


def test_reports_only_on_deadband_crossing_or_heartbeat(mpy, tmp_path):
    # slow ramp of 0.01 per second: crosses a 0.2 deadband roughly every 20 s
    signal = [10.0 + 0.01 * i for i in range(200)] + [12.0] * 400
    _, reports = pipeline(mpy, tmp_path, signal, alpha=1.0, deadband=0.2, heartbeat_ms=120_000)
    times = [t for t, _ in reports]
    values = [v for _, v in reports]
    assert times[0] == 0  # the first value always reports
    for (t0, v0), (t1, v1) in zip(reports, reports[1:], strict=False):
        moved = abs(v1 - v0)
        waited = t1 - t0
        assert moved > 0.2 or waited >= 120_000, (t0, v0, t1, v1)
    # during the ramp each report is a deadband crossing, not more often
    ramp_reports = [t for t in times if t < 200_000]
    assert 9 <= len(ramp_reports) <= 11
    # once flat at 12.0 only heartbeats remain: one every 120 s
    flat_reports = [t for t in times if t >= 210_000]
    assert len(flat_reports) == 3
    gaps = [b - a for a, b in zip(flat_reports, flat_reports[1:], strict=False)]
    assert all(g == 120_000 for g in gaps)
    assert abs(values[-1] - 12.0) < 1e-6


def test_failed_reads_are_ignored_without_disturbing_the_filter(mpy, tmp_path):
    rng = random.Random(3)
    signal = [50.0 + rng.gauss(0.0, 2.0) for _ in range(100)]
    with_gaps: list[float | None] = []
    for x in signal:
        with_gaps.append(x)
        if rng.random() < 0.3:
            with_gaps.append(None)
    plain, _ = pipeline(mpy, tmp_path, signal)
    gappy, _ = pipeline(mpy, tmp_path, with_gaps)
    # the smoothed value after each real sample is identical with or without failed reads
    gappy_after_real = [gappy[i] for i, x in enumerate(with_gaps) if x is not None]
    assert gappy_after_real == plain


def test_every_configured_metric_builds_a_working_pipeline(mpy):
    code = """
import json
from core.config import DEFAULTS
from algorithms.filters import pipeline_from_config
out = {}
for name, cfg in DEFAULTS["metrics"].items():
    p = pipeline_from_config(cfg)
    first = p.push(0, 10.0)
    quiet = p.push(1000, 10.0)
    beat = p.push(cfg["heartbeat_s"] * 1000, 10.0)
    out[name] = [first, quiet, beat]
print(json.dumps(out))
"""
    out = mpy(code)[0]
    assert set(out) == {
        "temperature_c",
        "humidity_pct",
        "pressure_hpa",
        "pm25_ugm3",
        "pm10_ugm3",
        "lux",
    }
    for name, (first, quiet, beat) in out.items():
        assert (first, quiet, beat) == (10.0, None, 10.0), name


RELATIVE = """
import json
from algorithms.filters import ReportOnChange
r = ReportOnChange(2.0, 900000, deadband_rel=0.1)
out = []
for now, value in json.loads(%r):
    out.append(r.check(now, value))
print(json.dumps(out))
"""


def test_relative_deadband_scales_with_the_reported_value(mpy):
    steps = [
        (0, 1000.0),  # first: reported
        (1, 1050.0),  # 5 % of 1000: inside the 10 % band
        (2, 1120.0),  # 12 %: reported
        (3, 10.0),  # big fall: reported
        (4, 11.5),  # 1.5 lux: inside the absolute 2 lux floor
        (5, 12.5),  # 2.5 lux: reported
    ]
    assert mpy(RELATIVE % json.dumps(steps))[0] == [True, False, True, True, False, True]
