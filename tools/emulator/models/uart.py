"""A UART receive buffer fed by a streaming device model on the world's virtual clock."""

from __future__ import annotations


class UartChannel:
    """RX side of one UART: the device emits a frame every `period_ms`; the buffer is bounded
    like a real driver's ring buffer, and a frame that does not fit is lost whole.

    Whole, not cut: the buffer fills when the node has not read for a while in virtual time,
    which at high emulation speeds is the node's own computing multiplied by the speed. A cut
    frame would read as line noise and count as a sensor fault that real time never shows;
    a lost frame is only a missed sample, so the same day gives the same faults at any speed.
    """

    def __init__(self, device, period_ms: int, rx_capacity: int = 512) -> None:
        self.device = device
        self.period_ms = period_ms
        self.rx_capacity = rx_capacity
        self.rx = bytearray()
        self.overflowed = 0
        self.written = bytearray()  # what the node sent to the device (commands)
        self._next_ms: int | None = None

    def advance(self, now_ms: int) -> None:
        """Let the device emit every frame due up to `now_ms`."""
        if self._next_ms is None:
            self._next_ms = now_ms
        # after a long gap (node off) only the last few frames still fit in the buffer
        if now_ms - self._next_ms > self.period_ms * 64:
            self._next_ms = now_ms - self.period_ms * 64
        while self._next_ms <= now_ms:
            chunk = self.device.emit(self._next_ms)
            if len(chunk) > self.rx_capacity - len(self.rx):
                self.overflowed += len(chunk)
            else:
                self.rx += chunk
            self._next_ms += self.period_ms

    def take(self, n: int) -> bytes:
        out = bytes(self.rx[:n])
        del self.rx[:n]
        return out

    def reset(self) -> None:
        """The node rebooted: its UART driver starts with an empty buffer."""
        self.rx.clear()
        self._next_ms = None
