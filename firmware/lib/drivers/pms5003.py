"""PMS5003 particulate sensor driver (UART): 32-byte frames, checksum, resync after garbage."""

from micropython import const

from drivers import Health, drain_uart

_FRAME = const(32)
_LEN = const(28)  # frame length field: 13 data words + checksum


class PMS5003:
    """Reads the sensor's active-mode stream. poll(now_ms) returns True when a valid frame
    arrived since the last poll (values in .pm1_ugm3/.pm25_ugm3/.pm10_ugm3, atmospheric).

    Counted faults: "checksum" and "garbage" (each recovered from), "silent" (no valid frame
    for silence_ms), "stuck" (the same frame data stuck_limit times in a row).
    """

    def __init__(self, uart, silence_ms=5000, stuck_limit=30):
        self.uart = uart
        self.silence_ms = silence_ms
        self.stuck_limit = stuck_limit
        self.health = Health()
        self.pm1_ugm3 = None
        self.pm25_ugm3 = None
        self.pm10_ugm3 = None
        self.frames = 0
        self._chunk = bytearray(64)
        self._feeder = self.feed  # bound once: no allocation per poll
        self.frame = bytearray(_FRAME)
        self._prev = bytearray(24)
        self.pos = 0
        self._same = 0
        self._last_ok_ms = None
        self.new = False
        self._heard = False
        self._skipped = 0

    def feed(self, b):
        f = self.frame
        pos = self.pos
        if pos == 0:
            if b == 0x42:
                f[0] = b
                self.pos = 1
            else:
                self._skipped += 1
            return
        if pos == 1:
            if b == 0x4D:
                f[1] = b
                self.pos = 2
            elif b == 0x42:
                self._skipped += 1  # the previous 0x42 was noise; this may be the start
            else:
                self._skipped += 2
                self.pos = 0
            return
        f[pos] = b
        pos += 1
        self.pos = pos
        if pos == 4 and ((f[2] << 8) | f[3]) != _LEN:
            self._resync(1)
        elif pos == _FRAME:
            self.pos = 0
            self._complete()

    def _resync(self, start):
        """Drop a false start: look for the next 0x42 in what was buffered and re-feed from it."""
        f = self.frame
        end = self.pos
        self.pos = 0
        i = start
        while i < end and f[i] != 0x42:
            i += 1
        self._skipped += i
        while i < end:
            b = f[i]
            i += 1
            self.feed(b)

    def _complete(self):
        f = self.frame
        total = 0
        for i in range(30):
            total += f[i]
        if (total & 0xFFFF) != ((f[30] << 8) | f[31]):
            self.health.event("checksum")
            self.pos = _FRAME
            self._resync(1)
            return
        prev = self._prev
        same = True
        for i in range(24):
            if prev[i] != f[4 + i]:
                same = False
                prev[i] = f[4 + i]
        self._same = self._same + 1 if same else 0
        self._heard = True
        if self._same >= self.stuck_limit:
            self.health.fault("stuck")
            return
        self.pm1_ugm3 = (f[10] << 8) | f[11]
        self.pm25_ugm3 = (f[12] << 8) | f[13]
        self.pm10_ugm3 = (f[14] << 8) | f[15]
        self.frames += 1
        self.new = True

    def poll(self, now_ms):
        """Consume what the UART holds; return True if a new valid frame came in."""
        self.new = False
        self._heard = False
        self._skipped = 0
        drain_uart(self.uart, self._chunk, self._feeder)
        if self._skipped:
            self.health.event("garbage")
        if self.new:
            self._last_ok_ms = now_ms
            if self._same < self.stuck_limit:
                self.health.ok()
            return True
        if self._last_ok_ms is None or self._heard:
            self._last_ok_ms = now_ms  # a stuck sensor is not a silent one
        if now_ms - self._last_ok_ms >= self.silence_ms:
            self.health.fault("silent")
        return False
