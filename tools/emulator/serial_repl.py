"""The emulated lamppost's MicroPython REPL on a pty, speaking mpremote's raw REPL protocol."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import termios
import tty
from pathlib import Path

from tools.emulator.launcher import NODE_HEAP_KB
from tools.emulator.micropython import micropython_executable
from tools.emulator.power import Powered, PowerSupply

# Exit code of the console process when the code on it called machine.reset(): the host
# starts a fresh interpreter on the same pty, as a board's USB serial survives a reset.
HARD_RESET_EXIT = 42

# The unix port's own REPL reads a terminal line by line and has no raw REPL, so the console
# runs this loop on MicroPython instead. It implements what a board's pyexec does for mpremote:
# Ctrl-A raw REPL (code until Ctrl-D, "OK", output, \x04, error, \x04, ">"), raw-paste mode
# (Ctrl-E A Ctrl-A with a flow-control window), Ctrl-D soft reboot, Ctrl-B back to a minimal
# friendly REPL, Ctrl-C to clear the input. `machine.reset()` ends the process (a hard reset).
REPL_LOOP = r'''
import sys, gc, builtins
sys.path[:] = ["", ".frozen", "lib"]  # an ESP32's: the root (cwd), frozen modules, /lib
_rd = sys.stdin.buffer.read
_wr = sys.stdout.buffer.write
_import = builtins.__import__
_BASE_MODULES = set(sys.modules)
_WINDOW = 256

class _Machine:
    """The `machine` calls a technician's tools make on a board, for the emulated console."""
    def reset(self):
        sys.stdout.flush() if hasattr(sys.stdout, "flush") else None
        sys.exit(RESET_EXIT)
    def soft_reset(self):
        raise _SoftReset()
    def unique_id(self):
        return b"\x02\x00\x00\x00\x00\x01"
    def reset_cause(self):
        return 1
    def freq(self, *a):
        return 240000000

class _SoftReset(Exception):
    pass

_machine = _Machine()

def _imp(name, *args):
    if name == "machine":
        return _machine
    return _import(name, *args)

def _fresh_globals():
    for name in list(sys.modules):
        if name not in _BASE_MODULES:
            del sys.modules[name]
    gc.collect()
    return {"__name__": "__main__"}

def _run(code, g):
    """Execute one submission: its output, \x04, then its error (the caller ends it)."""
    try:
        exec(code, g)
    except _SoftReset:
        _wr(b"\x04")
        return True
    except SystemExit as e:
        if e.args and e.args[0] == RESET_EXIT:
            raise
        _wr(b"\x04")
        sys.print_exception(e)
        return False
    except BaseException as e:
        _wr(b"\x04")
        sys.print_exception(e)
        return False
    _wr(b"\x04")
    return False

def _raw_paste():
    _wr(b"R\x01" + bytes((_WINDOW & 0xFF, _WINDOW >> 8)))
    buf = bytearray()
    got = 0
    while True:
        c = _rd(1)
        if not c or c == b"\x04":
            break
        if c == b"\x03":  # abandoned by the host: acknowledge and drop it, as a board does
            _wr(b"\x04")
            return None
        buf += c
        got += 1
        if got == _WINDOW:
            got = 0
            _wr(b"\x01")
    _wr(b"\x04")
    return buf

def _friendly(g):
    _wr(b"\r\nMicroPython on the emulated lamppost; Ctrl-A: raw REPL, Ctrl-D: soft reboot\r\n")
    line = bytearray()
    _wr(b">>> ")
    while True:
        c = _rd(1)
        if not c:
            sys.exit(0)
        if c == b"\x01":
            return "raw"
        if c == b"\x04" and not line:
            return "soft"
        if c == b"\x03":
            line = bytearray()
            _wr(b"\r\nKeyboardInterrupt\r\n>>> ")
        elif c == b"\r" or c == b"\n":
            _wr(b"\r\n")
            src = bytes(line).decode()
            line = bytearray()
            if src.strip():
                try:
                    try:
                        r = eval(src, g)
                        if r is not None:
                            _wr(repr(r).encode() + b"\r\n")
                    except SyntaxError:
                        exec(src, g)
                except _SoftReset:
                    return "soft"
                except Exception as e:
                    sys.print_exception(e)
            _wr(b">>> ")
        elif c == b"\x7f" or c == b"\x08":
            if line:
                line = line[:-1]
                _wr(b"\x08 \x08")
        else:
            line += c
            _wr(c)

def _main():
    builtins.__import__ = _imp
    g = _fresh_globals()
    mode = "friendly"
    while True:
        if mode == "friendly":
            mode = _friendly(g)
            if mode == "soft":
                _wr(b"MPY: soft reboot\r\n")
                g = _fresh_globals()
                mode = "friendly"
            continue
        _wr(b"raw REPL; CTRL-B to exit\r\n>")
        code = bytearray()
        while True:
            c = _rd(1)
            if not c:
                sys.exit(0)
            if c == b"\x05" and not code:
                c2 = _rd(2)
                if c2 != b"A\x01":
                    code += c + c2
                    continue
                pasted = _raw_paste()
                if pasted is None:
                    _wr(b"\x04KeyboardInterrupt\r\n")
                    soft = False
                else:
                    soft = _run(pasted, g)
            elif c == b"\x04":
                if not code:
                    _wr(b"OK\r\nMPY: soft reboot\r\n")
                    g = _fresh_globals()
                    break
                _wr(b"OK")
                soft = _run(code, g)
            else:
                soft = None
            if soft is not None:
                _wr(b"\x04>")
                code = bytearray()
                if soft:
                    _wr(b"MPY: soft reboot\r\nraw REPL; CTRL-B to exit\r\n>")
                    g = _fresh_globals()
                continue
            if c == b"\x03":
                code = bytearray()
            elif c == b"\x02":
                mode = "friendly"
                break
            elif c == b"\x01":
                code = bytearray()
                _wr(b"raw REPL; CTRL-B to exit\r\n>")
            else:
                code += c

_main()
'''.replace("RESET_EXIT", str(HARD_RESET_EXIT))


def _set_raw(fd: int) -> None:
    """No echo, no line editing, no newline translation: bytes pass as they are."""
    tty.setraw(fd, termios.TCSANOW)


class SerialRepl(Powered):
    """A MicroPython console on a pty whose cwd is a node's flash directory.

    `path` is the slave side (/dev/pts/N) to hand to `mpremote connect`. With `world_port`
    the console's `emulated.Board()` reaches that world's sensors. `power_cut()` kills the
    console process at once; `power_restore()` boots a fresh one on the same pty.
    """

    def __init__(self, flash_dir: Path, world_port: int | None = None,
                 heap_kb: int = NODE_HEAP_KB) -> None:
        self.flash_dir = Path(flash_dir).resolve()
        self.world_port = world_port
        self.heap_kb = heap_kb
        self.path = ""
        self._master = -1
        self._slave = -1
        self.power = PowerSupply(self._spawn, "serial-repl")
        self._tmp = tempfile.TemporaryDirectory(prefix="lamplighter-repl-")
        self._script = Path(self._tmp.name) / "repl_loop.py"

    def start(self) -> SerialRepl:
        self.flash_dir.mkdir(parents=True, exist_ok=True)
        self._script.write_text(REPL_LOOP)
        self._master, self._slave = os.openpty()
        _set_raw(self._slave)  # kept open so the console never sees a hang-up between sessions
        self.path = os.ttyname(self._slave)
        self.power.start()
        return self

    def _spawn(self) -> subprocess.Popen[bytes]:
        env = dict(os.environ)
        env["LAMPLIGHTER_FLASH"] = "."
        if self.world_port:
            env["LAMPLIGHTER_WORLD"] = str(self.world_port)
        cmd = [micropython_executable(), "-X", f"heapsize={self.heap_kb}k", str(self._script)]
        return subprocess.Popen(cmd, cwd=self.flash_dir, env=env, stdin=self._master,
                                stdout=self._master, stderr=self._master)

    def stop(self) -> None:
        self.power.stop()
        for fd in (self._master, self._slave):
            if fd >= 0:
                os.close(fd)
        self._master = self._slave = -1
        self._tmp.cleanup()

    def __enter__(self) -> SerialRepl:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(flash_dir: Path, with_world: bool = True, speed: float = 0.0) -> None:
    """Run an emulated node's console (and, with_world, its street) until Ctrl-C."""
    world = None
    if with_world:
        from tools.emulator.world import World

        world = World(None, speed=speed).start()
    repl = SerialRepl(flash_dir, world_port=world.port if world else None).start()
    print(repl.path, flush=True)
    print(f"emulated node console on {repl.path} (flash: {repl.flash_dir}); try "
          f"`mpremote connect {repl.path} fs ls` or `lamplighter device provision --port "
          f"{repl.path} ...`; Ctrl-C stops it", file=sys.stderr, flush=True)
    try:
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    except KeyboardInterrupt:
        pass
    finally:
        repl.stop()
        if world is not None:
            world.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--flash-dir", type=Path, required=True,
                        help="the node's flash directory (the console's filesystem root)")
    parser.add_argument("--no-world", action="store_true",
                        help="no sensors: emulated.Board() cannot be built on this console")
    args = parser.parse_args()
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    serve(args.flash_dir, with_world=not args.no_world)


if __name__ == "__main__":
    main()
