"""ESP32-DevKitC board: the pin map, machine buses, Wi-Fi station, watchdog, RTC and reset cause."""

import gc
import time

import machine

# Pin map of the lamppost controller on an ESP32-DevKitC (GPIO numbers).
I2C_ID, PIN_SDA, PIN_SCL, I2C_FREQ = 0, 21, 22, 100000  # BME280 (0x76), VEML7700 (0x10)
PM_UART_ID, PIN_PM_TX, PIN_PM_RX, PM_BAUD = 1, 25, 26, 9600  # PMS5003
RADAR_UART_ID, PIN_RADAR_TX, PIN_RADAR_RX, RADAR_BAUD = 2, 17, 16, 256000  # LD2410
PIN_PIR = 27  # PIR output, active high
PIN_LAMP_PWM, LAMP_PWM_FREQ = 13, 1000  # to the lamp driver's dimming input
_FULL = 65535

_CAUSES = {}
for _name, _cause in (("PWRON_RESET", "power_on"), ("HARD_RESET", "hard"),
                      ("WDT_RESET", "watchdog"), ("DEEPSLEEP_RESET", "deepsleep"),
                      ("SOFT_RESET", "soft")):
    if hasattr(machine, _name):
        _CAUSES[getattr(machine, _name)] = _cause


class Board:
    """The real controller. flash_dir is the littlefs root."""

    name = "esp32_devkitc"
    flash_dir = "/"

    def __init__(self):
        # the lamp first, at full: whatever happens next, the street stays lit
        self.pwm_lamp = machine.PWM(machine.Pin(PIN_LAMP_PWM), freq=LAMP_PWM_FREQ, duty_u16=_FULL)
        self.i2c = machine.I2C(I2C_ID, scl=machine.Pin(PIN_SCL), sda=machine.Pin(PIN_SDA),
                               freq=I2C_FREQ)
        self.uart_pm = machine.UART(PM_UART_ID, baudrate=PM_BAUD, tx=PIN_PM_TX, rx=PIN_PM_RX,
                                    rxbuf=512, timeout=0)
        self.uart_radar = machine.UART(RADAR_UART_ID, baudrate=RADAR_BAUD, tx=PIN_RADAR_TX,
                                       rx=PIN_RADAR_RX, rxbuf=1024, timeout=0)
        self.pin_pir = machine.Pin(PIN_PIR, machine.Pin.IN, machine.Pin.PULL_DOWN)
        self._wdt = None
        self._last_ticks = time.ticks_ms()
        self._ms = 0
        # seconds between this port's epoch and 1970 (older ports count from 2000)
        self._epoch_offset = 0 if time.gmtime(0)[0] == 1970 else 946684800
        self._cause = _CAUSES.get(machine.reset_cause(), "other")

    def ticks_ms(self):
        """Milliseconds since boot that never wrap (time.ticks_ms wraps after ~12 days)."""
        now = time.ticks_ms()
        self._ms += time.ticks_diff(now, self._last_ticks)
        self._last_ticks = now
        return self._ms

    def epoch_s(self):
        """UTC seconds since 1970 from the RTC: 2000-01-01 after a power cut, until set."""
        return int(time.time()) + self._epoch_offset

    def set_epoch(self, value):
        """Set the RTC (kept through resets and deep sleep, lost with power)."""
        t = time.gmtime(value - self._epoch_offset)
        machine.RTC().datetime((t[0], t[1], t[2], t[6], t[3], t[4], t[5], 0))

    def ntp_s(self):
        """UTC seconds from pool.ntp.org (ntptime, one UDP exchange, 1 s timeout), or None."""
        try:
            import ntptime

            return ntptime.time() + self._epoch_offset  # ntptime counts from the port's epoch
        except (OSError, OverflowError, IndexError):
            return None
        finally:
            import sys

            sys.modules.pop("ntptime", None)  # a few hundred bytes, used once a day

    def wlan(self):
        """The Wi-Fi station interface; net.wifi brings it up and keeps it up (the port's own
        reconnects are off so that one loop decides when to try again)."""
        import network

        wlan = network.WLAN(network.STA_IF)
        wlan.active(True)
        try:
            wlan.config(reconnects=0)
        except (ValueError, OSError):  # older ports lack the option
            pass
        return wlan

    def sleep_ms(self, ms):
        if ms > 0:
            time.sleep_ms(ms)

    def start_watchdog(self, timeout_ms):
        self._wdt = machine.WDT(timeout=timeout_ms)

    def feed_watchdog(self):
        if self._wdt is not None:
            self._wdt.feed()

    def reset_cause(self):
        return self._cause

    def reset(self):
        machine.reset()

    def mem_free(self):
        return gc.mem_free()
