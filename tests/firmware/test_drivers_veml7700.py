"""VEML7700 driver against its model: lux by day and night (auto-ranging), faults counted."""

from tests.rigs.driver_harness import run_on_board, running_world
from tools.emulator.scenario import DEFAULT_START_EPOCH, Fault, Scenario

READ_LOOP = """
from drivers.veml7700 import VEML7700
als = VEML7700(board.i2c)
for i in range({n}):
    board.sleep_ms({step})
    ok = als.read()
    print(json.dumps([board.link.now_ms, ok, als.lux, als.counts, als.health.faults,
                      als.health.last]))
"""


def _run(tmp_path, scenario, n, step=1000):
    with running_world(scenario) as world:
        return run_on_board(world, READ_LOOP.format(n=n, step=step), tmp_path)


def test_daylight_and_night_lux_within_a_few_percent_after_auto_ranging(tmp_path):
    # start 15 minutes before sunset so the run crosses dusk: thousands of lux down to ~2
    start = DEFAULT_START_EPOCH - 12 * 3600 + int(16.0 * 3600)
    scenario = Scenario(start_epoch=start, weather="clear")
    rows = _run(tmp_path, scenario, 150, step=20000)
    good = [r for r in rows if r[1]]
    assert len(good) >= len(rows) - 6  # a range change costs one reading at most
    for ms, _, lux, _, faults, _ in good:
        truth = scenario.lux(ms / 1000.0)
        assert abs(lux - truth) <= max(0.03 * truth, 0.2), (ms, lux, truth)
        assert faults == 0
    assert max(r[2] for r in good) > 300 and min(r[2] for r in good) < 5


def test_missing_wrong_id_and_stuck_are_counted(tmp_path):
    # the bus loses the chip, then a different part answers, then the right one is back
    faults = [Fault("veml7700", "missing", 2.5, 4.5), Fault("veml7700", "wrong_id", 4.5, 8.5),
              Fault("veml7700", "stuck", 10.5)]
    rows = _run(tmp_path, Scenario(faults=faults), 80)
    by_second = {round(r[0] / 1000): r for r in rows}
    assert by_second[3][1] is False and by_second[3][5] == "missing"
    assert by_second[5][1] is False and by_second[5][5] == "wrong_id"
    assert by_second[8][1] is False
    assert by_second[9][1] is True
    assert rows[-1][1] is False and rows[-1][5] == "stuck"
    assert rows[-1][4] == 3
