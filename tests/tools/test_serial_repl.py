"""The emulated lamppost's pty console works with the real mpremote command, like a USB board."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tools.emulator.serial_repl import SerialRepl

MPREMOTE = [sys.executable, "-m", "mpremote"]


def mpremote(port: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*MPREMOTE, "connect", port, *args], capture_output=True, text=True,
                          timeout=timeout, check=False)


@pytest.fixture
def console(tmp_path: Path):
    with SerialRepl(tmp_path / "flash") as repl:
        yield repl


def test_path_is_a_pty(console: SerialRepl) -> None:
    assert console.path.startswith("/dev/pts/")
    assert Path(console.path).exists()


def test_exec_prints_the_nodes_output(console: SerialRepl) -> None:
    proc = mpremote(console.path, "exec", "import sys; print(sys.implementation.name, 6 * 7)")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["micropython", "42"]


def test_fs_cp_ls_cat_land_in_the_flash_directory(console: SerialRepl, tmp_path: Path) -> None:
    local = tmp_path / "note.txt"
    payload = "".join(f"line {i}: {'x' * (i % 50)}\n" for i in range(400))  # > one paste window
    local.write_text(payload)
    proc = mpremote(console.path, "fs", "mkdir", "sub", "+", "fs", "cp", str(local),
                    ":sub/note.txt", "+", "fs", "ls", "sub")
    assert proc.returncode == 0, proc.stderr
    assert "note.txt" in proc.stdout
    assert (console.flash_dir / "sub" / "note.txt").read_text() == payload
    back = mpremote(console.path, "fs", "cat", "sub/note.txt")
    assert back.returncode == 0
    assert back.stdout.endswith(payload)


def test_a_device_error_comes_back_as_an_error(console: SerialRepl) -> None:
    proc = mpremote(console.path, "fs", "cat", "missing.txt")
    assert proc.returncode != 0
    assert "No such file" in proc.stdout + proc.stderr


def test_soft_reset_forgets_globals(console: SerialRepl) -> None:
    proc = mpremote(console.path, "exec", "x = 5", "+", "soft-reset", "+", "exec",
                    "print('x' in globals())")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("False")


def test_reset_boots_a_fresh_interpreter_on_the_same_pty(console: SerialRepl) -> None:
    assert console.boots == 1
    proc = mpremote(console.path, "reset")
    assert proc.returncode == 0, proc.stderr
    deadline = time.monotonic() + 10
    while console.boots < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert console.boots == 2
    again = mpremote(console.path, "exec", "print('back')")
    assert again.stdout.strip() == "back"


def test_power_cut_and_restore(console: SerialRepl) -> None:
    console.power_cut()
    assert not console.running()
    console.power_restore()
    proc = mpremote(console.path, "exec", "print(1)")
    assert proc.stdout.strip() == "1"
