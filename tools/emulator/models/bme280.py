"""BME280 model: the real register map, raw ADC values found by inverting the compensation."""

from __future__ import annotations

import random

CHIP_ID = 0x60
REG_CALIB_A = 0x88  # 0x88..0xA1: T1..T3, P1..P9, (0xA0 reserved), H1
REG_CHIP_ID = 0xD0
REG_RESET = 0xE0
REG_CALIB_B = 0xE1  # 0xE1..0xE7: H2..H6
REG_CTRL_HUM = 0xF2
REG_STATUS = 0xF3
REG_CTRL_MEAS = 0xF4
REG_CONFIG = 0xF5
REG_DATA = 0xF7  # 0xF7..0xFE: press[3], temp[3], hum[2]

# A plausible factory calibration (same orders of magnitude as real parts).
CALIB = {
    "T1": 27504, "T2": 26435, "T3": -1000,
    "P1": 36477, "P2": -10685, "P3": 3024, "P4": 2855, "P5": 140, "P6": -7,
    "P7": 15500, "P8": -14600, "P9": 6000,
    "H1": 75, "H2": 362, "H3": 0, "H4": 321, "H5": 50, "H6": 30,
}


def _tdiv(a: int, b: int) -> int:
    """C integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def compensate_t(adc_t: int, c: dict[str, int]) -> tuple[int, int]:
    """Datasheet int32 temperature compensation: (temperature in 0.01 degC, t_fine)."""
    var1 = (((adc_t >> 3) - (c["T1"] << 1)) * c["T2"]) >> 11
    var2 = (((((adc_t >> 4) - c["T1"]) * ((adc_t >> 4) - c["T1"])) >> 12) * c["T3"]) >> 14
    t_fine = var1 + var2
    return (t_fine * 5 + 128) >> 8, t_fine


def compensate_p(adc_p: int, t_fine: int, c: dict[str, int]) -> int:
    """Datasheet int64 pressure compensation: Pa in Q24.8 (0 when undefined)."""
    var1 = t_fine - 128000
    var2 = var1 * var1 * c["P6"]
    var2 = var2 + ((var1 * c["P5"]) << 17)
    var2 = var2 + (c["P4"] << 35)
    var1 = ((var1 * var1 * c["P3"]) >> 8) + ((var1 * c["P2"]) << 12)
    var1 = (((1 << 47) + var1) * c["P1"]) >> 33
    if var1 == 0:
        return 0
    p = 1048576 - adc_p
    p = _tdiv(((p << 31) - var2) * 3125, var1)
    var1 = (c["P9"] * (p >> 13) * (p >> 13)) >> 25
    var2 = (c["P8"] * p) >> 19
    return ((p + var1 + var2) >> 8) + (c["P7"] << 4)


def compensate_h(adc_h: int, t_fine: int, c: dict[str, int]) -> int:
    """Datasheet int32 humidity compensation: %RH in Q22.10."""
    v = t_fine - 76800
    v = ((((adc_h << 14) - (c["H4"] << 20) - (c["H5"] * v)) + 16384) >> 15) * (
        ((((((v * c["H6"]) >> 10) * (((v * c["H3"]) >> 11) + 32768)) >> 10) + 2097152)
         * c["H2"] + 8192) >> 14)
    v = v - (((((v >> 15) * (v >> 15)) >> 7) * c["H1"]) >> 4)
    v = max(0, min(v, 419430400))
    return v >> 12


def _search(target: float, lo: int, hi: int, f, increasing: bool) -> int:
    """Smallest x in [lo, hi] with f(x) >= target (increasing) or f(x) <= target (decreasing)."""
    while lo < hi:
        mid = (lo + hi) // 2
        v = f(mid)
        if (v >= target) if increasing else (v <= target):
            hi = mid
        else:
            lo = mid + 1
    return lo


def raw_for(temp_c: float, press_hpa: float, hum_pct: float,
            c: dict[str, int] = CALIB) -> tuple[int, int, int]:
    """Raw (adc_t, adc_p, adc_h) that compensate back to the given true values."""
    adc_t = _search(temp_c * 100.0, 0, (1 << 20) - 1, lambda x: compensate_t(x, c)[0], True)
    t_fine = compensate_t(adc_t, c)[1]
    adc_p = _search(press_hpa * 100.0 * 256.0, 0, (1 << 20) - 1,
                    lambda x: compensate_p(x, t_fine, c), False)
    adc_h = _search(hum_pct * 1024.0, 0, (1 << 16) - 1,
                    lambda x: compensate_h(x, t_fine, c), True)
    return adc_t, adc_p, adc_h


def calibration_bytes(c: dict[str, int] = CALIB) -> tuple[bytes, bytes]:
    """The two calibration blocks exactly as the chip lays them out (0x88.., 0xE1..)."""
    a = bytearray(26)
    words = ["T1", "T2", "T3", "P1", "P2", "P3", "P4", "P5", "P6", "P7", "P8", "P9"]
    for i, name in enumerate(words):
        a[2 * i:2 * i + 2] = (c[name] & 0xFFFF).to_bytes(2, "little")
    a[25] = c["H1"] & 0xFF
    b = bytearray(7)
    b[0:2] = (c["H2"] & 0xFFFF).to_bytes(2, "little")
    b[2] = c["H3"] & 0xFF
    h4, h5 = c["H4"] & 0xFFF, c["H5"] & 0xFFF
    b[3] = (h4 >> 4) & 0xFF
    b[4] = ((h5 & 0x0F) << 4) | (h4 & 0x0F)
    b[5] = (h5 >> 4) & 0xFF
    b[6] = c["H6"] & 0xFF
    return bytes(a), bytes(b)


class Bme280Model:
    """One BME280 on the I2C bus; `truth()` gives (temp_c, press_hpa, hum_pct) right now.

    Fault kinds: "missing" (no ACK), "wrong_id" (answers as a BMP280), "stuck" (data
    registers frozen), "garbage" (random data registers).
    """

    def __init__(self, truth, rng: random.Random | None = None) -> None:
        self.truth = truth
        self.rng = rng or random.Random(1)
        self.regs = bytearray(256)
        self.fault: str | None = None
        self._stuck: bytes | None = None
        self._power_on()

    def _power_on(self) -> None:
        self.regs[:] = bytes(256)
        a, b = calibration_bytes()
        self.regs[REG_CALIB_A:REG_CALIB_A + 26] = a
        self.regs[REG_CALIB_B:REG_CALIB_B + 7] = b
        self.regs[REG_CHIP_ID] = CHIP_ID
        # reset values of the data registers ("no measurement yet")
        self.regs[REG_DATA:REG_DATA + 8] = bytes([0x80, 0, 0, 0x80, 0, 0, 0x80, 0])

    def present(self) -> bool:
        return self.fault != "missing"

    def _measure(self) -> None:
        if self.fault == "stuck":
            if self._stuck is None:
                self._stuck = bytes(self.regs[REG_DATA:REG_DATA + 8])
            self.regs[REG_DATA:REG_DATA + 8] = self._stuck
            return
        self._stuck = None
        if self.fault == "garbage":
            self.regs[REG_DATA:REG_DATA + 8] = self.rng.randbytes(8)
            return
        t, p, h = self.truth()
        adc_t, adc_p, adc_h = raw_for(t, p, h)
        # the converter's own noise: a few LSB on each channel
        adc_t += self.rng.randint(-8, 8)
        adc_p += self.rng.randint(-8, 8)
        adc_h += self.rng.randint(-2, 2)
        d = self.regs
        d[0xF7], d[0xF8], d[0xF9] = (adc_p >> 12) & 0xFF, (adc_p >> 4) & 0xFF, (adc_p & 0xF) << 4
        d[0xFA], d[0xFB], d[0xFC] = (adc_t >> 12) & 0xFF, (adc_t >> 4) & 0xFF, (adc_t & 0xF) << 4
        d[0xFD], d[0xFE] = (adc_h >> 8) & 0xFF, adc_h & 0xFF

    def read(self, reg: int, n: int) -> bytes:
        if reg <= REG_DATA < reg + n and (self.regs[REG_CTRL_MEAS] & 0x03) != 0:
            self._measure()
            if (self.regs[REG_CTRL_MEAS] & 0x03) in (1, 2):
                self.regs[REG_CTRL_MEAS] &= 0xFC  # forced mode: back to sleep afterwards
        out = bytes(self.regs[(reg + i) & 0xFF] for i in range(n))
        if self.fault == "wrong_id" and reg <= REG_CHIP_ID < reg + n:
            i = REG_CHIP_ID - reg
            out = out[:i] + bytes([0x58]) + out[i + 1:]
        return out

    def write(self, reg: int, data: bytes) -> None:
        for i, v in enumerate(data):
            r = (reg + i) & 0xFF
            if r == REG_RESET:
                if v == 0xB6:
                    self._power_on()
            elif r in (REG_CTRL_HUM, REG_CTRL_MEAS, REG_CONFIG):
                self.regs[r] = v
