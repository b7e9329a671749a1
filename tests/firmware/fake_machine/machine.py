"""A stand-in `machine` module that records how a board file builds its buses and pins."""

created = []  # (kind, args, kwargs) of every peripheral object made
wdt_feeds = [0]
resets = [0]
cause = [3]  # what reset_cause() returns; tests set it

PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5


def _plain(kwargs):
    """Pins as their numbers, so the record prints as JSON."""
    out = {}
    for k, v in kwargs.items():
        out[k] = v.id if isinstance(v, Pin) else v
    return out


def reset_cause():
    return cause[0]


def reset():
    resets[0] += 1


class Pin:
    IN = 1
    OUT = 3
    PULL_UP = 1
    PULL_DOWN = 2

    def __init__(self, pin_id, *args, **kwargs):
        self.id = pin_id
        created.append(("Pin", (pin_id,) + args, kwargs))

    def value(self, v=None):
        return 0


class I2C:
    def __init__(self, *args, **kwargs):
        created.append(("I2C", args, _plain(kwargs)))

    def scan(self):
        return []

    def readfrom_mem_into(self, addr, reg, buf):
        raise OSError(19)

    def writeto_mem(self, addr, reg, buf):
        raise OSError(19)


class UART:
    def __init__(self, *args, **kwargs):
        created.append(("UART", args, kwargs))

    def any(self):
        return 0

    def readinto(self, buf, n=None):
        return None


class PWM:
    def __init__(self, pin, **kwargs):
        self.pin = pin
        self.duty = kwargs.get("duty_u16")
        created.append(("PWM", (pin.id,), kwargs))

    def duty_u16(self, v=None):
        if v is None:
            return self.duty
        self.duty = v


class WDT:
    def __init__(self, **kwargs):
        created.append(("WDT", (), kwargs))

    def feed(self):
        wdt_feeds[0] += 1
