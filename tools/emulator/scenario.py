"""A day on one street: light, weather, pollution, pedestrians and sensor faults over time."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

# 2026-11-24 12:00:00 UTC: the emulated lamppost's wall clock starts at noon by default.
DEFAULT_START_EPOCH = 1795521600

SENSORS = ("bme280", "veml7700", "pms5003", "ld2410", "pir")
FAULT_KINDS = ("missing", "wrong_id", "stuck", "garbage", "bad_checksum", "silent")
# 2000-01-01 00:00:00 UTC: where a cold-booted ESP32's RTC starts (after every power cut)
RTC_COLD_EPOCH = 946684800
# What the street's Wi-Fi does (NetFault.kind): the access point refuses or cannot be found
# (association fails, and a link that was up drops), the link drops and stays down (beacon
# timeout, then association fails), or the signal is weak (up, but slow to associate).
NET_FAULT_KINDS = ("association_fails", "link_lost", "weak_signal")

WEATHER = {
    # name: (daylight factor, temperature offset degC, humidity offset %RH, pressure offset hPa)
    "clear": (1.0, 0.0, -5.0, 6.0),
    "overcast": (0.35, -1.0, 5.0, 0.0),
    "rain": (0.15, -2.5, 15.0, -12.0),
}

# Pedestrians passing per hour of the (local = UTC here) day.
DEFAULT_FOOTFALL = (3, 2, 1, 1, 1, 2, 6, 25, 40, 20, 15, 18, 25, 20, 15, 18, 30, 45, 40, 30,
                    20, 12, 8, 5)


@dataclass(frozen=True)
class Fault:
    """`sensor` misbehaves as `kind` from `start_s` to `end_s` (seconds of scenario time)."""

    sensor: str
    kind: str
    start_s: float
    end_s: float = math.inf

    def __post_init__(self) -> None:
        if self.sensor not in SENSORS:
            raise ValueError(f"unknown sensor {self.sensor!r}; choose from {', '.join(SENSORS)}")
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {self.kind!r}; choose from {', '.join(FAULT_KINDS)}")


@dataclass(frozen=True)
class NetFault:
    """The street's Wi-Fi misbehaves as `kind` from `start_s` to `end_s` (scenario seconds)."""

    kind: str
    start_s: float
    end_s: float = math.inf

    def __post_init__(self) -> None:
        if self.kind not in NET_FAULT_KINDS:
            raise ValueError(f"unknown network fault {self.kind!r}; choose from "
                             f"{', '.join(NET_FAULT_KINDS)}")


@dataclass(frozen=True)
class Episode:
    """A pollution episode: PM2.5 rises to `peak_ugm3` around `centre_h` (hours since start)."""

    centre_h: float
    width_h: float
    peak_ugm3: float


@dataclass(frozen=True)
class Pedestrian:
    """Someone passing the post: nearest at `t_mid_s`, `offset_m` from it, walking at `speed_mps`.

    A pedestrian with `dwell_s` > 0 stops (e.g. at a bus stop) for that long at the nearest point.
    """

    t_mid_s: float
    offset_m: float
    speed_mps: float
    dwell_s: float = 0.0

    def distance_m(self, t_s: float) -> tuple[float, bool]:
        """(distance to the post, moving?) at time t_s."""
        half = self.dwell_s / 2.0
        dt = t_s - self.t_mid_s
        if self.dwell_s > 0 and abs(dt) <= half:
            return self.offset_m, False
        along = (abs(dt) - half) * self.speed_mps
        return math.hypot(self.offset_m, along), True

    def span_s(self, reach_m: float) -> tuple[float, float]:
        along = math.sqrt(max(reach_m ** 2 - self.offset_m ** 2, 0.0)) / self.speed_mps
        return self.t_mid_s - self.dwell_s / 2 - along, self.t_mid_s + self.dwell_s / 2 + along


@dataclass
class Scenario:
    """Ground truth for one emulated lamppost. Time `t` is seconds since the world started."""

    start_epoch: int = DEFAULT_START_EPOCH
    seed: int = 1
    weather: str = "overcast"
    temp_mean_c: float = 7.0
    temp_swing_c: float = 4.0
    humidity_mean_pct: float = 75.0
    pressure_hpa: float = 1008.0
    pm25_base_ugm3: float = 12.0
    episodes: list[Episode] = field(default_factory=list)
    sunrise_h: float = 7.6
    sunset_h: float = 16.2
    street_light_lux: float = 1.5  # ambient at night from other lights
    footfall: tuple[int, ...] = DEFAULT_FOOTFALL
    footfall_scale: float = 1.0
    bus_stop_per_h: float = 0.3  # people who stop under the post for minutes
    extra_pedestrians: list[Pedestrian] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    radar_reach_m: float = 6.0
    pir_reach_m: float = 4.5
    pir_hold_s: float = 2.5
    # The board's RTC after a power cut: 2000-01-01 as on a cold-booted ESP32 (True), or the
    # scenario's time already set (False). A reset that is not a power cut keeps the RTC.
    rtc_cold_start: bool = True
    ntp_reachable: bool = True  # the world answers the node's NTP query (over its Wi-Fi)
    wifi_rssi_dbm: int = -61  # the street's signal at the post; weak_signal makes it -87
    wifi_assoc_ms: int = 1200  # association and DHCP; four times as long on a weak signal
    wifi_password: str | None = None  # the access point's passphrase (None: any is taken)
    net_faults: list[NetFault] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.weather not in WEATHER:
            raise ValueError(f"unknown weather {self.weather!r}; choose from {', '.join(WEATHER)}")
        self._hours: dict[int, list[Pedestrian]] = {}
        self._near_key = -1
        self._near: list[Pedestrian] = []
        self._pir_key = -1
        self._pir_near: list[Pedestrian] = []

    # -- time of day -------------------------------------------------------------------------
    def hour_of_day(self, t: float) -> float:
        return ((self.start_epoch + t) % 86400) / 3600.0

    def epoch(self, t: float) -> float:
        return self.start_epoch + t

    # -- light and weather ------------------------------------------------------------------
    def lux(self, t: float) -> float:
        """Ambient light at the sensor: daylight, civil twilight, then the street's own glow."""
        h = self.hour_of_day(t)
        factor = WEATHER[self.weather][0]
        night = self.street_light_lux
        if self.sunrise_h <= h <= self.sunset_h:
            frac = (h - self.sunrise_h) / (self.sunset_h - self.sunrise_h)
            return night + 400.0 * factor + 20000.0 * factor * math.sin(math.pi * frac) ** 1.5
        # twilight: from sunset light down by e every 6 minutes (mirror image before sunrise)
        minutes = min((h - self.sunset_h) % 24.0, (self.sunrise_h - h) % 24.0) * 60.0
        return night + 400.0 * factor * math.exp(-minutes / 6.0)

    def temperature_c(self, t: float) -> float:
        h = self.hour_of_day(t)
        off = WEATHER[self.weather][1]
        # coldest just before sunrise, warmest mid-afternoon
        return self.temp_mean_c + off + self.temp_swing_c * math.sin(2 * math.pi * (h - 9.0) / 24.0)

    def humidity_pct(self, t: float) -> float:
        h = self.hour_of_day(t)
        off = WEATHER[self.weather][2]
        v = self.humidity_mean_pct + off - 12.0 * math.sin(2 * math.pi * (h - 9.0) / 24.0)
        return max(5.0, min(99.0, v))

    def pressure(self, t: float) -> float:
        off = WEATHER[self.weather][3]
        return self.pressure_hpa + off + 2.5 * math.sin(2 * math.pi * t / (30 * 3600.0))

    def pm25(self, t: float) -> float:
        h = self.hour_of_day(t)
        # traffic: morning and evening rush
        traffic = 6.0 * math.exp(-((h - 8.5) / 1.2) ** 2) + 8.0 * math.exp(-((h - 17.8) / 1.5) ** 2)
        v = self.pm25_base_ugm3 + traffic
        th = t / 3600.0
        for e in self.episodes:
            v += e.peak_ugm3 * math.exp(-((th - e.centre_h) / e.width_h) ** 2)
        return v

    def pm10(self, t: float) -> float:
        return self.pm25(t) * 1.45

    def truth(self, t: float) -> dict[str, float]:
        """The true value of every telemetry metric the node measures, at time t."""
        return {
            "temperature_c": self.temperature_c(t), "humidity_pct": self.humidity_pct(t),
            "pressure_hpa": self.pressure(t), "pm25_ugm3": self.pm25(t),
            "pm10_ugm3": self.pm10(t), "lux": self.lux(t),
        }

    # -- pedestrians ------------------------------------------------------------------------
    def _pedestrians_of_hour(self, index: int) -> list[Pedestrian]:
        """Pedestrians whose nearest point falls in hour `index` after the start (cached)."""
        if index not in self._hours:
            rng = random.Random(self.seed * 1000003 + index)
            hod = int(self.hour_of_day(index * 3600.0)) % 24
            rate = self.footfall[hod] * self.footfall_scale
            people = []
            t = 0.0
            while rate > 0:
                t += rng.expovariate(rate / 3600.0)
                if t >= 3600.0:
                    break
                people.append(Pedestrian(index * 3600.0 + t, rng.uniform(0.5, 3.0),
                                         rng.uniform(1.0, 1.6)))
            t = 0.0
            while self.bus_stop_per_h > 0:
                t += rng.expovariate(self.bus_stop_per_h / 3600.0)
                if t >= 3600.0:
                    break
                people.append(Pedestrian(index * 3600.0 + t, rng.uniform(1.5, 3.0), 1.2,
                                         dwell_s=rng.uniform(60.0, 300.0)))
            if len(self._hours) > 64:
                self._hours.pop(min(self._hours))
            self._hours[index] = people
        return self._hours[index]

    def pedestrians_near(self, t: float) -> list[Pedestrian]:
        """Everyone within radar reach at some moment of the second containing t (cached)."""
        key = int(t)
        if key != self._near_key:
            self._near_key = key
            self._near = self._pedestrians_within(float(key), key + 1.0)
        return self._near

    def _pedestrians_within(self, t0: float, t1: float) -> list[Pedestrian]:
        out = []
        idx = int(t0 // 3600.0)
        for i in (idx - 1, idx, idx + 1):
            if i < 0:
                continue
            for p in self._pedestrians_of_hour(i):
                lo, hi = p.span_s(self.radar_reach_m)
                if lo <= t1 and t0 <= hi:
                    out.append(p)
        for p in self.extra_pedestrians:
            lo, hi = p.span_s(self.radar_reach_m)
            if lo <= t1 and t0 <= hi:
                out.append(p)
        return out

    def presence_spans(self, t0: float, t1: float, reach_m: float) -> list[tuple[float, float]]:
        """(start, end) of every pedestrian within `reach_m` of the post between t0 and t1."""
        spans = []
        for i in range(max(0, int(t0 // 3600.0) - 1), int(t1 // 3600.0) + 2):
            for p in self._pedestrians_of_hour(i):
                lo, hi = p.span_s(reach_m)
                if hi >= t0 and lo <= t1 and hi > lo:
                    spans.append((lo, hi))
        for p in self.extra_pedestrians:
            lo, hi = p.span_s(reach_m)
            if hi >= t0 and lo <= t1 and hi > lo:
                spans.append((lo, hi))
        return sorted(spans)

    def radar_targets(self, t: float) -> tuple[float | None, float | None]:
        """(nearest moving target cm, nearest stationary target cm) the radar sees at t."""
        moving = still = None
        for p in self.pedestrians_near(t):
            d, is_moving = p.distance_m(t)
            if d > self.radar_reach_m:
                continue
            cm = d * 100.0
            if is_moving:
                moving = cm if moving is None else min(moving, cm)
            else:
                still = cm if still is None else min(still, cm)
        return moving, still

    def pir_level(self, t: float) -> int:
        """PIR output: high while someone moves within reach, and `pir_hold_s` after."""
        key = int(t)
        if key != self._pir_key:
            self._pir_key = key
            self._pir_near = self._pedestrians_within(key - self.pir_hold_s, key + 1.0)
        for p in self._pir_near:
            for back in (0.0, self.pir_hold_s / 2, self.pir_hold_s):
                d, is_moving = p.distance_m(t - back)
                if is_moving and d <= self.pir_reach_m:
                    return 1
        return 0

    # -- faults -----------------------------------------------------------------------------
    def fault(self, sensor: str, t: float) -> str | None:
        """The fault `sensor` shows at time t, if any (the latest-starting one wins)."""
        found = None
        for f in self.faults:
            if f.sensor == sensor and f.start_s <= t < f.end_s:
                found = f.kind
        return found

    def net_fault(self, t: float) -> str | None:
        """The network fault in force at scenario time `t`, if any."""
        for fault in self.net_faults:
            if fault.start_s <= t < fault.end_s:
                return fault.kind
        return None

    def is_night(self, t: float, threshold_lux: float = 30.0) -> bool:
        return self.lux(t) < threshold_lux
