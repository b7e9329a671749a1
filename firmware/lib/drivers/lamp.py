"""Lamp driver: PWM duty for a level in percent, with a timed linear ramp; full is the default."""

from micropython import const

_FULL_DUTY = const(65535)


class Lamp:
    """set(level, ramp_ms, now_ms) starts a ramp; update(now_ms) moves along it.

    The duty is written only when it changes. full() jumps to 100 % at once (fail lit).
    """

    def __init__(self, pwm):
        self.pwm = pwm
        self.level = 100.0  # current level in percent
        self.target = 100.0
        self._from = 100.0
        self._start_ms = 0
        self.ramp_ms = 0
        self._duty = -1
        self.write()

    def write(self):
        duty = int(self.level * _FULL_DUTY / 100.0 + 0.5)
        if duty != self._duty:
            self.pwm.duty_u16(duty)
            self._duty = duty

    def full(self):
        self.level = 100.0
        self.target = 100.0
        self.ramp_ms = 0
        self.write()

    def set(self, level, ramp_ms, now_ms):
        if level < 0:
            level = 0
        elif level > 100:
            level = 100
        if level == self.target:
            return
        self.target = float(level)
        self._from = self.level
        self._start_ms = now_ms
        self.ramp_ms = ramp_ms
        self.update(now_ms)

    def update(self, now_ms):
        if self.level == self.target:
            return self.level
        elapsed = now_ms - self._start_ms
        if self.ramp_ms <= 0 or elapsed >= self.ramp_ms:
            self.level = self.target
        else:
            self.level = self._from + (self.target - self._from) * elapsed / self.ramp_ms
        self.write()
        return self.level
