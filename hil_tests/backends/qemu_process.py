"""Start an emulator whose UART is a pty, find the pty's name, and stop the emulator."""

from __future__ import annotations

import atexit
import ctypes
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_PTY_LINE = re.compile(r"char device redirected to (/dev/pts/\d+)")
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # Runs in the child before exec: the kernel sends it SIGTERM if the test process dies,
    # even by SIGKILL, so no emulator outlives its run.
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class EmulatorProcess:
    """A running emulator process; `pty` is the serial device it exposes."""

    def __init__(self, command: list[str], boot_timeout_s: float = 20.0) -> None:
        self.command = command
        self.log_path = Path(tempfile.mkstemp(prefix="hil-qemu-", suffix=".log")[1])
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
        atexit.register(self.stop)
        self.pty = self._wait_for_pty(boot_timeout_s)

    def _wait_for_pty(self, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = _PTY_LINE.search(self.log_path.read_text(errors="replace"))
            if found:
                return found.group(1)
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        output = self.log_path.read_text(errors="replace")
        self.stop()
        raise RuntimeError(f"{self.command[0]} gave no pty (output: {output.strip()!r})")

    def stop(self) -> None:
        atexit.unregister(self.stop)
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self._log.close()
        self.log_path.unlink(missing_ok=True)


def machine_supported(binary: str, machine: str) -> bool:
    """Whether `binary -machine help` lists `machine`."""
    try:
        listing = subprocess.run(
            [binary, "-machine", "help"], capture_output=True, text=True, timeout=20, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    return any(line.split()[:1] == [machine] for line in listing.splitlines())
