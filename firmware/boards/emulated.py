"""Emulated board: machine-like buses and pins that talk to the world process over TCP."""

import os
import socket
import struct
import sys

import gc
from micropython import const

# The wire numbers of the emulated board's link to its world, defined here only (private
# consts cost no heap); the host (tools/emulator/protocol.py) reads these lines. Frames:
# docs/emulated-board.md.
_OP_HELLO = const(0x48)  # "H" -> boot_ms u64, start_epoch u32, reset cause (ASCII)
_OP_I2C_READ = const(0x72)  # "r" addr u8, reg u8, n u8 -> n bytes
_OP_I2C_WRITE = const(0x77)  # "w" addr u8, reg u8, data -> ()
_OP_I2C_SCAN = const(0x73)  # "s" () -> one byte per responding address
_OP_UART_ANY = const(0x61)  # "a" uart u8 -> u16 bytes waiting
_OP_UART_READ = const(0x75)  # "u" uart u8, max u16 -> up to max bytes
_OP_UART_WRITE = const(0x74)  # "t" uart u8, data -> ()
_OP_PIN_READ = const(0x70)  # "p" pin u8 -> level u8
_OP_PWM_DUTY = const(0x64)  # "d" pwm u8, duty u16 -> ()
_OP_SLEEP = const(0x7A)  # "z" ms u32 -> () once virtual time has advanced
_OP_WDT_START = const(0x57)  # "W" timeout ms u32 -> ()
_OP_WDT_FEED = const(0x66)  # "f" () -> ()
_OP_RESET = const(0x78)  # "x" () -> () then the node process exits; next boot reports "soft"
_OP_CHECKIN = const(0x43)  # "C" status JSON -> reply JSON (empty: no reply)
_OP_TELEMETRY = const(0x54)  # "T" n u16, then n x (seq u32, len u16, payload) -> acked u32
_OP_WIFI = const(0x4E)  # "N" WIFI_* u8, then its arguments (see EmuWLAN)
_OP_NTP = const(0x6E)  # "n" () -> UTC epoch u32, or STATUS_NODEV when no NTP server answers
_OP_RTC_SET = const(0x52)  # "R" UTC epoch u32 -> () (the RTC keeps it until a power cut)
_WIFI_STATUS = const(0)  # -> network status u16, RSSI dBm i8
_WIFI_CONNECT = const(1)  # ssid length u8, ssid, passphrase -> ()
_WIFI_DISCONNECT = const(2)  # -> ()

_STATUS_OK = const(0)
_STATUS_NODEV = const(1)  # I2C address did not ACK: the board raises OSError(ENODEV)
_STATUS_BAD_REQUEST = const(2)
_STATUS_RESET = const(3)  # the watchdog bit: the board must exit now (the launcher reboots it)
_STATUS_HALT = const(4)  # the run is over: the board exits and stays off

_I2C_BME280 = const(0x76)  # the emulated board's sensors on its I2C bus
_I2C_VEML7700 = const(0x10)
_UART_PM = const(1)  # the board's UARTs, PIR pin and lamp PWM on the link
_UART_RADAR = const(2)
_PIN_PIR = const(0)
_PWM_LAMP = const(0)

_ENODEV = const(19)
_EIO = const(5)


_BUS_FRAME = const(320)  # bus traffic: a UART read of up to 256 bytes is the largest
_UPLINK_FRAME = const(2048)  # check-ins and telemetry batches sent to the world


class WorldLink:
    """Request/response over one TCP connection, through one preallocated frame buffer (`tx`
    and `rx` name the same bytes: a request is sent in full before its reply arrives)."""

    def __init__(self, sock):
        self.sock = sock
        self.now_ms = 0
        self.rx_len = 0
        self.frame(_BUS_FRAME)

    def frame(self, size):
        """Use a frame buffer of `size` bytes from now on."""
        self.tx = self.rx = bytearray(size)
        self.txv = self.rxv = memoryview(self.tx)

    def _recv_into(self, start, n):
        got = 0
        rxv = self.rxv
        while got < n:
            k = self.sock.readinto(rxv[start + got:start + n])
            if not k:
                raise OSError(_EIO)
            got += k

    def call(self, op, n):
        """Send op with the first n bytes of self.tx[3:] as payload; return the status.

        The reply's payload is left in self.rx[0:self.rx_len]."""
        tx = self.tx
        tx[0] = op
        tx[1] = n & 0xFF
        tx[2] = n >> 8
        self.sock.write(self.txv[:3 + n])
        self._recv_into(0, 11)
        status, self.now_ms, size = struct.unpack_from("<BQH", self.rx, 0)
        if size > len(self.rx):
            raise OSError(_EIO)
        self.rx_len = size
        if size:
            self._recv_into(0, size)
        if status == _STATUS_RESET or status == _STATUS_HALT:
            # the watchdog fired or the run is over: stop as abruptly as a real reset
            sys.exit(status)
        return status


class EmuI2C:
    """The machine.I2C subset the drivers use."""

    def __init__(self, link):
        self.link = link

    def readfrom_mem_into(self, addr, memaddr, buf):
        link = self.link
        n = len(buf)
        tx = link.tx
        tx[3] = addr
        tx[4] = memaddr
        tx[5] = n
        if link.call(_OP_I2C_READ, 3) != _STATUS_OK:
            raise OSError(_ENODEV)
        buf[:] = link.rxv[:n]

    def readfrom_mem(self, addr, memaddr, nbytes):
        buf = bytearray(nbytes)
        self.readfrom_mem_into(addr, memaddr, buf)
        return bytes(buf)

    def writeto_mem(self, addr, memaddr, buf):
        link = self.link
        n = len(buf)
        tx = link.tx
        tx[3] = addr
        tx[4] = memaddr
        tx[5:5 + n] = buf
        if link.call(_OP_I2C_WRITE, 2 + n) != _STATUS_OK:
            raise OSError(_ENODEV)

    def scan(self):
        link = self.link
        link.call(_OP_I2C_SCAN, 0)
        return list(link.rx[:link.rx_len])


class EmuUART:
    """The machine.UART subset the drivers use (any, read, readinto, write)."""

    def __init__(self, link, uart_id):
        self.link = link
        self.uart_id = uart_id

    def any(self):
        link = self.link
        link.tx[3] = self.uart_id
        link.call(_OP_UART_ANY, 1)
        return link.rx[0] | (link.rx[1] << 8)

    def readinto(self, buf, nbytes=None):
        link = self.link
        n = min(len(buf) if nbytes is None else min(nbytes, len(buf)), len(link.rx))
        tx = link.tx
        tx[3] = self.uart_id
        tx[4] = n & 0xFF
        tx[5] = n >> 8
        link.call(_OP_UART_READ, 3)
        got = link.rx_len
        if not got:
            return None  # like machine.UART on timeout
        buf[:got] = link.rxv[:got]
        return got

    def read(self, nbytes=256):
        buf = bytearray(nbytes)
        got = self.readinto(buf)
        return bytes(buf[:got]) if got else None

    def write(self, data):
        link = self.link
        n = len(data)
        link.tx[3] = self.uart_id
        link.tx[4:4 + n] = data
        link.call(_OP_UART_WRITE, 1 + n)
        return n


class EmuPin:
    """An input pin whose level the world decides."""

    def __init__(self, link, pin_id):
        self.link = link
        self.pin_id = pin_id

    def value(self):
        link = self.link
        link.tx[3] = self.pin_id
        link.call(_OP_PIN_READ, 1)
        return link.rx[0]


class EmuPWM:
    """A PWM output whose duty the world records (the lamp driver's control input)."""

    def __init__(self, link, pwm_id):
        self.link = link
        self.pwm_id = pwm_id
        self._duty = None

    def duty_u16(self, value=None):
        if value is None:
            return self._duty or 0
        value = int(value)
        if value < 0:
            value = 0
        elif value > 65535:
            value = 65535
        link = self.link
        struct.pack_into("<BH", link.tx, 3, self.pwm_id, value)
        link.call(_OP_PWM_DUTY, 3)
        self._duty = value


class EmuWLAN:
    """The network.WLAN station interface subset the node uses; the world is the access point."""

    def __init__(self, link):
        self.link = link

    def active(self, on=None):
        return True

    def config(self, **kwargs):
        pass

    def connect(self, ssid, key):
        link = self.link
        ssid = ssid.encode()
        key = key.encode()
        n = len(ssid)
        tx = link.tx
        tx[3] = _WIFI_CONNECT
        tx[4] = n
        tx[5:5 + n] = ssid
        tx[5 + n:5 + n + len(key)] = key
        link.call(_OP_WIFI, 2 + n + len(key))

    def disconnect(self):
        self.link.tx[3] = _WIFI_DISCONNECT
        self.link.call(_OP_WIFI, 1)

    def status(self, key=None):
        link = self.link
        link.tx[3] = _WIFI_STATUS
        link.call(_OP_WIFI, 1)
        code, rssi = struct.unpack_from("<Hb", link.rx, 0)
        return rssi if key == "rssi" else code

    def isconnected(self):
        return self.status() == 1010  # network.STAT_GOT_IP


class WorldUplink:
    """Uplink for a node without a server: check-ins and telemetry go to the world, which
    records them (and may answer with configuration or commands the scenario holds)."""

    def __init__(self, link):
        self.link = link
        link.frame(_UPLINK_FRAME)  # a check-in's status needs more than bus traffic

    def checkin(self, status):
        import json

        body = json.dumps(status).encode()
        link = self.link
        n = len(body)
        if n > _UPLINK_FRAME - 3:
            raise ValueError("status too large")
        link.tx[3:3 + n] = body
        link.call(_OP_CHECKIN, n)
        if not link.rx_len:
            return None
        return json.loads(bytes(link.rx[:link.rx_len]))

    def post_telemetry(self, records):
        link = self.link
        tx = link.tx
        pos = 5
        count = 0
        for seq, payload in records:
            size = len(payload)
            if pos + 6 + size > _UPLINK_FRAME:
                break
            struct.pack_into("<IH", tx, pos, seq, size)
            tx[pos + 6:pos + 6 + size] = payload
            pos += 6 + size
            count += 1
        struct.pack_into("<H", tx, 3, count)
        link.call(_OP_TELEMETRY, pos - 3)
        if link.rx_len < 4:
            return None
        return struct.unpack_from("<I", link.rx, 0)[0]


def _open_socket(port):
    addr = socket.getaddrinfo("127.0.0.1", port)[0][-1]
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.connect(addr)
    try:
        sock.setsockopt(6, 1, 1)  # IPPROTO_TCP, TCP_NODELAY
    except OSError:
        pass
    return sock


def _connect(board, port, flash_dir):
    """Connect `board` to the world at `port` (default: $LAMPLIGHTER_WORLD), say hello and
    set up its clock, reset cause, flash directory and machine-like buses."""
    if port is None:
        port = int(os.getenv("LAMPLIGHTER_WORLD") or "0")
    if not port:
        raise OSError("set LAMPLIGHTER_WORLD to the world's TCP port")
    link = board.link = WorldLink(_open_socket(port))
    link.call(_OP_HELLO, 0)
    board._boot_ms, board._start_epoch = struct.unpack_from("<QI", link.rx, 0)
    board._reset_cause = bytes(link.rx[12:link.rx_len]).decode()
    board.flash_dir = flash_dir or os.getenv("LAMPLIGHTER_FLASH") or "flash"
    try:
        os.mkdir(board.flash_dir)
    except OSError:
        pass
    board.i2c = EmuI2C(link)
    board.uart_pm = EmuUART(link, _UART_PM)
    board.uart_radar = EmuUART(link, _UART_RADAR)
    board.pin_pir = EmuPin(link, _PIN_PIR)
    board.pwm_lamp = EmuPWM(link, _PWM_LAMP)
    # benchmark runs also count what raw 1 Hz reporting would have sent
    board.measure_raw = os.getenv("LAMPLIGHTER_MEASURE_RAW") == "1"


class Board:
    """The emulated lamppost controller: same interface as boards/esp32_devkitc.Board."""

    name = "emulated"

    def __init__(self, port=None, flash_dir=None):
        _connect(self, port, flash_dir)

    def ticks_ms(self):
        """Monotonic ms since this boot, on the world's virtual clock (as of the last reply)."""
        return self.link.now_ms - self._boot_ms

    def epoch_s(self):
        """UTC seconds from the board's RTC (virtual time; 2000-01-01 after a power cut unless
        the world's scenario says otherwise, until NTP or the fleet server sets it)."""
        return self._start_epoch + self.link.now_ms // 1000

    def set_epoch(self, value):
        """Set the RTC (it keeps the time through resets until the next power cut)."""
        struct.pack_into("<I", self.link.tx, 3, int(value))
        self.link.call(_OP_RTC_SET, 4)
        self._start_epoch = int(value) - self.link.now_ms // 1000

    def ntp_s(self):
        """UTC seconds from an NTP server over the network, or None when none answers."""
        link = self.link
        if link.call(_OP_NTP, 0) != _STATUS_OK:
            return None
        return struct.unpack_from("<I", link.rx, 0)[0]

    def wlan(self):
        """The Wi-Fi station interface (the world models the street's access point)."""
        return EmuWLAN(self.link)

    def sleep_ms(self, ms):
        if ms <= 0:
            return
        struct.pack_into("<I", self.link.tx, 3, int(ms))
        self.link.call(_OP_SLEEP, 4)

    def start_watchdog(self, timeout_ms):
        struct.pack_into("<I", self.link.tx, 3, int(timeout_ms))
        self.link.call(_OP_WDT_START, 4)

    def feed_watchdog(self):
        self.link.call(_OP_WDT_FEED, 0)

    def world_uplink(self):
        """The world as the node's server, for a node without an identity (made on demand:
        a node with a server never needs its larger frame buffer)."""
        return WorldUplink(self.link)

    def reset_cause(self):
        return self._reset_cause

    def reset(self):
        self.link.call(_OP_RESET, 0)
        sys.exit(0)

    def mem_free(self):
        return gc.mem_free()
