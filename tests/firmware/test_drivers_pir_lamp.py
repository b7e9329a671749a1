"""PIR input and lamp PWM driver through the emulated board: levels, stuck PIR, timed ramps."""

from tests.rigs.driver_harness import run_on_board, running_world
from tools.emulator.scenario import Fault, Pedestrian, Scenario
from tools.emulator.world import FULL_DUTY


def test_pir_follows_motion_and_a_stuck_output_becomes_a_fault(tmp_path):
    walker = Pedestrian(t_mid_s=10.0, offset_m=1.0, speed_mps=1.2)
    scenario = Scenario(footfall_scale=0.0, bus_stop_per_h=0.0, extra_pedestrians=[walker],
                        faults=[Fault("pir", "stuck", 30.0)])
    code = """
from drivers.pir import PIR
pir = PIR(board.pin_pir, stuck_ms=20000)
for i in range(120):
    board.sleep_ms(500)
    print(json.dumps([board.link.now_ms, pir.read(board.ticks_ms()), pir.health.failed]))
"""
    with running_world(scenario) as world:
        rows = run_on_board(world, code, tmp_path)
    lo, hi = walker.span_s(scenario.pir_reach_m)
    for ms, level, failed in rows:
        s = ms / 1000.0
        if lo + 0.1 <= s <= hi:
            assert level == 1
        if s < lo or hi + scenario.pir_hold_s + 0.1 < s < 30:
            assert level == 0
        if s >= 51:
            assert failed and level == 0  # stuck high for 20 s: not believed


def test_lamp_ramps_down_over_the_requested_time_and_full_is_immediate(tmp_path):
    code = """
from drivers.lamp import Lamp
lamp = Lamp(board.pwm_lamp)
lamp.set(30, 10000, board.ticks_ms())
for i in range(24):
    board.sleep_ms(500)
    lamp.update(board.ticks_ms())
lamp.full()
board.sleep_ms(1000)
print(json.dumps([lamp.level]))
"""
    with running_world(Scenario()) as world:
        rows = run_on_board(world, code, tmp_path)
        record = list(world.records.lamp)
    assert rows == [[100.0]]
    levels = {ms: duty * 100 / FULL_DUTY for ms, duty in record}
    assert abs(levels[5000] - 65.0) < 0.5  # halfway through the 10 s ramp
    assert abs(levels[10000] - 30.0) < 0.01
    assert record[-1] == (12000, FULL_DUTY)
    downs = [duty for ms, duty in record if 0 < ms <= 10000]
    assert downs == sorted(downs, reverse=True)
