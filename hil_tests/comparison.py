"""Compare a board's driver output with the host's: decisions exactly, floats within tolerance."""

from __future__ import annotations

import statistics
import struct
from dataclasses import dataclass, field
from typing import Any

# Float tolerance for values computed in single precision on the board and in double on the
# host.
#
# float32 has a 24-bit significand, but the micro:bit build keeps floats inside a tagged
# 32-bit object word and drops the two lowest significand bits (measured: 0.3 is stored as
# 0x3e999998, not 0x3e99999a; 1 + 2**-22 reads back as 1.0). Every stored result therefore
# carries a relative error up to about 2**-21 ~ 4.8e-7, always towards zero. Inputs are sent
# as n / 256 with |n| < 2**21, exact in that format and in double, so the spike filter's
# outputs (a sample or a median of samples) carry no error at all. The EMA
# (v += alpha * (x - v)) stores three results per step, each off by at most 2**-21 of the
# signal's magnitude, and shrinks older errors by (1 - alpha) per step: its error stays
# below 3 * 2**-21 / alpha ~ 4.8e-6 of the signal (alpha 0.3; 2.9e-6 for lux's 0.5).
# energy_wh is four operations: below 4 * 2**-21 ~ 1.9e-6 (printed in whole µWh: +1e-6 Wh).
# REL_TOL = 1e-5 is above every one of these bounds (ESP32 builds keep all 24 bits and sit
# far inside it); ABS_TOL = 1e-4 covers values that pass close to zero, where a relative
# bound means nothing. They are not to be widened: a larger difference means the board
# computes something else.
REL_TOL = 1e-5
ABS_TOL = 1e-4


def tolerance(value: float) -> float:
    return max(ABS_TOL, REL_TOL * abs(value))


def parse_float(token: str) -> float | None:
    """Driver float token ('N' or 'f' + four 16-bit halves of a little-endian double)."""
    if token == "N":
        return None
    if not token.startswith("f"):
        raise ValueError(f"not a float token: {token!r}")
    halves = [int(part, 16) for part in token[1:].split(".")]
    return float(struct.unpack("<d", struct.pack("<HHHH", *halves))[0])


@dataclass
class Comparison:
    """What matched, the largest float differences, and every mismatch found."""

    decisions: int = 0
    floats: int = 0
    max_abs_err: float = 0.0
    max_rel_err: float = 0.0
    mismatches: list[str] = field(default_factory=list)

    def decision(self, where: str, what: str, board: Any, host: Any) -> None:
        self.decisions += 1
        if board != host:
            self.mismatches.append(f"{where}: {what} board={board!r} host={host!r}")

    def value(self, where: str, what: str, board: float | None, host: float | None) -> None:
        if board is None or host is None:
            self.decision(where, f"{what} present", board is None, host is None)
            return
        self.floats += 1
        err = abs(board - host)
        self.max_abs_err = max(self.max_abs_err, err)
        if host != 0:
            self.max_rel_err = max(self.max_rel_err, err / abs(host))
        if err > tolerance(host):
            self.mismatches.append(
                f"{where}: {what} board={board!r} host={host!r} (diff {err:.3g} > "
                f"{tolerance(host):.3g})"
            )

    def summary(self, limit: int = 15) -> str:
        head = "\n".join(self.mismatches[:limit])
        more = len(self.mismatches) - limit
        return head + (f"\n... and {more} more" if more > 0 else "")


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.strip().splitlines() if line.strip()]


def _same_line_count(result: Comparison, where: str, board: list[str], host: list[str]) -> bool:
    if len(board) != len(host):
        result.mismatches.append(
            f"{where}: board printed {len(board)} lines, host {len(host)}; "
            f"board tail {board[-3:]!r}, host tail {host[-3:]!r}"
        )
        return False
    return True


def compare_filters(board_out: list[str], host_out: list[str], samples: list[list[Any]],
                    result: Comparison) -> None:
    """Per sample: spike output (value), spikes replaced and reported (decisions), EMA (value)."""
    for run, (b_text, h_text) in enumerate(zip(board_out, host_out, strict=True)):
        b_lines, h_lines = _lines(b_text), _lines(h_text)
        if not _same_line_count(result, f"run {run}", b_lines, h_lines):
            continue
        for sample, b_line, h_line in zip(samples[run], b_lines, h_lines, strict=True):
            where = f"{sample[0]} sample {sample[1]} (input {sample[2]!r}/256)"
            b, h = b_line.split(), h_line.split()
            result.value(where, "spike filter output", parse_float(b[0]), parse_float(h[0]))
            result.decision(where, "spikes replaced", int(b[1]), int(h[1]))
            result.decision(where, "reported", b[2], h[2])
            result.value(where, "smoothed value", parse_float(b[3]), parse_float(h[3]))


def parse_micro(token: str) -> float:
    """A whole number of millionths (the day driver's µWh) as a float."""
    return int(token) / 1e6


def compare_exact(board_out: list[str], host_out: list[str], result: Comparison,
                  float_fields: tuple[int, ...] = ()) -> None:
    """Line by line: every token equal, except the listed fields of 'E' lines (millionths,
    compared within the float tolerance)."""
    for run, (b_text, h_text) in enumerate(zip(board_out, host_out, strict=True)):
        b_lines, h_lines = _lines(b_text), _lines(h_text)
        if not _same_line_count(result, f"run {run}", b_lines, h_lines):
            continue
        for b_line, h_line in zip(b_lines, h_lines, strict=True):
            b, h = b_line.split(), h_line.split()
            where = f"run {run} line {h_line[:40]!r}"
            if b[:1] == ["E"] and h[:1] == ["E"]:
                for i, (bt, ht) in enumerate(zip(b, h, strict=False)):
                    if i in float_fields:
                        result.value(where, "energy Wh", parse_micro(bt), parse_micro(ht))
                    else:
                        result.decision(where, f"field {i}", bt, ht)
                result.decision(where, "field count", len(b), len(h))
            else:
                result.decision(where, "line", b, h)


# ---------------------------------------------------------------- conditioning of the inputs


def spike_margins(samples: list[int | None], window: int, k: float, min_mad: float) -> list[float]:
    """For each judged sample, |deviation - threshold| / threshold, from the raw inputs alone.

    A decision whose margin is below the float tolerance could go either way in float32;
    the inputs must not contain one, or a board-host difference would prove nothing.
    """
    ring: list[float] = []
    margins = []
    for n in samples:
        if n is None:
            continue
        x = n / 256
        ring = (ring + [x])[-window:]
        if len(ring) < 3:
            continue
        median = statistics.median(ring)
        mad = max(statistics.median([abs(r - median) for r in ring]), min_mad)
        threshold = k * 1.4826 * mad
        margins.append(abs(abs(x - median) - threshold) / threshold)
    return margins


def report_margins(values: list[float | None], times: list[int], reported: list[bool],
                   deadband: float, deadband_rel: float, heartbeat_ms: int) -> list[float]:
    """For each report decision that depended on the deadband, its margin in units of the
    tolerance the two compared values can carry (must exceed 1 to be well-defined)."""
    last: float | None = None
    last_ms = 0
    margins = []
    for value, now, was_reported in zip(values, times, reported, strict=True):
        if value is None:
            continue
        if last is not None and now - last_ms < heartbeat_ms:
            band = max(deadband, deadband_rel * abs(last))
            slack = 2 * tolerance(max(abs(value), abs(last))) + deadband_rel * tolerance(last)
            margins.append(abs(abs(value - last) - band) / slack)
        if was_reported:
            last, last_ms = value, now
    return margins
