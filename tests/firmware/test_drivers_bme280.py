"""BME280 driver against the register-level model, through the emulated board, on MicroPython."""

from tests.rigs.driver_harness import run_on_board, running_world
from tools.emulator.scenario import Fault, Scenario

READ_LOOP = """
from drivers.bme280 import BME280
bme = BME280(board.i2c)
for i in range({n}):
    board.sleep_ms(1000)
    ok = bme.read()
    print(json.dumps([board.link.now_ms, ok, bme.temperature_c, bme.pressure_hpa,
                      bme.humidity_pct, bme.health.faults, bme.health.last]))
"""


def _run(tmp_path, scenario, n):
    with running_world(scenario) as world:
        return run_on_board(world, READ_LOOP.format(n=n), tmp_path)


def test_readings_match_the_true_weather_within_sensor_accuracy(tmp_path):
    scenario = Scenario(weather="rain", temp_mean_c=-3.0)
    rows = _run(tmp_path, scenario, 30)
    assert all(r[1] for r in rows)
    for ms, _, t, p, h, faults, _ in rows:
        s = ms / 1000.0
        assert abs(t - scenario.temperature_c(s)) < 0.1
        assert abs(p - scenario.pressure(s)) < 0.1
        assert abs(h - scenario.humidity_pct(s)) < 0.5
        assert faults == 0


def test_missing_device_is_one_counted_fault_and_the_driver_recovers(tmp_path):
    rows = _run(tmp_path, Scenario(faults=[Fault("bme280", "missing", 5.5, 10.5)]), 15)
    during = [r for r in rows if 6 <= r[0] / 1000 <= 10]
    after = [r for r in rows if r[0] / 1000 >= 11]
    assert during and not any(r[1] for r in during)
    assert all(r[6] == "missing" for r in during)
    assert after and all(r[1] for r in after)
    assert rows[-1][5] == 1  # one episode, however many reads failed during it


def test_wrong_chip_id_is_refused(tmp_path):
    rows = _run(tmp_path, Scenario(faults=[Fault("bme280", "wrong_id", 0)]), 5)
    assert not any(r[1] for r in rows)
    assert rows[-1][6] == "wrong_id" and rows[-1][5] >= 1
    assert rows[-1][2] is None  # nothing was ever reported from the impostor


def test_stuck_registers_are_detected(tmp_path):
    rows = _run(tmp_path, Scenario(faults=[Fault("bme280", "stuck", 3.5)]), 40)
    assert rows[0][1] and rows[-1][1] is False
    assert rows[-1][6] == "stuck" and rows[-1][5] == 1
