"""PMS5003 driver against the frame stream: values, resync after garbage, checksum, silence."""

from tests.rigs.driver_harness import run_on_board, running_world
from tools.emulator.scenario import Episode, Fault, Scenario

POLL_LOOP = """
from drivers.pms5003 import PMS5003
pms = PMS5003(board.uart_pm)
for i in range({n}):
    board.sleep_ms(1000)
    new = pms.poll(board.ticks_ms())
    print(json.dumps([board.link.now_ms, new, pms.pm25_ugm3, pms.pm10_ugm3, pms.frames,
                      pms.health.faults, pms.health.last, pms.health.failed]))
"""


def _run(tmp_path, scenario, n):
    with running_world(scenario) as world:
        return run_on_board(world, POLL_LOOP.format(n=n), tmp_path)


def test_frames_give_the_true_concentration_within_sensor_noise(tmp_path):
    scenario = Scenario(episodes=[Episode(0.0, 1.0, 60.0)])
    rows = _run(tmp_path, scenario, 30)
    assert all(r[1] for r in rows)
    assert rows[-1][4] == 30 and rows[-1][5] == 0
    for ms, _, pm25, pm10, *_ in rows:
        truth = scenario.pm25(ms / 1000.0)
        assert abs(pm25 - truth) <= 0.15 * truth + 1
        assert pm10 >= pm25


def test_garbage_bytes_are_skipped_and_counted_and_frames_still_come_through(tmp_path):
    rows = _run(tmp_path, Scenario(faults=[Fault("pms5003", "garbage", 0.5, 30.5)]), 40)
    during = [r for r in rows if r[0] <= 30000]
    assert sum(1 for r in during if r[1]) >= len(during) // 2  # it resynchronises
    assert rows[-1][5] >= 10 and rows[-1][6] in ("garbage", "checksum")
    after = [r for r in rows if r[0] >= 33000]
    assert all(r[1] for r in after) and not after[-1][7]
    assert all(0 < r[2] < 100 for r in rows if r[1])  # never a value made of noise


def test_bad_checksum_frames_are_rejected_and_counted(tmp_path):
    rows = _run(tmp_path, Scenario(faults=[Fault("pms5003", "bad_checksum", 5.5, 15.5)]), 20)
    frames_before = [r for r in rows if r[0] == 5000][0][4]
    frames_after_window = [r for r in rows if r[0] == 15000][0][4]
    assert frames_after_window == frames_before  # nothing accepted during the window
    assert rows[-1][5] >= 9 and rows[-1][1]


def test_silence_and_a_stuck_frame_become_faults(tmp_path):
    faults = [Fault("pms5003", "silent", 3.5, 12.5), Fault("pms5003", "stuck", 15.5)]
    rows = _run(tmp_path, Scenario(faults=faults), 60)
    at = {r[0] // 1000: r for r in rows}
    assert at[10][7] and at[10][6] == "silent"
    assert at[14][1] and not at[14][7]
    assert at[59][7] and at[59][6] == "stuck"
