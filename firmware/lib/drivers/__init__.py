"""Sensor and lamp drivers; each takes its bus or pin in the constructor and keeps its health."""


class SensorFault(Exception):
    """A sensor cannot give a trustworthy reading; args[0] is the fault kind."""


class Health:
    """Fault bookkeeping for one sensor.

    `faults` counts fault episodes (a device that stays missing counts once until it recovers)
    plus every discrete corruption (a bad checksum, a run of garbage bytes).
    """

    def __init__(self):
        self.faults = 0
        self.failed = False  # True while the sensor gives no trustworthy reading
        self.last = None  # kind of the latest fault

    def fault(self, kind):
        """The sensor is failing as `kind` (counted once per episode and kind)."""
        if not self.failed or kind != self.last:
            self.faults += 1
        self.failed = True
        self.last = kind

    def event(self, kind):
        """A discrete corruption that the driver recovered from (always counted)."""
        self.faults += 1
        self.last = kind

    def ok(self):
        self.failed = False


def drain_uart(uart, chunk, feed):
    """Read everything waiting on `uart` through the preallocated `chunk`, byte by byte into
    `feed` (a frame parser's state machine); stops at the first short read."""
    while True:
        n = uart.readinto(chunk)
        if not n:
            return
        for i in range(n):
            feed(chunk[i])
        if n < len(chunk):
            return
