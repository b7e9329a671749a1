"""Occupancy fusion on MicroPython: PIR debounce, hold time, presence counts, radar fault."""

from __future__ import annotations

import json
from collections.abc import Callable

STEP_MS = 50

# Each scenario is a list of [pir, radar] per 50 ms step; the device prints, per step,
# [now_ms, occupied] and finally the presence count taken at the end.
RUN = """
import json
from algorithms.occupancy import Occupancy
steps = json.loads(%r)
occ = Occupancy(debounce_ms=200, hold_ms=%d)
for i, (pir, radar) in enumerate(steps):
    print(json.dumps([i * %d, occ.update(i * %d, pir, radar)]))
print(json.dumps([occ.take_count(), occ.take_count()]))
"""


def run(mpy: Callable[..., list], steps: list, hold_ms: int = 2000) -> tuple[list, list]:
    rows = mpy(RUN % (json.dumps(steps), hold_ms, STEP_MS, STEP_MS))
    return rows[:-1], rows[-1]


def span(ms: int, pir: int, radar: bool | None = False) -> list:
    return [[pir, radar]] * (ms // STEP_MS)


def first_occupied(rows: list) -> int | None:
    return next((t for t, occupied in rows if occupied), None)


def last_occupied(rows: list) -> int | None:
    return max((t for t, occupied in rows if occupied), default=None)


def test_short_pir_glitches_are_ignored(mpy):
    steps = span(1000, 0) + span(100, 1) + span(1000, 0) + span(150, 1) + span(2000, 0)
    rows, (count, _) = run(mpy, steps)
    assert first_occupied(rows) is None
    assert count == 0


def test_pir_edge_counts_after_debounce_and_holds(mpy):
    steps = span(1000, 0) + span(3000, 1) + span(5000, 0)
    rows, (count, again) = run(mpy, steps, hold_ms=2000)
    assert first_occupied(rows) == 1000 + 200  # the edge had to persist 200 ms
    # the PIR falls at 4000 ms; its low level is debounced too, so the last evidence is the
    # step before 4200 ms, and the street stays occupied for the 2 s hold after it
    last_evidence = 4200 - STEP_MS
    assert last_occupied(rows) == last_evidence + 2000 - STEP_MS
    assert count == 1 and again == 0  # take_count resets the counter


def test_each_separate_pedestrian_is_one_presence_event(mpy):
    walker = span(1500, 1) + span(4000, 0)  # gaps longer than the 2 s hold
    steps = span(500, 0) + walker * 3
    _, (count, _) = run(mpy, steps, hold_ms=2000)
    assert count == 3


def test_pedestrians_within_the_hold_time_make_one_event(mpy):
    steps = span(500, 0) + span(1000, 1) + span(1000, 0) + span(1000, 1) + span(4000, 0)
    rows, (count, _) = run(mpy, steps, hold_ms=2000)
    assert count == 1
    first = first_occupied(rows)
    last = last_occupied(rows)
    assert first is not None and last is not None
    assert all(occupied for t, occupied in rows if first <= t <= last)


def test_radar_alone_detects_a_still_person_the_pir_misses(mpy):
    steps = span(1000, 0, False) + span(6000, 0, True) + span(4000, 0, False)
    rows, (count, _) = run(mpy, steps, hold_ms=2000)
    assert first_occupied(rows) == 1000  # radar presence is already filtered: no debounce
    last_evidence = 7000 - STEP_MS
    assert last_occupied(rows) == last_evidence + 2000 - STEP_MS
    assert count == 1


def test_faulty_radar_falls_back_to_the_pir(mpy):
    # radar reports None (faulty) the whole time: PIR alone still detects, and None
    # never counts as presence on its own
    steps = span(1000, 0, None) + span(1000, 1, None) + span(5000, 0, None)
    rows, (count, _) = run(mpy, steps, hold_ms=2000)
    assert first_occupied(rows) == 1200
    assert count == 1
    only_none = span(3000, 0, None)
    rows, (count, _) = run(mpy, only_none)
    assert first_occupied(rows) is None and count == 0
