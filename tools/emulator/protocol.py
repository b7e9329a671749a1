"""Wire format between the emulated board (MicroPython) and the world: opcodes and frame headers.

Request:  op (1 byte) | payload length (u16 LE) | payload
Response: status (1 byte) | virtual time ms (u64 LE) | payload length (u16 LE) | payload
"""

from __future__ import annotations

import struct

REQUEST_HEADER = struct.Struct("<BH")
RESPONSE_HEADER = struct.Struct("<BQH")

# opcodes (ASCII letters, so a hex dump reads easily)
OP_HELLO = ord("H")  # -> boot_ms u64, start_epoch u32, reset cause (ASCII)
OP_I2C_READ = ord("r")  # addr u8, reg u8, n u8 -> n bytes
OP_I2C_WRITE = ord("w")  # addr u8, reg u8, data -> ()
OP_I2C_SCAN = ord("s")  # () -> one byte per responding address
OP_UART_ANY = ord("a")  # uart u8 -> u16 bytes waiting
OP_UART_READ = ord("u")  # uart u8, max u16 -> up to max bytes
OP_UART_WRITE = ord("t")  # uart u8, data -> ()
OP_PIN_READ = ord("p")  # pin u8 -> level u8
OP_PWM_DUTY = ord("d")  # pwm u8, duty u16 -> ()
OP_SLEEP = ord("z")  # ms u32 -> () once virtual time has advanced
OP_WDT_START = ord("W")  # timeout ms u32 -> ()
OP_WDT_FEED = ord("f")  # () -> ()
OP_RESET = ord("x")  # () -> () then the node process exits; next boot reports "soft"
OP_CHECKIN = ord("C")  # status JSON -> reply JSON (empty: no reply)
OP_TELEMETRY = ord("T")  # n u16, then n x (seq u32, len u16, payload) -> highest acked seq u32

STATUS_OK = 0
STATUS_NODEV = 1  # I2C address did not ACK: the board raises OSError(ENODEV)
STATUS_BAD_REQUEST = 2
STATUS_RESET = 3  # the watchdog bit: the board must exit now (the launcher reboots it)
STATUS_HALT = 4  # the run is over: the board exits and stays off

I2C_BME280 = 0x76
I2C_VEML7700 = 0x10
UART_PM = 1
UART_RADAR = 2
PIN_PIR = 0
PWM_LAMP = 0
