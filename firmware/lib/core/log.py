"""Structured node log: `<ms> <LEVEL> <event> k=v ...` lines to a stream plus a bounded ring."""

from micropython import const
import sys
import time

LEVELS = {"debug": 10, "info": 20, "warn": 30, "error": 40}
_NAMES = {10: "DEBUG", 20: "INFO", 30: "WARN", 40: "ERROR"}
_MAX_KEPT = const(255)  # bytes of one line the ring keeps (its length is one byte)


def _format_value(value):
    if isinstance(value, float):
        text = "%.4g" % value
    else:
        text = str(value)
    if not text or " " in text or "=" in text or '"' in text or "\n" in text:
        text = '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


class Log:
    """Writes one line per event and keeps the newest lines for the next check-in: at most
    `ring` of them, in a preallocated circular buffer of `ring_bytes` bytes (each entry a
    length byte and the line, whose first 255 bytes are kept).

    Nothing is formatted for events below the current level.
    """

    def __init__(self, clock_ms=None, level="info", ring=32, stream=None, ring_bytes=2560):
        self.clock = clock_ms if clock_ms is not None else time.ticks_ms
        self.threshold = LEVELS[level]
        self.stream = stream if stream is not None else sys.stdout
        self.max = ring
        self.buf = bytearray(ring_bytes if ring else 0)
        self.head = 0  # offset of the oldest kept entry
        self._used = 0  # bytes of the buffer in use
        self._stored = 0  # entries kept
        self.counts = {"warn": 0, "error": 0}

    def set_level(self, level):
        if level not in LEVELS:
            raise ValueError("unknown log level: %s" % level)
        self.threshold = LEVELS[level]

    def _emit(self, severity, event, fields):
        parts = ["%d %s %s" % (self.clock(), _NAMES[severity], event)]
        for key in sorted(fields):
            parts.append("%s=%s" % (key, _format_value(fields[key])))
        line = " ".join(parts)
        try:
            self.stream.write(line + "\n")
        except OSError:
            pass  # a broken console must never stop the node
        if self.max:
            self.keep(line.encode())
        return line

    def keep(self, data):
        """Append one line's bytes to the ring, forgetting the oldest lines to make room."""
        buf = self.buf
        size = len(buf)
        n = len(data)
        if n > _MAX_KEPT or n >= size:
            n = min(_MAX_KEPT, size - 1)
            while n and (data[n] & 0xC0) == 0x80:
                n -= 1  # never cut a UTF-8 character in two
        while self._stored and (self._stored >= self.max or self._used + 1 + n > size):
            length = buf[self.head]
            self.head = (self.head + 1 + length) % size
            self._used -= 1 + length
            self._stored -= 1
        pos = (self.head + self._used) % size
        buf[pos] = n
        pos = (pos + 1) % size
        first = size - pos
        view = memoryview(data)
        if first >= n:
            buf[pos:pos + n] = view[:n]
        else:
            buf[pos:] = view[:first]
            buf[:n - first] = view[first:n]
        self._used += 1 + n
        self._stored += 1

    def debug(self, event, **fields):
        if self.threshold <= 10:
            self._emit(10, event, fields)

    def info(self, event, **fields):
        if self.threshold <= 20:
            self._emit(20, event, fields)

    def warn(self, event, **fields):
        self.counts["warn"] += 1
        if self.threshold <= 30:
            self._emit(30, event, fields)

    def error(self, event, **fields):
        self.counts["error"] += 1
        if self.threshold <= 40:
            self._emit(40, event, fields)

    def recent(self):
        """The kept lines, oldest first."""
        buf = self.buf
        size = len(buf)
        out = []
        pos = self.head
        for _ in range(self._stored):
            n = buf[pos]
            pos = (pos + 1) % size
            if pos + n <= size:
                data = bytes(buf[pos:pos + n])
            else:
                data = bytes(buf[pos:]) + bytes(buf[:pos + n - size])
            out.append(data.decode())
            pos = (pos + n) % size
        return out

    def clear_recent(self):
        """Forget the kept lines (after they were uploaded)."""
        self.head = 0
        self._used = 0
        self._stored = 0
