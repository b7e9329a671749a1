"""Structured node log: `<ms> <LEVEL> <event> k=v ...` lines to a stream plus a bounded ring."""

import sys

LEVELS = {"debug": 10, "info": 20, "warn": 30, "error": 40}
_NAMES = {10: "DEBUG", 20: "INFO", 30: "WARN", 40: "ERROR"}


def _default_clock():
    import time

    if hasattr(time, "ticks_ms"):
        return time.ticks_ms
    return lambda: int(time.monotonic() * 1000)


def _format_value(value):
    if isinstance(value, float):
        text = "%.4g" % value
    else:
        text = str(value)
    if not text or " " in text or "=" in text or '"' in text or "\n" in text:
        text = '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


class Log:
    """Writes one line per event and keeps the newest `ring` lines for the next check-in.

    Nothing is formatted for events below the current level.
    """

    def __init__(self, clock_ms=None, level="info", ring=32, stream=None):
        self._clock = clock_ms if clock_ms is not None else _default_clock()
        self._threshold = LEVELS[level]
        self._stream = stream if stream is not None else sys.stdout
        self._ring = [None] * ring
        self._next = 0
        self._stored = 0
        self.counts = {"warn": 0, "error": 0}

    def set_level(self, level):
        if level not in LEVELS:
            raise ValueError("unknown log level: %s" % level)
        self._threshold = LEVELS[level]

    def _emit(self, severity, event, fields):
        parts = ["%d %s %s" % (self._clock(), _NAMES[severity], event)]
        for key in sorted(fields):
            parts.append("%s=%s" % (key, _format_value(fields[key])))
        line = " ".join(parts)
        try:
            self._stream.write(line + "\n")
        except OSError:
            pass  # a broken console must never stop the node
        size = len(self._ring)
        if size:
            self._ring[self._next] = line
            self._next = (self._next + 1) % size
            if self._stored < size:
                self._stored += 1
        return line

    def debug(self, event, **fields):
        if self._threshold <= 10:
            self._emit(10, event, fields)

    def info(self, event, **fields):
        if self._threshold <= 20:
            self._emit(20, event, fields)

    def warn(self, event, **fields):
        self.counts["warn"] += 1
        if self._threshold <= 30:
            self._emit(30, event, fields)

    def error(self, event, **fields):
        self.counts["error"] += 1
        if self._threshold <= 40:
            self._emit(40, event, fields)

    def recent(self):
        """The kept lines, oldest first."""
        size = len(self._ring)
        start = (self._next - self._stored) % size if size else 0
        return [self._ring[(start + i) % size] for i in range(self._stored)]

    def clear_recent(self):
        """Forget the kept lines (after they were uploaded)."""
        self._stored = 0
