"""BME280 driver (I2C): chip-id check, calibration, integer compensation."""

from micropython import const

from drivers import Health, SensorFault

_CHIP_ID = const(0x60)
_REG_CHIP_ID = const(0xD0)
_REG_DATA = const(0xF7)
_SKIPPED = const(0x80000)  # the data registers' reset value: nothing measured yet
_REG_CALIB_A = const(0x88)
_REG_RESET = const(0xE0)
_REG_CALIB_B = const(0xE1)
_REG_CTRL_HUM = const(0xF2)
_REG_CTRL_MEAS = const(0xF4)
_REG_CONFIG = const(0xF5)


def _s16(a, b):
    v = a | (b << 8)
    return v - 65536 if v & 0x8000 else v


def _s8(v):
    return v - 256 if v & 0x80 else v


def _s12(v):
    return v - 4096 if v & 0x800 else v


def _calibrate(i2c, addr, buf):
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


def _tdiv(a, b):
    """C integer division (truncates toward zero)."""
    q = (a if a >= 0 else -a) // (b if b >= 0 else -b)
    return q if (a >= 0) == (b >= 0) else -q


class BME280:
    """Temperature (degC), pressure (hPa) and humidity (%RH) in normal mode, x1 oversampling.

    read() returns True with fresh values in .temperature_c/.pressure_hpa/.humidity_pct, or
    False after recording the fault in .health (missing, wrong_id, no_data, range, stuck).
    """

    def __init__(self, i2c, addr=0x76, stuck_limit=30):
        self.i2c = i2c
        self.addr = addr
        self.stuck_limit = stuck_limit
        self.health = Health()
        self.temperature_c = None
        self.pressure_hpa = None
        self.humidity_pct = None
        self.buf = bytearray(26)
        self.data = bytearray(8)
        self._prev = bytearray(8)
        self._same = 0
        self._cal = None
        self._one = bytearray(1)

    def _setup(self):
        self.i2c.readfrom_mem_into(self.addr, _REG_CHIP_ID, self._one)
        if self._one[0] != _CHIP_ID:
            raise SensorFault("wrong_id")
        # the chip's calibration words, read (and the chip configured) when it (re)appears
        self._cal = _calibrate(self.i2c, self.addr, self.buf)

    def read(self):
        try:
            if self._cal is None:
                self._setup()
            self.i2c.readfrom_mem_into(self.addr, _REG_DATA, self.data)
        except OSError:
            self._cal = None  # check the chip again when it answers
            self.health.fault("missing")
            return False
        except SensorFault as e:
            self._cal = None
            self.health.fault(e.args[0])
            return False
        d = self.data
        adc_p = (d[0] << 12) | (d[1] << 4) | (d[2] >> 4)
        adc_t = (d[3] << 12) | (d[4] << 4) | (d[5] >> 4)
        adc_h = (d[6] << 8) | d[7]
        if adc_t == _SKIPPED or adc_p == _SKIPPED:
            self.health.fault("no_data")
            return False
        if d == self._prev:
            self._same += 1
            if self._same >= self.stuck_limit:
                self.health.fault("stuck")
                return False
        else:
            self._same = 0
            self._prev[:] = d
        t_fine, t100 = self._temperature(adc_t)
        p256 = self._pressure(adc_p, t_fine)
        h1024 = self._humidity(adc_h, t_fine)
        t = t100 / 100.0
        p = p256 / 25600.0
        h = h1024 / 1024.0
        if not (-40.0 <= t <= 85.0 and 300.0 <= p <= 1100.0 and 0.0 <= h <= 100.0):
            self.health.fault("range")
            return False
        self.temperature_c = t
        self.pressure_hpa = p
        self.humidity_pct = h
        self.health.ok()
        return True

    def _temperature(self, raw):
        c = self._cal
        t1, t2, t3 = c[0], c[1], c[2]
        var1 = (((raw >> 3) - (t1 << 1)) * t2) >> 11
        x = (raw >> 4) - t1
        var2 = (((x * x) >> 12) * t3) >> 14
        t_fine = var1 + var2
        return t_fine, (t_fine * 5 + 128) >> 8

    def _pressure(self, raw, t_fine):
        c = self._cal
        var1 = t_fine - 128000
        var2 = var1 * var1 * c[8]
        var2 = var2 + ((var1 * c[7]) << 17)
        var2 = var2 + (c[6] << 35)
        var1 = ((var1 * var1 * c[5]) >> 8) + ((var1 * c[4]) << 12)
        var1 = (((1 << 47) + var1) * c[3]) >> 33
        if var1 == 0:
            return 0
        p = 1048576 - raw
        p = _tdiv(((p << 31) - var2) * 3125, var1)
        var1 = (c[11] * (p >> 13) * (p >> 13)) >> 25
        var2 = (c[10] * p) >> 19
        return ((p + var1 + var2) >> 8) + (c[9] << 4)

    def _humidity(self, raw, t_fine):
        c = self._cal
        h1, h2, h3, h4, h5, h6 = c[12], c[13], c[14], c[15], c[16], c[17]
        v = t_fine - 76800
        v = ((((raw << 14) - (h4 << 20) - (h5 * v)) + 16384) >> 15) * (
            ((((((v * h6) >> 10) * (((v * h3) >> 11) + 32768)) >> 10) + 2097152) * h2
              + 8192) >> 14)
        v = v - (((((v >> 15) * (v >> 15)) >> 7) * h1) >> 4)
        if v < 0:
            v = 0
        elif v > 419430400:
            v = 419430400
        return v >> 12
