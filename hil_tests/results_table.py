"""Pytest plugin: after a run, a table of HIL scenarios, backends, results and recorded figures."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

HIL_DIR = Path(__file__).resolve().parent
NOT_SCENARIOS = {"test_harness.py"}  # the harness's own host tests stay out of the table
FILE_BACKENDS = {"test_fleet_scenarios.py": "unix"}  # files not parametrized over a board


@dataclass
class Row:
    """One test: its scenario, backend, outcome and the figures it recorded."""

    scenario: str
    backend: str
    result: str = "passed"
    duration_s: float = 0.0
    figures: list[tuple[str, Any]] = field(default_factory=list)


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def _format_figure(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


class HilResultsTable:
    """Collects the reports of tests under hil_tests/ and prints them as one table."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.rows: dict[str, Row] = {}

    def _row(self, item_or_report: Any) -> Row | None:
        path = Path(str(item_or_report.fspath)).resolve()
        if HIL_DIR not in path.parents or path.name in NOT_SCENARIOS:
            return None
        nodeid = item_or_report.nodeid
        if nodeid not in self.rows:
            name, _, param = nodeid.split("::")[-1].partition("[")
            param = param.rstrip("]")
            if path.name in FILE_BACKENDS:  # parametrised, if at all, by the server's database
                backend = FILE_BACKENDS[path.name] + (f" + {param}" if param else "")
            else:
                backend = param or "host"
            self.rows[nodeid] = Row(name.removeprefix("test_"), backend)
        return self.rows[nodeid]

    @pytest.hookimpl
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        row = self._row(report)
        if row is None:
            return
        row.duration_s += report.duration
        if report.when == "call":
            row.figures = list(report.user_properties)
        if report.skipped:
            row.result = f"skipped: {_skip_reason(report)}"
        elif report.failed:
            row.result = "failed" if report.when == "call" else f"error in {report.when}"

    @pytest.hookimpl
    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.rows:
            return
        headers = ("scenario", "backend", "result", "time", "figures")
        table = [
            (r.scenario, r.backend, r.result, f"{r.duration_s:.1f}s",
             ", ".join(f"{k}={_format_figure(v)}" for k, v in r.figures))
            for r in self.rows.values()
        ]
        widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(headers[:4])]
        terminalreporter.section("HIL results")
        fmt = "  ".join(f"{{:<{w}}}" for w in widths) + "  {}"
        terminalreporter.write_line(fmt.format(*headers))
        for row in table:
            terminalreporter.write_line(fmt.format(*row))
