"""A board's power supply for an emulated process: boot on power, reboot on exit, cut by SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable


class PowerSupply:
    """Keeps one process running while powered, the way a board reboots after a reset.

    `spawn()` starts the process (a boot); when it exits by itself (a reset, a crash, a
    watchdog) it is started again while the power is on. `cut()` kills it at once with
    SIGKILL — a power cut — and it stays off until `restore()`. `on_exit(returncode)` hears
    about every exit that was not a cut; `may_reboot()` can veto a reboot (e.g. a world that
    has finished its run).
    """

    def __init__(self, spawn: Callable[[], subprocess.Popen], name: str,
                 on_exit: Callable[[int], None] | None = None,
                 may_reboot: Callable[[], bool] | None = None) -> None:
        self._spawn = spawn
        self._on_exit = on_exit
        self._may_reboot = may_reboot
        self.proc: subprocess.Popen | None = None
        self.powered = False
        self.boots = 0
        self._stopping = False
        self._lock = threading.Lock()
        self._watcher = threading.Thread(target=self._watch, name=name, daemon=True)

    def start(self) -> None:
        self.restore()
        self._watcher.start()

    def _boot(self) -> None:
        self.proc = self._spawn()
        self.boots += 1

    def _watch(self) -> None:
        while not self._stopping:
            with self._lock:
                proc = self.proc
                if proc is not None and proc.poll() is not None:
                    self.proc = None
                    if self._on_exit:
                        self._on_exit(proc.returncode)
                    if self.powered and not self._stopping and (
                            self._may_reboot is None or self._may_reboot()):
                        self._boot()  # the board resets and boots again
            time.sleep(0.02)

    def cut(self) -> None:
        """Cut the power at this instant (SIGKILL); it stays off until restore()."""
        with self._lock:
            self.powered = False
            proc = self.proc
            if proc is not None and proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
            self.proc = None

    def restore(self) -> None:
        with self._lock:
            self.powered = True
            if self.proc is None or self.proc.poll() is not None:
                self._boot()

    def running(self) -> bool:
        proc = self.proc
        return proc is not None and proc.poll() is None

    def stop(self) -> None:
        self._stopping = True
        self.cut()
        if self._watcher.is_alive():
            self._watcher.join(timeout=5)


class Powered:
    """Mixin for an emulated device whose process hangs off `self.power` (a PowerSupply)."""

    power: PowerSupply

    @property
    def boots(self) -> int:
        return self.power.boots

    def power_cut(self) -> None:
        """Cut the power at this instant (SIGKILL); it stays off until power_restore()."""
        self.power.cut()

    def power_restore(self) -> None:
        self.power.restore()

    def running(self) -> bool:
        return self.power.running()
