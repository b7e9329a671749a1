"""The emulated board's wire format with its world: the one definition of its numbers.

The board imports them; the host (tools/emulator/protocol.py) reads the `NAME = const(..)`
lines of this file, so both sides always agree.

Request:  op (1 byte) | payload length (u16 LE) | payload
Response: status (1 byte) | virtual time ms (u64 LE) | payload length (u16 LE) | payload
"""

from micropython import const

# opcodes (ASCII letters, so a hex dump reads easily)
OP_HELLO = const(0x48)  # "H" -> boot_ms u64, start_epoch u32, reset cause (ASCII)
OP_I2C_READ = const(0x72)  # "r" addr u8, reg u8, n u8 -> n bytes
OP_I2C_WRITE = const(0x77)  # "w" addr u8, reg u8, data -> ()
OP_I2C_SCAN = const(0x73)  # "s" () -> one byte per responding address
OP_UART_ANY = const(0x61)  # "a" uart u8 -> u16 bytes waiting
OP_UART_READ = const(0x75)  # "u" uart u8, max u16 -> up to max bytes
OP_UART_WRITE = const(0x74)  # "t" uart u8, data -> ()
OP_PIN_READ = const(0x70)  # "p" pin u8 -> level u8
OP_PWM_DUTY = const(0x64)  # "d" pwm u8, duty u16 -> ()
OP_SLEEP = const(0x7A)  # "z" ms u32 -> () once virtual time has advanced
OP_WDT_START = const(0x57)  # "W" timeout ms u32 -> ()
OP_WDT_FEED = const(0x66)  # "f" () -> ()
OP_RESET = const(0x78)  # "x" () -> () then the node process exits; next boot reports "soft"
OP_CHECKIN = const(0x43)  # "C" status JSON -> reply JSON (empty: no reply)
OP_TELEMETRY = const(0x54)  # "T" n u16, then n x (seq u32, len u16, payload) -> acked seq u32

STATUS_OK = const(0)
STATUS_NODEV = const(1)  # I2C address did not ACK: the board raises OSError(ENODEV)
STATUS_BAD_REQUEST = const(2)
STATUS_RESET = const(3)  # the watchdog bit: the board must exit now (the launcher reboots it)
STATUS_HALT = const(4)  # the run is over: the board exits and stays off

# the emulated board's buses and pins
I2C_BME280 = const(0x76)
I2C_VEML7700 = const(0x10)
UART_PM = const(1)
UART_RADAR = const(2)
PIN_PIR = const(0)
PWM_LAMP = const(0)
