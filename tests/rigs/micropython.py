"""Run code on the MicroPython unix port (a real MicroPython) from a test or benchmark."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tools.emulator.micropython import ESP32_HEAP_KB, micropython_executable
from tools.firmware_tree import FIRMWARE_LIB


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
