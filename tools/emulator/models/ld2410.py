"""LD2410 radar model: basic-mode report frames (F4 F3 F2 F1 ... F8 F7 F6 F5) every 100 ms."""

from __future__ import annotations

import random
import struct

FRAME_PERIOD_MS = 100
HEADER = b"\xf4\xf3\xf2\xf1"
FOOTER = b"\xf8\xf7\xf6\xf5"

NO_TARGET, MOVING, STATIONARY, BOTH = 0, 1, 2, 3


def report_frame(state: int, moving_cm: int, moving_energy: int, still_cm: int,
                 still_energy: int, detect_cm: int) -> bytes:
    """One basic target report: type 0x02, head 0xAA, target data, tail 0x55, check 0x00."""
    data = struct.pack("<BBBHBHBHBB", 0x02, 0xAA, state, moving_cm, moving_energy, still_cm,
                       still_energy, detect_cm, 0x55, 0x00)
    return HEADER + struct.pack("<H", len(data)) + data + FOOTER


class Ld2410Model:
    """mmWave radar on a UART; `targets()` gives (moving_cm or None, still_cm or None).

    Faults: "garbage" (noise bytes mixed in, broken frames), "silent"/"missing", "stuck"
    (the same report forever).
    """

    def __init__(self, targets, rng: random.Random | None = None) -> None:
        self.targets = targets
        self.rng = rng or random.Random(4)
        self.fault: str | None = None
        self._last: bytes | None = None

    def emit(self, now_ms: int) -> bytes:
        if self.fault in ("silent", "missing"):
            return b""
        if self.fault == "stuck" and self._last is not None:
            return self._last
        moving, still = self.targets()
        state = (MOVING if moving is not None else 0) | (STATIONARY if still is not None else 0)
        m_cm = int(moving) if moving is not None else 0
        s_cm = int(still) if still is not None else 0
        detect = min(x for x in (m_cm or 9999, s_cm or 9999)) if state else 0
        f = report_frame(state, m_cm, 60 if moving is not None else 0, s_cm,
                         45 if still is not None else 0, detect if detect != 9999 else 0)
        self._last = f
        if self.fault == "garbage":
            junk = self.rng.randbytes(self.rng.randint(2, 12))
            if self.rng.random() < 0.5:
                junk = b"\xf4\xf3" + junk
            return junk + (f if self.rng.random() < 0.7 else f[: self.rng.randint(4, 20)])
        return f
