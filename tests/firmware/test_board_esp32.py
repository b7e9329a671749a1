"""The ESP32-DevKitC board file compiles with mpy-cross and builds its buses against `machine`."""

import subprocess
from pathlib import Path

from tools.emulator.launcher import mpy_cross_executable
from tools.firmware_tree import FIRMWARE_DIR, FIRMWARE_LIB

BOARD = FIRMWARE_DIR / "boards" / "esp32_devkitc.py"
FAKE_MACHINE = Path(__file__).parent / "fake_machine"


def test_board_file_compiles_with_mpy_cross(tmp_path):
    out = tmp_path / "esp32_devkitc.mpy"
    proc = subprocess.run([mpy_cross_executable(), "-o", str(out), str(BOARD)],
                          check=False, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert out.stat().st_size > 500


def test_board_builds_the_pin_map_lit_and_drives_the_watchdog(mpy):
    code = """
import json, machine
import esp32_devkitc
from drivers.bme280 import BME280
from drivers.pms5003 import PMS5003
from drivers.lamp import Lamp
b = esp32_devkitc.Board()
t0 = b.ticks_ms()
b.sleep_ms(20)
t1 = b.ticks_ms()
b.start_watchdog(30000)
b.feed_watchdog(); b.feed_watchdog()
bme = BME280(b.i2c)
pms = PMS5003(b.uart_pm)
print(json.dumps({"created": machine.created, "cause": b.reset_cause(), "name": b.name,
                  "flash": b.flash_dir, "dt": t1 - t0, "epoch": b.epoch_s(),
                  "feeds": machine.wdt_feeds[0], "bme": bme.read(), "bme_fault": bme.health.last,
                  "pms": pms.poll(b.ticks_ms()), "lamp_duty": b.pwm_lamp.duty}))
"""
    [out] = mpy(code, path_dirs=[FAKE_MACHINE, FIRMWARE_DIR / "boards", FIRMWARE_LIB])
    created = out["created"]
    assert created[0] == ["Pin", [13], {}]
    assert created[1] == ["PWM", [13], {"freq": 1000, "duty_u16": 65535}]  # lit before anything
    i2c = [c for c in created if c[0] == "I2C"][0]
    assert i2c[1] == [0] and i2c[2]["freq"] == 100000
    uarts = {c[1][0]: c[2] for c in created if c[0] == "UART"}
    assert uarts[1]["baudrate"] == 9600 and uarts[2]["baudrate"] == 256000
    pins = {c[1][0] for c in created if c[0] == "Pin"}
    assert {13, 21, 22, 27} <= pins and not pins & {6, 7, 8, 9, 10, 11}  # flash pins untouched
    assert ["WDT", [], {"timeout": 30000}] in created and out["feeds"] == 2
    assert out["cause"] == "watchdog" and out["name"] == "esp32_devkitc" and out["flash"] == "/"
    assert 15 <= out["dt"] <= 1000
    assert out["epoch"] > 1700000000
    assert out["bme"] is False and out["bme_fault"] == "missing"  # nothing on the fake bus
    assert out["pms"] is False and out["lamp_duty"] == 65535
