"""PMS5003 model: streams real 32-byte frames (0x42 0x4D, length, words, checksum) each second."""

from __future__ import annotations

import random
import struct

FRAME_PERIOD_MS = 1000


def frame(pm1: int, pm25: int, pm10: int, counts: tuple[int, ...], bad_checksum: bool = False
          ) -> bytes:
    """One active-mode frame; CF=1 and atmospheric values are given the same numbers here."""
    words = [pm1, pm25, pm10, pm1, pm25, pm10, *counts[:6], 0]
    body = b"\x42\x4d" + struct.pack(">H", 2 * 13 + 2) + struct.pack(">13H", *words)
    check = sum(body) & 0xFFFF
    if bad_checksum:
        check ^= 0x5A5A
    return body + struct.pack(">H", check)


class Pms5003Model:
    """Particulate sensor on a UART; `truth()` gives (pm25, pm10) in ug/m3.

    Faults: "garbage" (random bytes between and inside frames), "bad_checksum", "stuck" (the
    same frame over and over), "silent"/"missing" (nothing at all).
    """

    def __init__(self, truth, rng: random.Random | None = None) -> None:
        self.truth = truth
        self.rng = rng or random.Random(3)
        self.fault: str | None = None
        self._last: bytes | None = None

    def emit(self, now_ms: int) -> bytes:
        """Bytes the sensor sends for the frame due at `now_ms`."""
        if self.fault in ("silent", "missing"):
            return b""
        if self.fault == "stuck" and self._last is not None:
            return self._last
        pm25, pm10 = self.truth()
        noisy25 = max(0.0, pm25 * (1.0 + self.rng.gauss(0.0, 0.04)))
        noisy10 = max(noisy25, pm10 * (1.0 + self.rng.gauss(0.0, 0.04)))
        pm1 = 0.7 * noisy25
        counts = tuple(int(max(0.0, k * noisy25 * (1.0 + self.rng.gauss(0.0, 0.05))))
                       for k in (180.0, 52.0, 9.0, 1.1, 0.3, 0.08))
        f = frame(int(round(pm1)), int(round(noisy25)), int(round(noisy10)), counts,
                  bad_checksum=self.fault == "bad_checksum")
        self._last = f
        if self.fault == "garbage":
            junk = self.rng.randbytes(self.rng.randint(3, 20))
            if self.rng.random() < 0.5:
                junk = b"\x42" + junk  # a false start of frame
            cut = self.rng.randint(0, 31) if self.rng.random() < 0.3 else 32
            return junk + f[:cut]  # sometimes a frame is cut short by the noise
        return f
