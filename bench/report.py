"""One benchmark figure, compared with its baseline and target, and the table that prints them."""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Console
from rich.table import Table


@dataclass(frozen=True)
class Figure:
    """A measured value beside its same-run baseline and the target it must meet."""

    name: str
    value: float
    unit: str
    baseline: str = ""  # what the value is compared with, e.g. "raw 1 Hz reporting"
    baseline_value: float | None = None
    target: str = ""  # human-readable target, e.g. "≥ 20× fewer bytes"
    met: bool | None = None  # whether the target is met; None when there is no target

    @property
    def ratio(self) -> float | None:
        """value / baseline_value, when a baseline was measured."""
        if self.baseline_value in (None, 0):
            return None
        return self.value / self.baseline_value


def _fmt(value: float | None) -> str:
    if value is None:
        return ""
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def print_figures(title: str, figures: list[Figure], console: Console | None = None) -> None:
    """Print one benchmark's figures as a table."""
    table = Table(title=title, title_justify="left")
    for col in ("figure", "value", "unit", "baseline (same run)", "ratio", "target", "met"):
        table.add_column(col)
    for f in figures:
        ratio = f.ratio
        met = "" if f.met is None else ("yes" if f.met else "NO")
        table.add_row(
            f.name, _fmt(f.value), f.unit,
            f"{f.baseline} {_fmt(f.baseline_value)}".strip(),
            "" if ratio is None else f"{ratio:.3g}×", f.target, met,
        )
    (console or Console()).print(table)
