"""The world over its TCP protocol, from CPython: clock, I2C NACK, UART stream, PWM record."""

import socket
import struct
import time

from tools.emulator import protocol as p
from tools.emulator.scenario import Fault, Scenario
from tools.emulator.world import FULL_DUTY, World


def _call(sock, op, payload=b""):
    sock.sendall(p.REQUEST_HEADER.pack(op, len(payload)) + payload)
    head = sock.recv(p.RESPONSE_HEADER.size, socket.MSG_WAITALL)
    status, now_ms, n = p.RESPONSE_HEADER.unpack(head)
    data = sock.recv(n, socket.MSG_WAITALL) if n else b""
    return status, now_ms, data


def test_protocol_clock_devices_and_records():
    world = World(Scenario(faults=[Fault("veml7700", "missing", 5.0)])).start()
    try:
        with socket.create_connection(("127.0.0.1", world.port)) as s:
            status, now, data = _call(s, p.OP_HELLO)
            assert status == p.STATUS_OK and now == 0 and data[12:] == b"power_on"
            _, now, _ = _call(s, p.OP_SLEEP, struct.pack("<I", 2500))
            assert now == 2500  # fast mode: sleeping moves virtual time at once
            _, _, chip = _call(s, p.OP_I2C_READ, bytes([p.I2C_BME280, 0xD0, 1]))
            assert chip == b"\x60"
            status, _, _ = _call(s, p.OP_I2C_READ, bytes([0x55, 0x00, 1]))
            assert status == p.STATUS_NODEV  # nobody at that address
            _, _, waiting = _call(s, p.OP_UART_ANY, bytes([p.UART_PM]))
            assert struct.unpack("<H", waiting)[0] == 32  # one frame so far
            _call(s, p.OP_SLEEP, struct.pack("<I", 2000))
            _, _, waiting = _call(s, p.OP_UART_ANY, bytes([p.UART_PM]))
            assert struct.unpack("<H", waiting)[0] == 3 * 32  # then one a second
            _call(s, p.OP_PWM_DUTY, struct.pack("<BH", p.PWM_LAMP, 1000))
            _call(s, p.OP_SLEEP, struct.pack("<I", 1000))
            status, _, _ = _call(s, p.OP_I2C_READ, bytes([p.I2C_VEML7700, 0x07, 2]))
            assert status == p.STATUS_NODEV  # the scenario's fault from 5 s on
        world_lamp = world.records.lamp
        assert (4500, 1000) in world_lamp
        for _ in range(200):
            if world.records.lamp[-1][1] == FULL_DUTY:
                break
            time.sleep(0.01)
        assert world.records.lamp[-1][1] == FULL_DUTY  # no controller: the driver goes full
    finally:
        world.stop()


def test_watchdog_fires_when_not_fed():
    world = World().start()
    try:
        with socket.create_connection(("127.0.0.1", world.port)) as s:
            _call(s, p.OP_HELLO)
            _call(s, p.OP_WDT_START, struct.pack("<I", 10000))
            status, _, _ = _call(s, p.OP_SLEEP, struct.pack("<I", 5000))
            assert status == p.STATUS_OK
            _call(s, p.OP_WDT_FEED)
            status, _, _ = _call(s, p.OP_SLEEP, struct.pack("<I", 11000))
            assert status == p.STATUS_RESET
        with socket.create_connection(("127.0.0.1", world.port)) as s:
            _, _, data = _call(s, p.OP_HELLO)
            assert data[12:] == b"watchdog"
    finally:
        world.stop()


def test_the_same_hours_give_the_same_sensor_faults_at_any_speed(tmp_path):
    """At 600x the node's own computing spans virtual seconds. Its radar frames pile up in
    the UART buffer (a full buffer loses whole frames, so none is read cut, as line noise),
    and a sensor's silence is timed from when its UART was read, not from the tick's start
    (a slow tick would otherwise find the frames it had already taken and call it silence).
    The same two hours at speed 0, where time moves only while the node sleeps, and at 600x
    give the same faults: none."""
    from tools.emulator.launcher import Launcher
    from tools.emulator.scenario import DEFAULT_START_EPOCH, Scenario

    faults, seen = {}, {}
    for speed in (0.0, 600.0):
        launcher = Launcher(tmp_path / f"flash-{speed:g}",
                            Scenario(start_epoch=DEFAULT_START_EPOCH - 4 * 3600, seed=3),
                            speed=speed, end_ms=2 * 3600 * 1000)
        with launcher:
            assert launcher.wait_done(timeout=240)
        faults[speed] = [f.get("faults") for _, f in launcher.events("stats")][-1]
        seen[speed] = [line for line in launcher.lines if "sensor_fault" in line][:6]
    assert faults[0.0] == faults[600.0] == "none", (faults, seen)
