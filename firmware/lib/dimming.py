"""Lamp level policy: dusk/dawn hysteresis, dim when empty, full on presence, fail lit."""

# MicroPython 1.9 syntax only: this module also runs on the bare-metal micro:bit build.

DAY = "day"
NIGHT = "night"


class DimmingPolicy:
    """Decides the lamp level (percent) and the ramp time to reach it.

    Night starts once lux stays below `dusk_lux` for `confirm_ms`, and ends once lux stays
    above `dawn_lux` for `confirm_ms`; a headlight flash or a passing shadow shorter than
    that changes nothing. The first valid reading decides at once (lux <= dawn_lux: night,
    the lit side, since the lamp is safer on than off).

    Priority, highest first:
    1. an active operator override, except that an override of 0 during a fault still
       gives full_level (fail lit);
    2. a fault (reported by the caller, or lux None) -> full_level, day or night;
    3. day -> 0;
    4. night and occupied -> full_level;
    5. night and empty -> the schedule's level for the current minute of day if a schedule
       entry covers it, else dim_level.

    `schedule` is a list of (start_minute, end_minute, level): from start (inclusive) to end
    (exclusive), minutes of the day 0..1439, wrapping past midnight when start > end. It sets
    the empty-street level at night only; it never lights the lamp by day, never lowers it
    below full on presence, and is ignored when decide() gets no minute_of_day.
    """

    def __init__(self, dusk_lux=30.0, dawn_lux=60.0, dim_level=30, full_level=100,
                 ramp_up_ms=1000, ramp_down_ms=10000, schedule=None, confirm_ms=30000):
        if dusk_lux > dawn_lux:
            raise ValueError("dusk_lux must not exceed dawn_lux")
        self.dusk_lux = dusk_lux
        self.dawn_lux = dawn_lux
        self.dim_level = dim_level
        self.full_level = full_level
        self.ramp_up_ms = ramp_up_ms
        self.ramp_down_ms = ramp_down_ms
        self.schedule = schedule or []
        self.confirm_ms = confirm_ms
        self.state = None  # DAY or NIGHT once a valid lux reading has arrived
        self.level = full_level  # last decided level; fail lit until told otherwise
        self.ramp_ms = 0
        self._crossing_since = None
        self._override_level = None
        self._override_until = None

    def set_override(self, level, until_ms=None):
        """Force `level` until `until_ms` (monotonic ms; None: until clear_override())."""
        if level < 0 or level > 100:
            raise ValueError("override level must be 0..100")
        self._override_level = level
        self._override_until = until_ms

    def clear_override(self):
        self._override_level = None
        self._override_until = None

    def override_active(self, now_ms):
        if self._override_level is None:
            return False
        if self._override_until is not None and now_ms >= self._override_until:
            self.clear_override()
            return False
        return True

    def _update_state(self, now_ms, lux):
        if self.state is None:
            self.state = NIGHT if lux <= self.dawn_lux else DAY
            return
        if self.state == DAY:
            crossing = lux < self.dusk_lux
        else:
            crossing = lux > self.dawn_lux
        if not crossing:
            self._crossing_since = None
            return
        if self._crossing_since is None:
            self._crossing_since = now_ms
        if now_ms - self._crossing_since >= self.confirm_ms:
            self.state = NIGHT if self.state == DAY else DAY
            self._crossing_since = None

    def _scheduled_level(self, minute_of_day):
        if minute_of_day is None:
            return None
        for entry in self.schedule:
            start, end, level = entry[0], entry[1], entry[2]
            if start <= end:
                inside = start <= minute_of_day < end
            else:
                inside = minute_of_day >= start or minute_of_day < end
            if inside:
                return level
        return None

    def _target(self, now_ms, lux, occupied, fault, minute_of_day):
        if lux is None:
            fault = True
        else:
            self._update_state(now_ms, lux)
        if self.override_active(now_ms):
            if fault and self._override_level == 0:
                return self.full_level
            return self._override_level
        if fault or self.state is None:
            return self.full_level
        if self.state == DAY:
            return 0
        scheduled = self._scheduled_level(minute_of_day)
        empty_level = self.dim_level if scheduled is None else scheduled
        if occupied:
            return max(self.full_level, empty_level)
        return empty_level

    def decide(self, now_ms, lux, occupied, fault, minute_of_day=None):
        """Return (level_percent, ramp_ms): the level to drive and how long to take.

        ramp_ms is ramp_up_ms for a rise, ramp_down_ms for a fall, and for an unchanged level
        the ramp of the last change (so a caller may re-apply the pair every tick).
        """
        target = self._target(now_ms, lux, occupied, fault, minute_of_day)
        if target > self.level:
            self.ramp_ms = self.ramp_up_ms
        elif target < self.level:
            self.ramp_ms = self.ramp_down_ms
        self.level = target
        return target, self.ramp_ms


def energy_wh(level_percent, dt_ms, rated_w):
    """Energy in Wh a lamp of `rated_w` uses at `level_percent` for `dt_ms` (linear model)."""
    return rated_w * (level_percent / 100.0) * (dt_ms / 3600000.0)
