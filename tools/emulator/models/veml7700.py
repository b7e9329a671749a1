"""VEML7700 model: 16-bit command registers, ALS counts from lux with the gain/integration set."""

from __future__ import annotations

import random

DEVICE_ID = 0xC481  # register 0x07: address option 0xC4, device id 0x81
REG_ALS_CONF = 0x00
REG_ALS = 0x04
REG_WHITE = 0x05
REG_ID = 0x07

GAIN_BY_BITS = {0: 1.0, 1: 2.0, 2: 0.125, 3: 0.25}
IT_MS_BY_BITS = {0b1100: 25, 0b1000: 50, 0b0000: 100, 0b0001: 200, 0b0010: 400, 0b0011: 800}
LUX_PER_COUNT_AT_GAIN2_IT800 = 0.0036


def lux_per_count(conf: int) -> float:
    """Resolution of one ALS count for an ALS_CONF value (datasheet table, linear part)."""
    gain = GAIN_BY_BITS[(conf >> 11) & 0x3]
    it_ms = IT_MS_BY_BITS.get((conf >> 6) & 0xF, 100)
    return LUX_PER_COUNT_AT_GAIN2_IT800 * (800.0 / it_ms) * (2.0 / gain)


class Veml7700Model:
    """One VEML7700; `truth()` gives the ambient lux. Faults: missing, wrong_id, stuck, garbage."""

    def __init__(self, truth, rng: random.Random | None = None) -> None:
        self.truth = truth
        self.rng = rng or random.Random(2)
        self.regs = [0] * 8
        self.regs[REG_ALS_CONF] = 0x0001  # powered down after reset
        self.regs[REG_ID] = DEVICE_ID
        self.fault: str | None = None
        self._stuck: int | None = None

    def present(self) -> bool:
        return self.fault != "missing"

    def _counts(self) -> int:
        conf = self.regs[REG_ALS_CONF]
        if conf & 0x1:
            return self.regs[REG_ALS]  # shut down: the last value stays
        if self.fault == "garbage":
            return self.rng.randint(0, 0xFFFF)
        lux = self.truth()
        counts = lux / lux_per_count(conf)
        counts *= 1.0 + self.rng.gauss(0.0, 0.003)  # shot noise, about 0.3 %
        counts += self.rng.choice((-1, 0, 0, 1))
        return max(0, min(0xFFFF, int(round(counts))))

    def read(self, reg: int, n: int) -> bytes:
        out = bytearray()
        reg &= 0xFF
        if reg == REG_ALS:
            if self.fault == "stuck":
                if self._stuck is None:
                    self._stuck = self.regs[REG_ALS]
                self.regs[REG_ALS] = self._stuck
            else:
                self._stuck = None
                self.regs[REG_ALS] = self._counts()
        value = self.regs[reg] if reg < len(self.regs) else 0
        if reg == REG_ID and self.fault == "wrong_id":
            value = 0xC455
        out += value.to_bytes(2, "little")
        return bytes(out[:n]) + bytes(max(0, n - 2))

    def write(self, reg: int, data: bytes) -> None:
        if len(data) >= 2 and reg in (0, 1, 2, 3):
            self.regs[reg] = data[0] | (data[1] << 8)
