"""Scenario 8: filters, occupancy and dimming give the host's decisions on bare metal."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from hil_tests.algorithm_scenarios import (
    Scenario,
    dimming_day_scenario,
    filter_scenario,
    filter_signals,
    firmware_defaults,
    occupancy_scenario,
)
from hil_tests.backends import Board
from hil_tests.comparison import (
    REL_TOL,
    Comparison,
    compare_exact,
    compare_filters,
    parse_float,
    parse_micro,
    report_margins,
    spike_margins,
)
from hil_tests.host_reference import run_on_host

Record = Callable[[str, Any], None]
ALGORITHM_MODULES = ("filters", "occupancy", "dimming")


def run_on_board(board: Board, scenario: Scenario, record: Record) -> list[str]:
    """Fresh interpreter, the scenario's modules (free heap recorded after each), its runs."""
    board.reset()
    for module in scenario.modules:
        board.load_module(module)
        free = board.mem_free()
        print(f"{board.name}: {free} bytes free after loading {module}")
        record(f"heap_after_{module}", free)
    resent_before = getattr(board, "resends", 0)
    started = time.monotonic()
    outputs = [
        board.exec_checked(code, timeout=60) if checked else board.exec(code, timeout=60)
        for code, checked in zip(scenario.runs, scenario.checked, strict=True)
    ]
    record("board_run_s", round(time.monotonic() - started, 1))
    record("resent", getattr(board, "resends", 0) - resent_before)
    return outputs


def test_each_module_loads_on_its_own(board: Board, hil_record: Record) -> None:
    """Every algorithm module compiles on the board one definition at a time; heap reported."""
    board.reset()
    boot_free = board.mem_free()
    print(f"{board.name}: {boot_free} bytes free after a soft reset")
    hil_record("heap_at_boot", boot_free)
    for module in ALGORITHM_MODULES:
        board.reset()
        defined = board.load_module(module)
        free = board.mem_free()
        print(f"{board.name}: {free} bytes free after loading {module} ({', '.join(defined)})")
        hil_record(f"heap_after_{module}", free)
        assert free < boot_free, f"loading {module} took no heap: nothing was defined?"


def _filter_host_trace(host_out: list[str], scenario: Scenario) -> dict[str, dict[str, list]]:
    trace: dict[str, dict[str, list]] = {}
    for samples, text in zip(scenario.samples, host_out, strict=True):
        for sample, line in zip(samples, text.split("\n"), strict=False):
            metric, _, n = sample
            fields = line.split()
            entry = trace.setdefault(metric, {"values": [], "reported": []})
            entry["values"].append(None if n is None else parse_float(fields[3]))
            entry["reported"].append(fields[2] == "1")
    return trace


def test_filter_inputs_are_well_conditioned(hil_record: Record) -> None:
    """No spike or report decision in the inputs sits within float32 rounding of its threshold.

    Otherwise a board-host difference there would be rounding, not a fault; this keeps the
    exact comparison of decisions meaningful.
    """
    metrics = firmware_defaults()["metrics"]
    scenario = filter_scenario()
    trace = _filter_host_trace(run_on_host(scenario), scenario)
    worst_spike = worst_report = float("inf")
    for signal in filter_signals():
        cfg = metrics[signal.metric]
        spikes = spike_margins(signal.samples, cfg["window"], cfg["k"], cfg["min_mad"])
        worst_spike = min(worst_spike, *spikes)
        times = [i * signal.period_ms for i in range(len(signal.samples))]
        entry = trace[signal.metric]
        reports = report_margins(entry["values"], times, entry["reported"], cfg["deadband"],
                                 cfg["deadband_rel"], int(cfg["heartbeat_s"] * 1000))
        worst_report = min(worst_report, *reports)
    hil_record("min_spike_margin_rel", worst_spike)
    hil_record("min_report_margin_x_tol", worst_report)
    assert worst_spike > REL_TOL, "a spike decision is within float32 rounding of its threshold"
    assert worst_report > 1.0, "a report decision is within the float tolerance of its deadband"


def test_filters_match_host(board: Board, hil_record: Record) -> None:
    """Spikes, steps, noise, flat stretches and failed reads give the same reports on the board."""
    scenario = filter_scenario()
    host_out = run_on_host(scenario)
    board_out = run_on_board(board, scenario, hil_record)
    result = Comparison()
    compare_filters(board_out, host_out, scenario.samples, result)
    samples = sum(len(s) for s in scenario.samples)
    reports = sum(line.split()[2] == "1" for text in host_out for line in text.splitlines())
    hil_record("samples", samples)
    hil_record("reports", reports)
    hil_record("max_abs_err", result.max_abs_err)
    hil_record("max_rel_err", result.max_rel_err)
    assert not result.mismatches, "board and host differ:\n" + result.summary()
    assert result.floats >= 2 * samples * 0.95, "too few values compared"


def test_occupancy_matches_host(board: Board, hil_record: Record) -> None:
    """PIR glitches, debounce edges, radar-only presence, radar faults: same states and counts."""
    scenario = occupancy_scenario()
    host_out = run_on_host(scenario)
    board_out = run_on_board(board, scenario, hil_record)
    result = Comparison()
    compare_exact(board_out, host_out, result)
    last_count = host_out[-1].strip().splitlines()[-1].split()
    hil_record("samples", sum(len(s) - 1 for s in scenario.samples if s))
    hil_record("presence_events", int(last_count[2]))
    hil_record("decisions", result.decisions)
    assert not result.mismatches, "board and host differ:\n" + result.summary()
    assert int(last_count[2]) > 10, "the sequence should contain many presence events"


def test_dimming_day_matches_host(board: Board, hil_record: Record) -> None:
    """24 h of light and pedestrians: the same lamp level, ramp and day/night at every step."""
    scenario = dimming_day_scenario()
    host_out = run_on_host(scenario)
    board_out = run_on_board(board, scenario, hil_record)
    result = Comparison()
    compare_exact(board_out, host_out, result, float_fields=(1,))
    changes = [line.split() for text in host_out for line in text.splitlines()
               if line and not line.startswith("E")]
    levels = {int(fields[1]) for fields in changes}
    energy = sum(parse_micro(line.split()[1]) for text in host_out
                 for line in text.splitlines() if line.startswith("E"))
    hil_record("level_changes", len(changes))
    hil_record("energy_wh", round(energy, 1))
    hil_record("max_energy_rel_err", result.max_rel_err)
    assert not result.mismatches, "board and host differ:\n" + result.summary()
    # the profile reaches every rule: day off, dim, schedule, override, full on presence/fault
    assert {0, 20, 30, 50, 100} <= levels, f"levels reached: {sorted(levels)}"
