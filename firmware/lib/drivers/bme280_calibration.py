"""BME280 start-up: reset, read the calibration words, set the sampling (when the chip appears)."""

from micropython import const

_REG_CALIB_A = const(0x88)
_REG_RESET = const(0xE0)
_REG_CALIB_B = const(0xE1)
_REG_CTRL_HUM = const(0xF2)
_REG_CTRL_MEAS = const(0xF4)
_REG_CONFIG = const(0xF5)


def _s16(lo, hi):
    v = lo | (hi << 8)
    return v - 65536 if v & 0x8000 else v


def _s8(v):
    return v - 256 if v & 0x80 else v


def _s12(v):
    return v - 4096 if v & 0x800 else v


def read(i2c, addr, buf):
    """Reset the chip, return its calibration [T1..T3, P1..P9, H1..H6] and start it in normal
    mode, x1 oversampling. `buf` is scratch space of at least 26 bytes."""
    i2c.writeto_mem(addr, _REG_RESET, b"\xb6")
    i2c.readfrom_mem_into(addr, _REG_CALIB_A, buf)
    b = buf
    cal = [b[0] | (b[1] << 8), _s16(b[2], b[3]), _s16(b[4], b[5]),  # T1..T3
           b[6] | (b[7] << 8)]  # P1
    for i in range(8, 24, 2):  # P2..P9
        cal.append(_s16(b[i], b[i + 1]))
    cal.append(b[25])  # H1
    e = memoryview(buf)[0:7]
    i2c.readfrom_mem_into(addr, _REG_CALIB_B, e)
    cal.append(_s16(e[0], e[1]))  # H2
    cal.append(e[2])  # H3
    cal.append(_s12((e[3] << 4) | (e[4] & 0x0F)))  # H4
    cal.append(_s12((e[5] << 4) | (e[4] >> 4)))  # H5
    cal.append(_s8(e[6]))  # H6
    i2c.writeto_mem(addr, _REG_CTRL_HUM, b"\x01")  # humidity x1
    i2c.writeto_mem(addr, _REG_CONFIG, b"\xa0")  # standby 1000 ms, no IIR filter
    i2c.writeto_mem(addr, _REG_CTRL_MEAS, b"\x27")  # temp x1, press x1, normal mode
    return cal
