"""PIR motion sensor driver (GPIO level), with detection of an output stuck active."""

from drivers import Health


class PIR:
    """read(now_ms) returns the motion level 0/1 (active-high unless told otherwise).

    A real PIR drops its output a few seconds after motion stops; one that stays active for
    stuck_ms is reported as the fault "stuck" and read as 0 until it recovers.
    """

    def __init__(self, pin, active_high=True, stuck_ms=600000):
        self.pin = pin
        self.active_high = active_high
        self.stuck_ms = stuck_ms
        self.health = Health()
        self._high_since = None

    def read(self, now_ms):
        level = self.pin.value()
        if not self.active_high:
            level = 0 if level else 1
        if not level:
            self._high_since = None
            self.health.ok()
            return 0
        if self._high_since is None:
            self._high_since = now_ms
        if now_ms - self._high_since >= self.stuck_ms:
            self.health.fault("stuck")
            return 0
        return 1
