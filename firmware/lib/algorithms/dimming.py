"""Lamp level policy: dusk/dawn hysteresis, dim when empty, full on presence, fail lit."""

# MicroPython 1.9 syntax only: this module also runs on the bare-metal micro:bit build.

# Kept small (split into short classes and functions, explanations in comments rather than
# docstrings) so that each piece compiles within the micro:bit's ~9 KB heap.
#
# Priority of decide(), highest first:
# 1. an active operator override, except that an override of 0 during a fault still gives
#    full_level (fail lit);
# 2. a fault (reported by the caller, or lux None) -> full_level, day or night;
# 3. day -> 0;
# 4. night and occupied -> full_level;
# 5. night and empty -> the schedule's level for the current minute of day if a schedule
#    entry covers it, else dim_level.
# Before the first valid lux reading the lamp is at full_level.

DAY = "day"
NIGHT = "night"


class DayNight:
    # Dusk/dawn detector: lux must stay past a threshold for confirm_ms to switch.

    # Night starts once lux stays below dusk_lux for confirm_ms, and ends once lux stays
    # above dawn_lux for confirm_ms: headlights or a shadow shorter than that change
    # nothing. The first reading decides at once: lux <= dawn_lux is night (the lit side).

    def __init__(self, dusk_lux, dawn_lux, confirm_ms):
        if dusk_lux > dawn_lux:
            raise ValueError("dusk_lux > dawn_lux")
        self.dusk_lux = dusk_lux
        self.dawn_lux = dawn_lux
        self.confirm_ms = confirm_ms
        self.state = None
        self._since = None

    def update(self, now_ms, lux):
        if self.state is None:
            self.state = NIGHT if lux <= self.dawn_lux else DAY
        elif (lux < self.dusk_lux) if self.state == DAY else (lux > self.dawn_lux):
            if self._since is None:
                self._since = now_ms
            if now_ms - self._since >= self.confirm_ms:
                self.state = NIGHT if self.state == DAY else DAY
                self._since = None
        else:
            self._since = None
        return self.state


def scheduled_level(schedule, minute):
    # Level of the first (start, end, level) entry covering minute, else None.
    # start inclusive, end exclusive, minutes of the day; start > end wraps past midnight
    if minute is None:
        return None
    for entry in schedule:
        start, end = entry[0], entry[1]
        if start <= minute < end if start <= end else (minute >= start or minute < end):
            return entry[2]
    return None


class DimmingPolicy:
    # Lamp level (percent) and ramp time from daylight, presence, faults, overrides.

    # The schedule, a list of (start_minute, end_minute, level), sets the empty-street level
    # at night only: it never lights the lamp by day, never lowers it below full on
    # presence, and is ignored when decide() gets no minute_of_day.

    def __init__(self, dusk_lux=30.0, dawn_lux=60.0, dim_level=30, full_level=100,
                 ramp_up_ms=1000, ramp_down_ms=10000, schedule=None, confirm_ms=30000):
        self.daynight = DayNight(dusk_lux, dawn_lux, confirm_ms)
        self.dim_level = dim_level
        self.full_level = full_level
        self.ramp_up_ms = ramp_up_ms
        self.ramp_down_ms = ramp_down_ms
        self.schedule = schedule or []
        self.state = None  # DAY or NIGHT once a valid lux reading has arrived
        self.level = full_level  # last decided level: fail lit until told otherwise
        self.ramp_ms = 0
        self.override = None  # (level, until_ms or None)

    def set_override(self, level, until_ms=None):
        # Force level until until_ms (None: until clear_override()).
        if level < 0 or level > 100:
            raise ValueError("level 0..100")
        self.override = (level, until_ms)

    def clear_override(self):
        self.override = None

    def target(self, now_ms, lux, occupied, fault, minute):
        if lux is None:
            fault = True
        else:
            self.state = self.daynight.update(now_ms, lux)
        over = self.override
        if over is not None and over[1] is not None and now_ms >= over[1]:
            over = self.override = None
        if over is not None:
            return self.full_level if fault and over[0] == 0 else over[0]
        if fault or self.state is None:
            return self.full_level
        if self.state == DAY:
            return 0
        level = scheduled_level(self.schedule, minute)
        if level is None:
            level = self.dim_level
        return max(self.full_level, level) if occupied else level

    def decide(self, now_ms, lux, occupied, fault, minute_of_day=None):
        # Return (level_percent, ramp_ms) to drive the lamp with.
        # ramp_ms is ramp_up_ms for a rise, ramp_down_ms for a fall, and for an unchanged
        # level the ramp of the last change (so a caller may re-apply the pair every tick)
        target = self.target(now_ms, lux, occupied, fault, minute_of_day)
        if target > self.level:
            self.ramp_ms = self.ramp_up_ms
        elif target < self.level:
            self.ramp_ms = self.ramp_down_ms
        self.level = target
        return target, self.ramp_ms


def energy_wh(level_percent, dt_ms, rated_w):
    # Energy in Wh a lamp of `rated_w` uses at `level_percent` for `dt_ms` (linear model).
    return rated_w * (level_percent / 100.0) * (dt_ms / 3600000.0)
