"""`lamplighter device monitor` and `selftest`: coloured levels, decoded resets, through a pty."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

from tools.emulator.serial_repl import SerialRepl
from tools.emulator.world import World
from tools.technician.monitor import decode_reset, render

CLI = [sys.executable, "-c", "from tools.cli.main import app; app()"]

BOOT_LOG = [
    "ets Jun  8 2016 00:22:57",
    "rst:0xf (BROWNOUT_RST),boot:0x13 (SPI_FAST_FLASH_BOOT)",
    "12 INFO reset cause=watchdog board=esp32_devkitc",
    "40 INFO boot fw=0.1.0 board=esp32_devkitc reason=watchdog",
    "5012 WARN uplink_retry error=timeout",
    "9000 ERROR sensor_fault sensor=bme280 kind=missing",
]


def test_reset_reasons_are_decoded() -> None:
    assert decode_reset("rst:0x1 (POWERON_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)").startswith(
        "power-on")
    assert decode_reset("rst:0xf (BROWNOUT_RST),boot:0x13").startswith("brown-out")
    assert "hung" in decode_reset("rst:0x7 (TG0WDT_SYS_RESET),boot:0x13")
    assert decode_reset("12 INFO reset cause=watchdog board=emulated").startswith("watchdog")
    assert decode_reset("12 INFO reset cause=soft board=emulated").startswith("software")
    assert decode_reset("40 INFO boot fw=0.1.0") is None


def test_levels_are_coloured() -> None:
    styles = {}
    for line in BOOT_LOG[2:]:
        text = render(line)
        level = line.split()[1]
        styles[level] = {str(span.style) for span in text.spans}
    assert "bold red" in styles["ERROR"]
    assert "yellow" in styles["WARN"]
    assert "green" in styles["INFO"]


def _wait_until_open(pid: int, path: str, timeout: float = 60.0) -> None:
    """Until process `pid` holds `path` open (it flushes the port's input as it opens it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") == path
                   for fd in os.listdir(f"/proc/{pid}/fd")):
                time.sleep(0.5)  # past the input flush that follows the open
                return
        time.sleep(0.05)
    raise AssertionError(f"the monitor never opened {path}")


def test_monitor_reads_a_boot_log_from_a_serial_port() -> None:
    master, slave = os.openpty()
    port = os.ttyname(slave)
    try:
        proc = subprocess.Popen([*CLI, "device", "monitor", "--port", port, "--lines",
                                 str(len(BOOT_LOG))], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True,
                                env=dict(os.environ, COLUMNS="200"))
        _wait_until_open(proc.pid, port)
        os.write(master, "".join(line + "\r\n" for line in BOOT_LOG).encode())
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        os.close(master)
        os.close(slave)
    assert proc.returncode == 0, stderr
    lines = stdout.splitlines()
    assert "reset: brown-out" in lines[1]
    assert "reset: watchdog" in lines[2]
    assert "sensor_fault sensor=bme280 kind=missing" in lines[5]


def test_monitor_on_a_missing_port() -> None:
    proc = subprocess.run([*CLI, "device", "monitor", "--port", "/dev/ttyACM7"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 1
    assert "no such port /dev/ttyACM7" in proc.stderr


def test_selftest_on_an_emulated_lamppost_reports_a_dead_sensor(tmp_path: Path) -> None:
    from tools.emulator.scenario import Fault, Scenario
    from tools.technician.provisioning import app_files

    flash = tmp_path / "flash"
    for path, data in app_files(board="emulated").items():  # slot a, as provisioning leaves it
        (flash / path).parent.mkdir(parents=True, exist_ok=True)
        (flash / path).write_bytes(data)
    world = World(Scenario(faults=[Fault("bme280", "missing", 0, float("inf"))]), speed=0).start()
    try:
        with SerialRepl(flash, world_port=world.port) as repl:
            proc = subprocess.run([*CLI, "device", "selftest", "--port", repl.path, "--json"],
                                  capture_output=True, text=True, timeout=120, check=False)
    finally:
        world.stop()
    assert proc.returncode == 4, proc.stdout + proc.stderr
    import json

    result = json.loads(proc.stdout)
    assert result["board"] == "emulated"
    assert result["sensors"]["bme280"]["ok"] is False
    assert result["sensors"]["veml7700"]["ok"] is True and result["sensors"]["veml7700"]["lux"]
    assert result["sensors"]["pms5003"]["pm25_ugm3"] is not None


def test_monitor_reset_on_an_emulated_console_says_why_nothing_was_reset() -> None:
    master, slave = os.openpty()
    port = os.ttyname(slave)
    try:
        proc = subprocess.Popen([*CLI, "device", "monitor", "--port", port, "--reset",
                                 "--lines", "1"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True,
                                env=dict(os.environ, COLUMNS="200"))
        _wait_until_open(proc.pid, port)
        os.write(master, (BOOT_LOG[2] + "\r\n").encode())
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        os.close(master)
        os.close(slave)
    assert proc.returncode == 0, stderr
    said = " ".join(stderr.split())
    assert f"{port} has no reset line" in said and "lamplighter device emulate" in said
    assert stdout.strip(), "the port's lines are still shown"
