"""LD2410 mmWave radar driver (UART): basic/engineering report frames, presence and distances."""

from micropython import const

from drivers import Health, drain_uart

_MAX_DATA = const(48)  # engineering-mode reports are the longest (about 35 bytes of data)
_HEAD = const(b"\xf4\xf3\xf2\xf1")
_TAIL = const(b"\xf8\xf7\xf6\xf5")


class LD2410:
    """Reads target reports. poll(now_ms) returns True when a valid report arrived; then
    .state (0 none, 1 moving, 2 stationary, 3 both), .moving_cm, .still_cm, .detect_cm.

    .presence is True/False, or None while the radar is silent (faulty). Counted faults:
    "frame" (a corrupt report, recovered from), "silent" (nothing valid for silence_ms).
    """

    def __init__(self, uart, silence_ms=3000):
        self.uart = uart
        self.silence_ms = silence_ms
        self.health = Health()
        self.state = 0
        self.moving_cm = 0
        self.still_cm = 0
        self.detect_cm = 0
        self.presence = None
        self.reports = 0
        self._chunk = bytearray(128)
        self._feeder = self.feed  # bound once: no allocation per poll
        self.buf = bytearray(6 + _MAX_DATA + 4)
        self.pos = 0
        self._need = 0
        self._last_ok_ms = None
        self.new = False
        self._bad = 0

    def feed(self, b):
        buf = self.buf
        pos = self.pos
        if pos < 4:
            if b == _HEAD[pos]:
                buf[pos] = b
                self.pos = pos + 1
            elif b == _HEAD[0]:
                buf[0] = b
                self.pos = 1
            else:
                if pos:
                    self._bad += 1
                self.pos = 0
            return
        buf[pos] = b
        pos += 1
        self.pos = pos
        if pos == 6:
            n = buf[4] | (buf[5] << 8)
            if n < 13 or n > _MAX_DATA:
                self._bad += 1
                self.pos = 0
                return
            self._need = 6 + n + 4
        elif pos > 6 and pos == self._need:
            self.pos = 0
            self._complete(pos)

    def _complete(self, end):
        buf = self.buf
        n = end - 10
        ok = buf[end - 4] == 0xF8 and buf[end - 3] == 0xF7 and buf[end - 2] == 0xF6 \
            and buf[end - 1] == 0xF5 and buf[7] == 0xAA and buf[6 + n - 2] == 0x55 \
            and buf[6] in (0x01, 0x02)
        if not ok:
            self._bad += 1
            return
        self.state = buf[8] & 0x03
        self.moving_cm = buf[9] | (buf[10] << 8)
        self.still_cm = buf[12] | (buf[13] << 8)
        self.detect_cm = buf[15] | (buf[16] << 8)
        self.reports += 1
        self.new = True

    def poll(self, now_ms):
        """Consume what the UART holds; return True if a valid report came in."""
        self.new = False
        self._bad = 0
        drain_uart(self.uart, self._chunk, self._feeder)
        if self._bad:
            self.health.event("frame")
        if self.new:
            self._last_ok_ms = now_ms
            self.presence = self.state != 0
            self.health.ok()
            return True
        if self._last_ok_ms is None:
            self._last_ok_ms = now_ms
        if now_ms - self._last_ok_ms >= self.silence_ms:
            self.presence = None
            self.health.fault("silent")
        return False
