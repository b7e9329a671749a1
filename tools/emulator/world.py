"""The world one emulated lamppost lives in: virtual clock, peripheral models, a TCP server."""

from __future__ import annotations

import json
import random
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

from tools.emulator import protocol as p
from tools.emulator.models.bme280 import Bme280Model
from tools.emulator.models.ld2410 import FRAME_PERIOD_MS as RADAR_PERIOD_MS
from tools.emulator.models.ld2410 import Ld2410Model
from tools.emulator.models.pms5003 import FRAME_PERIOD_MS as PM_PERIOD_MS
from tools.emulator.models.pms5003 import Pms5003Model
from tools.emulator.models.uart import UartChannel
from tools.emulator.models.veml7700 import Veml7700Model
from tools.emulator.models.wifi import AccessPoint
from tools.emulator.scenario import RTC_COLD_EPOCH, Scenario

LAMP_RATED_W = 60.0
FULL_DUTY = 65535


@dataclass
class Records:
    """What the world saw: lamp duty changes, telemetry and check-ins received, node boots."""

    lamp: list[tuple[int, int]] = field(default_factory=list)  # (virtual ms, duty u16)
    telemetry: dict[int, bytes] = field(default_factory=dict)  # seq -> payload
    telemetry_posts: int = 0
    telemetry_bytes: int = 0  # payload bytes received, resends included
    checkins: list[tuple[int, dict]] = field(default_factory=list)
    boots: list[tuple[int, str]] = field(default_factory=list)  # (virtual ms, reset cause)
    requests: int = 0

    def lamp_level_at(self, t_ms: int) -> float:
        """Lamp level (percent) the world's PWM record shows at virtual time t_ms."""
        level = 100.0
        for when, duty in self.lamp:
            if when > t_ms:
                break
            level = duty * 100.0 / FULL_DUTY
        return level

    def energy_wh(self, t0_ms: int, t1_ms: int, rated_w: float = LAMP_RATED_W) -> float:
        """Energy the lamp drew between t0 and t1 according to the PWM record (linear driver)."""
        total = 0.0
        level = self.lamp_level_at(t0_ms)
        last = t0_ms
        for when, duty in self.lamp:
            if when <= t0_ms:
                continue
            if when >= t1_ms:
                break
            total += rated_w * level / 100.0 * (when - last) / 3.6e6
            level, last = duty * 100.0 / FULL_DUTY, when
        return total + rated_w * level / 100.0 * (t1_ms - last) / 3.6e6

    def series(self, metric: str) -> list[tuple[int, float]]:
        """(epoch s, value) of every received record of `metric`, in time order."""
        out = []
        for payload in self.telemetry.values():
            rec = json.loads(payload)
            if rec.get("m") == metric:
                out.append((int(rec["ts"]), float(rec["v"])))
        return sorted(out)


class VirtualClock:
    """Virtual milliseconds. speed=0: time only moves when the node sleeps (as fast as it can
    go); speed=N: N times real time."""

    def __init__(self, speed: float = 0.0) -> None:
        self.speed = speed
        self._fast_ms = 0
        self._anchor_real = time.monotonic()
        self._anchor_ms = 0

    def now_ms(self) -> int:
        if self.speed <= 0:
            return self._fast_ms
        return self._anchor_ms + int((time.monotonic() - self._anchor_real) * 1000 * self.speed)

    def sleep(self, ms: int) -> None:
        if self.speed <= 0:
            self._fast_ms += ms
            return
        target = self.now_ms() + ms
        while True:
            left = target - self.now_ms()
            if left <= 0:
                return
            time.sleep(min(left / 1000.0 / self.speed, 0.05))

    def advance_to(self, ms: int) -> None:
        """Fast mode: jump forward (e.g. while the node is off)."""
        if self.speed <= 0 and ms > self._fast_ms:
            self._fast_ms = ms


class World:
    """One lamppost's environment and peripherals, served to one node at a time over TCP.

    `end_ms`: virtual time at which the run is over (the node is told to halt).
    """

    def __init__(self, scenario: Scenario | None = None, speed: float = 0.0,
                 end_ms: int | None = None, port: int = 0) -> None:
        self.scenario = scenario or Scenario()
        self.clock = VirtualClock(speed)
        self.end_ms = end_ms
        self.records = Records()
        self.checkin_replies: list[dict] = []  # replies handed out at the next check-ins
        self.telemetry_accept = True  # False: the uplink is "down" (posts are not acked)
        rng = random.Random(self.scenario.seed)
        s = self.scenario
        self.bme280 = Bme280Model(
            lambda: (s.temperature_c(self.t), s.pressure(self.t), s.humidity_pct(self.t)),
            random.Random(rng.random()))
        self.veml7700 = Veml7700Model(lambda: s.lux(self.t), random.Random(rng.random()))
        self.pms5003 = Pms5003Model(lambda: (s.pm25(self.t), s.pm10(self.t)),
                                    random.Random(rng.random()))
        self.ld2410 = Ld2410Model(lambda: self._radar_targets(), random.Random(rng.random()))
        self.uarts = {
            p.UART_PM: UartChannel(self.pms5003, PM_PERIOD_MS),
            p.UART_RADAR: UartChannel(self.ld2410, RADAR_PERIOD_MS),
        }
        self.wifi = AccessPoint(lambda ms: s.net_fault(ms / 1000.0), s.wifi_rssi_dbm,
                                s.wifi_assoc_ms, s.wifi_password)
        self.rtc_base: int | None = None  # the board RTC's epoch at virtual 0 (None: power off)
        self.ntp_queries = 0
        self.connected = False
        self.halted = threading.Event()
        self._next_cause = "power_on"
        self._wdt_timeout_ms: int | None = None
        self._wdt_fed_ms = 0
        self._wdt_fed_real = time.monotonic()
        self._wdt_fired = False
        self._radar_cache: tuple[int, tuple] = (-1, (None, None))
        self._stop = threading.Event()
        self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", port))
        self._server.listen(2)
        self._server.settimeout(0.2)
        self.port = self._server.getsockname()[1]
        self._thread: threading.Thread | None = None
        self.records.lamp.append((0, FULL_DUTY))

    # -- time -------------------------------------------------------------------------------
    @property
    def now_ms(self) -> int:
        return self.clock.now_ms()

    @property
    def t(self) -> float:
        """Scenario time in seconds."""
        return self.clock.now_ms() / 1000.0

    def _radar_targets(self) -> tuple:
        ms = self.clock.now_ms()
        if self._radar_cache[0] != ms:
            self._radar_cache = (ms, self.scenario.radar_targets(ms / 1000.0))
        return self._radar_cache[1]

    # -- server -----------------------------------------------------------------------------
    def start(self) -> World:
        self._thread = threading.Thread(target=self._serve, name="world", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        self._server.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.settimeout(0.5)
            try:
                self._session(conn)
            finally:
                conn.close()
                self._node_gone()

    def _node_gone(self) -> None:
        """The node is off or rebooting: the lamp driver's control input floats to full."""
        self.connected = False
        self._wdt_timeout_ms = None
        if self.records.lamp[-1][1] != FULL_DUTY:
            self.records.lamp.append((self.now_ms, FULL_DUTY))

    def _recv_exact(self, conn: socket.socket, view: memoryview) -> bool:
        got = 0
        while got < len(view):
            try:
                n = conn.recv_into(view[got:])
            except TimeoutError:
                if self._stop.is_set():
                    return False
                continue
            except OSError:
                return False
            if n == 0:
                return False
            got += n
        return True

    def _session(self, conn: socket.socket) -> None:
        header = bytearray(p.REQUEST_HEADER.size)
        hview = memoryview(header)
        payload = bytearray(65536)
        pview = memoryview(payload)
        self.connected = True
        while not self._stop.is_set():
            if not self._recv_exact(conn, hview):
                return
            op, n = p.REQUEST_HEADER.unpack(header)
            if n and not self._recv_exact(conn, pview[:n]):
                return
            self.records.requests += 1
            try:
                status, out = self._handle(op, bytes(pview[:n]))
            except (struct.error, IndexError, KeyError, ValueError):
                status, out = p.STATUS_BAD_REQUEST, b""
            if self._wdt_expired():
                status, out = p.STATUS_RESET, b""
                self._next_cause = "watchdog"
            if self.end_ms is not None and self.now_ms >= self.end_ms:
                status, out = p.STATUS_HALT, b""
                self.halted.set()
            try:
                conn.sendall(p.RESPONSE_HEADER.pack(status, self.now_ms, len(out)) + out)
            except OSError:
                return

    def _wdt_expired(self) -> bool:
        """Fast mode: virtual time since the last feed. At a fixed speed the node's CPU still
        runs in real time, so the watchdog counts real time (else startup alone would trip it)."""
        if self._wdt_timeout_ms is None:
            return False
        if self.clock.speed > 0:
            return (time.monotonic() - self._wdt_fed_real) * 1000 > self._wdt_timeout_ms
        return self.now_ms - self._wdt_fed_ms > self._wdt_timeout_ms

    # -- requests ---------------------------------------------------------------------------
    def _i2c_device(self, addr: int):
        dev = {p.I2C_BME280: self.bme280, p.I2C_VEML7700: self.veml7700}.get(addr)
        if dev is None:
            return None
        dev.fault = self.scenario.fault(type(dev).__name__.removesuffix("Model").lower(), self.t)
        return dev if dev.present() else None

    def _uart(self, uart_id: int) -> UartChannel:
        ch = self.uarts[uart_id]
        name = "pms5003" if uart_id == p.UART_PM else "ld2410"
        ch.device.fault = self.scenario.fault(name, self.t)
        ch.advance(self.now_ms)
        return ch

    def _handle(self, op: int, data: bytes) -> tuple[int, bytes]:
        ok = p.STATUS_OK
        if op == p.OP_UART_ANY:
            return ok, struct.pack("<H", len(self._uart(data[0]).rx))
        if op == p.OP_UART_READ:
            uart_id, limit = struct.unpack("<BH", data)
            return ok, self._uart(uart_id).take(limit)
        if op == p.OP_I2C_READ:
            addr, reg, count = data[0], data[1], data[2]
            dev = self._i2c_device(addr)
            return (p.STATUS_NODEV, b"") if dev is None else (ok, dev.read(reg, count))
        if op == p.OP_I2C_WRITE:
            dev = self._i2c_device(data[0])
            if dev is None:
                return p.STATUS_NODEV, b""
            dev.write(data[1], data[2:])
            return ok, b""
        if op == p.OP_PIN_READ:
            return ok, bytes([self._pir()])
        if op == p.OP_SLEEP:
            (ms,) = struct.unpack("<I", data)
            if self.end_ms is not None:
                ms = min(ms, max(0, self.end_ms - self.now_ms))
            self.clock.sleep(ms)
            return ok, b""
        if op == p.OP_PWM_DUTY:
            _pwm, duty = struct.unpack("<BH", data)
            if self.records.lamp[-1][1] != duty:
                self.records.lamp.append((self.now_ms, duty))
            return ok, b""
        if op == p.OP_WDT_FEED:
            self._wdt_fed_ms = self.now_ms
            self._wdt_fed_real = time.monotonic()
            return ok, b""
        if op == p.OP_TELEMETRY:
            return ok, self._telemetry(data)
        if op == p.OP_CHECKIN:
            self.records.checkins.append((self.now_ms, json.loads(data)))
            reply = self.checkin_replies.pop(0) if self.checkin_replies else None
            return ok, b"" if reply is None else json.dumps(reply).encode()
        if op == p.OP_HELLO:
            return ok, self._hello()
        if op == p.OP_UART_WRITE:
            self.uarts[data[0]].written += data[1:]
            return ok, b""
        if op == p.OP_I2C_SCAN:
            return ok, bytes(a for a in (p.I2C_VEML7700, p.I2C_BME280) if self._i2c_device(a))
        if op == p.OP_WDT_START:
            (self._wdt_timeout_ms,) = struct.unpack("<I", data)
            self._wdt_fed_ms = self.now_ms
            self._wdt_fed_real = time.monotonic()
            return ok, b""
        if op == p.OP_RESET:
            self._next_cause = "soft"
            return ok, b""
        if op == p.OP_WIFI:
            return self._wifi(data)
        if op == p.OP_NTP:
            return self._ntp()
        if op == p.OP_RTC_SET:
            (epoch,) = struct.unpack("<I", data)
            self.rtc_base = epoch - self.now_ms // 1000
            return ok, b""
        return p.STATUS_BAD_REQUEST, b""

    def true_epoch(self) -> int:
        """The world's wall clock (UTC seconds) now."""
        return self.scenario.start_epoch + self.now_ms // 1000

    def _wifi(self, data: bytes) -> tuple[int, bytes]:
        """The station interface: 0 status -> (status u16, rssi i8); 1 connect (ssid length u8,
        ssid, passphrase); 2 disconnect."""
        ap, now = self.wifi, self.now_ms
        if data[0] == p.WIFI_STATUS:
            return p.STATUS_OK, struct.pack("<Hb", ap.poll(now), ap.rssi(now))
        if data[0] == p.WIFI_CONNECT:
            n = data[1]
            ap.connect(now, data[2:2 + n].decode(), data[2 + n:].decode())
            return p.STATUS_OK, b""
        if data[0] == p.WIFI_DISCONNECT:
            ap.disconnect()
            return p.STATUS_OK, b""
        return p.STATUS_BAD_REQUEST, b""

    def _ntp(self) -> tuple[int, bytes]:
        """An NTP query: the true time, when a server is reachable over a link that is up (a
        node without Wi-Fi credentials counts as wired)."""
        self.ntp_queries += 1
        if not (self.scenario.ntp_reachable and self.wifi.linked(self.now_ms)):
            return p.STATUS_NODEV, b""
        return p.STATUS_OK, struct.pack("<I", self.true_epoch())

    def _hello(self) -> bytes:
        cause = self._next_cause
        self._next_cause = "power_on"  # unless told otherwise, the next boot is a power cycle
        self.records.boots.append((self.now_ms, cause))
        for ch in self.uarts.values():
            ch.reset()
        self.wifi.reset()
        if cause == "power_on" or self.rtc_base is None:
            # the RTC lost power: 2000-01-01 on a cold-booted ESP32, unless the scenario says set
            start = RTC_COLD_EPOCH if self.scenario.rtc_cold_start else self.true_epoch()
            self.rtc_base = start - self.now_ms // 1000
        return struct.pack("<QI", self.now_ms, self.rtc_base) + cause.encode()

    def _pir(self) -> int:
        fault = self.scenario.fault("pir", self.t)
        if fault == "stuck":
            return 1
        if fault in ("missing", "silent"):
            return 0
        return self.scenario.pir_level(self.t)

    def _telemetry(self, data: bytes) -> bytes:
        (count,) = struct.unpack_from("<H", data)
        pos, top = 2, 0
        self.records.telemetry_posts += 1
        for _ in range(count):
            seq, size = struct.unpack_from("<IH", data, pos)
            pos += 6
            payload = data[pos:pos + size]
            pos += size
            self.records.telemetry_bytes += size
            if self.telemetry_accept:
                self.records.telemetry[seq] = payload
                top = max(top, seq)
        return struct.pack("<I", top) if self.telemetry_accept and count else b""
