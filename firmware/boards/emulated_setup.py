"""Emulated board start-up: connect to the world, say hello, build the buses (once per boot)."""

# Loaded by emulated.Board() and dropped again, so that only the board's running code stays
# resident. Opcodes and ids: emulated.py (docs/emulated-board.md).

import os
import socket
import struct

from emulated import EmuI2C, EmuPin, EmuPWM, EmuUART, WorldLink
from micropython import const

# wire numbers (see emulated.py; the host reads these lines too)
_OP_HELLO = const(0x48)  # "H" -> boot_ms u64, start_epoch u32, reset cause (ASCII)
_UART_PM = const(1)
_UART_RADAR = const(2)
_PIN_PIR = const(0)
_PWM_LAMP = const(0)


def _open_socket(port):
    addr = socket.getaddrinfo("127.0.0.1", port)[0][-1]
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.connect(addr)
    try:
        sock.setsockopt(6, 1, 1)  # IPPROTO_TCP, TCP_NODELAY
    except OSError:
        pass
    return sock


def connect(board, port, flash_dir):
    """Connect `board` to the world at `port` (default: $LAMPLIGHTER_WORLD) and set up its
    clock, reset cause, flash directory and machine-like buses."""
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
