"""A node's serial log for a technician: levels coloured, ESP32 and node reset reasons decoded."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

from rich.text import Text

# ESP32 ROM boot line: "rst:0x1 (POWERON_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)"
_ROM_RESET = re.compile(r"rst:0x([0-9a-fA-F]+)")
# ESP32 RTC reset causes (ESP-IDF soc/esp32 rtc.h RESET_REASON), as a technician reads them.
ESP32_RESET_CODES = {
    0x1: "power-on (power was applied or restored)",
    0x3: "software reset (machine.reset() or an update switching slots)",
    0x4: "legacy watchdog reset",
    0x5: "deep-sleep wake-up",
    0x6: "SDIO reset",
    0x7: "timer-group 0 watchdog (the app hung)",
    0x8: "timer-group 1 watchdog (the app hung)",
    0x9: "RTC watchdog (the chip hung)",
    0xA: "intrusion test reset",
    0xB: "timer-group watchdog reset of the CPU",
    0xC: "software CPU reset (a crash or panic restarted the chip)",
    0xD: "RTC watchdog reset of the CPU",
    0xE: "reset by the other CPU",
    0xF: "brown-out (the supply voltage dropped: check the PSU and cabling)",
    0x10: "RTC watchdog reset of the chip and RTC",
}
# The node's own line at boot: "<ms> INFO reset cause=<name> board=<board>"
NODE_RESET_CAUSES = {
    "power_on": "power-on (power was applied or restored)",
    "hard": "reset pin (EN/RESET pressed or the USB adapter reset it)",
    "watchdog": "watchdog (the node stopped feeding it: hung or too slow)",
    "wdt": "watchdog (the node stopped feeding it: hung or too slow)",
    "deepsleep": "deep-sleep wake-up",
    "soft": "software reset (a command, an update or the node's own recovery)",
    "brownout": "brown-out (the supply voltage dropped)",
}
LEVEL_STYLES = {"DEBUG": "dim", "INFO": "green", "WARN": "yellow", "WARNING": "yellow",
                "ERROR": "bold red", "CRITICAL": "bold white on red"}
_NODE_LINE = re.compile(r"^(\d+) ([A-Z]+) (\S+)(.*)$")


def decode_reset(line: str) -> str | None:
    """What a reset line means (ROM rst:0x.. or the node's reset cause=..), else None."""
    m = _ROM_RESET.search(line)
    if m:
        code = int(m.group(1), 16)
        return ESP32_RESET_CODES.get(code, f"reset code {code:#x} (see the ESP32 TRM)")
    m = _NODE_LINE.match(line)
    if m and m.group(3) == "reset":
        cause = re.search(r"cause=\"?([\w.-]+)", m.group(4))
        if cause:
            name = cause.group(1)
            return NODE_RESET_CAUSES.get(name.lower(), name)
    return None


def render(line: str) -> Text:
    """One log line as coloured text, with a decoded reset reason appended when it is one."""
    m = _NODE_LINE.match(line)
    if m:
        ms, level, event, rest = m.groups()
        text = Text(f"{int(ms) / 1000:10.3f} ", style="cyan")
        text.append(f"{level:<5} ", style=LEVEL_STYLES.get(level, ""))
        text.append(event, style="bold")
        text.append(rest)
    else:
        text = Text(line, style="grey62")
    reason = decode_reset(line)
    if reason:
        text.append(f"  ← reset: {reason}", style="bold magenta")
    return text


NO_RESET_LINE = ("{port} has no reset line (a pseudo-terminal: an emulated node's console "
                 "from `lamplighter device console`), so the board was not reset. That console "
                 "is the node's REPL and runs no node, so it logs nothing by itself: to watch an "
                 "emulated lamppost's log from its boot, run `lamplighter device emulate`.")


def serial_lines(port: str, baud: int = 115200, reset: bool = False,
                 stop: Callable[[], bool] = lambda: False,
                 say: Callable[[str], None] | None = None) -> Iterator[str]:
    """Lines from a serial port (a board's USB UART or an emulated node's pty) until stop();
    `say` hears why a requested reset could not be made."""
    import serial

    with serial.Serial(port, baud, timeout=0.2) as ser:
        if reset:  # the DevKitC's auto-reset: EN low via RTS, IO0 left high (normal boot)
            try:
                ser.dtr = False
                ser.rts = True
                ser.rts = False
            except OSError:  # a pty has no modem lines
                if say is not None:
                    say(NO_RESET_LINE.format(port=port))
        buf = b""
        while not stop():
            chunk = ser.read(256)
            if not chunk:
                continue
            buf += chunk
            while b"\n" in buf:
                raw, buf = buf.split(b"\n", 1)
                yield raw.rstrip(b"\r").decode(errors="replace")
