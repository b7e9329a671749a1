"""A UART receive buffer fed by a streaming device model on the world's virtual clock."""

from __future__ import annotations


class UartChannel:
    """RX side of one UART: the device emits a frame every `period_ms`; the buffer is bounded
    like a real driver's ring buffer (bytes arriving when it is full are lost)."""

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
            room = self.rx_capacity - len(self.rx)
            if len(chunk) > room:
                self.overflowed += len(chunk) - max(room, 0)
                chunk = chunk[:max(room, 0)]
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
