"""LD2410 radar driver against the report stream: presence and distance, garbage, silence."""

from tests.rigs.driver_harness import run_on_board, running_world
from tools.emulator.scenario import Fault, Pedestrian, Scenario

POLL_LOOP = """
from drivers.ld2410 import LD2410
radar = LD2410(board.uart_radar)
for i in range({n}):
    board.sleep_ms(500)
    new = radar.poll(board.ticks_ms())
    print(json.dumps([board.link.now_ms, new, radar.presence, radar.state, radar.moving_cm,
                      radar.still_cm, radar.health.faults, radar.health.last]))
"""


def _quiet(**kw):
    return Scenario(footfall_scale=0.0, bus_stop_per_h=0.0, **kw)


def _run(tmp_path, scenario, n):
    with running_world(scenario) as world:
        return run_on_board(world, POLL_LOOP.format(n=n), tmp_path)


def test_a_passing_pedestrian_is_seen_with_the_right_distance(tmp_path):
    walker = Pedestrian(t_mid_s=15.0, offset_m=1.0, speed_mps=1.2)
    waiter = Pedestrian(t_mid_s=40.0, offset_m=2.0, speed_mps=1.2, dwell_s=10.0)
    scenario = _quiet(extra_pedestrians=[walker, waiter])
    rows = _run(tmp_path, scenario, 100)
    lo, hi = walker.span_s(scenario.radar_reach_m)
    for ms, new, presence, state, moving, still, faults, _ in rows:
        s = ms / 1000.0
        assert new and faults == 0
        if lo + 0.2 <= s <= hi - 0.2:
            assert presence and state & 1
            assert abs(moving - walker.distance_m(s)[0] * 100) <= 20  # one 100 ms frame behind
        if 37 <= s <= 43:
            assert state & 2 and abs(still - 200) <= 1
        if s < lo - 0.2 or 60 < s:
            assert presence is False and state == 0


def test_garbage_is_skipped_with_counted_faults(tmp_path):
    walker = Pedestrian(t_mid_s=12.0, offset_m=1.0, speed_mps=1.0)
    scenario = _quiet(extra_pedestrians=[walker],
                      faults=[Fault("ld2410", "garbage", 0.0, 30.0)])
    rows = _run(tmp_path, scenario, 60)
    assert rows[-1][6] >= 5 and rows[-1][7] == "frame"
    assert sum(1 for r in rows if r[1]) >= len(rows) * 0.8
    lo, hi = walker.span_s(scenario.radar_reach_m)
    seen = [r for r in rows if r[2]]
    assert seen and all(lo - 0.2 <= r[0] / 1000 <= hi + 0.2 for r in seen)  # nobody invented


def test_silent_radar_reports_unknown_presence(tmp_path):
    rows = _run(tmp_path, _quiet(faults=[Fault("ld2410", "silent", 5.0, 15.0)]), 40)
    at = {r[0] // 500: r for r in rows}
    assert at[2 * 4][2] is False
    assert at[2 * 12][2] is None and at[2 * 12][7] == "silent"
    assert at[2 * 18][2] is False and at[2 * 18][6] == 1
