"""VEML7700 ambient light driver (I2C): device-id check, auto-ranging gain and integration time."""

from micropython import const

from drivers import Health, SensorFault

_REG_CONF = const(0x00)
_REG_ALS = const(0x04)
_REG_ID = const(0x07)
_DEVICE_ID = const(0x81)

# (ALS_CONF value, lux per count), most sensitive first. Gain bits 12:11, IT bits 9:6.
# Resolution per the datasheet: 0.0036 lx/count at gain 2, 800 ms; linear in gain and time.
_RANGES = (
    ((0b01 << 11) | (0b0000 << 6), 0.0288),  # gain 2, 100 ms
    ((0b00 << 11) | (0b0000 << 6), 0.0576),  # gain 1, 100 ms
    ((0b11 << 11) | (0b0000 << 6), 0.2304),  # gain 1/4, 100 ms
    ((0b10 << 11) | (0b0000 << 6), 0.4608),  # gain 1/8, 100 ms
    ((0b10 << 11) | (0b1100 << 6), 1.8432),  # gain 1/8, 25 ms
)
_HIGH = const(50000)  # counts above this: switch to a less sensitive range
_LOW = const(200)  # counts below this: switch to a more sensitive range


class VEML7700:
    """Ambient light in lux. read() returns True with .lux set, or False (fault in .health,
    or a range change whose reading is not usable yet)."""

    def __init__(self, i2c, addr=0x10, stuck_limit=60):
        self.i2c = i2c
        self.addr = addr
        self.stuck_limit = stuck_limit
        self.health = Health()
        self.lux = None
        self.counts = 0
        self.range = 2
        self._ready = False
        self.buf = bytearray(2)
        self._prev = -1
        self._same = 0

    def _write_conf(self):
        conf = _RANGES[self.range][0]
        self.buf[0] = conf & 0xFF
        self.buf[1] = conf >> 8
        self.i2c.writeto_mem(self.addr, _REG_CONF, self.buf)

    def _setup(self):
        self.i2c.readfrom_mem_into(self.addr, _REG_ID, self.buf)
        if self.buf[0] != _DEVICE_ID:
            raise SensorFault("wrong_id")
        self._write_conf()  # also clears the shutdown bit
        self._ready = True

    def read(self):
        try:
            if not self._ready:
                self._setup()
            self.i2c.readfrom_mem_into(self.addr, _REG_ALS, self.buf)
            counts = self.buf[0] | (self.buf[1] << 8)
            measured = self.range
            if counts > _HIGH and measured < len(_RANGES) - 1:
                self.range = measured + 1
                self._write_conf()
                return False  # near saturation: read again at the new range
            if counts < _LOW and measured > 0:
                self.range = measured - 1
                self._write_conf()
        except OSError:
            self._ready = False
            self.health.fault("missing")
            return False
        except SensorFault as e:
            self._ready = False
            self.health.fault(e.args[0])
            return False
        if counts == self._prev and counts >= 20:
            self._same += 1
            if self._same >= self.stuck_limit:
                self.health.fault("stuck")
                return False
        else:
            self._same = 0
        self._prev = counts
        self.counts = counts
        self.lux = counts * _RANGES[measured][1]
        self.health.ok()
        return True
