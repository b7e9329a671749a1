"""MicroPython's WebAssembly port (wasm32) under Node.js: a 32-bit MicroPython on the host.

The unix port the emulator runs is 64-bit, so its object words and GC blocks are twice an
ESP32's. The WebAssembly port has the ESP32's sizes (4-byte words, 16-byte GC blocks) and reads
the same .mpy files (bytecode, no native code), so code run on it shows the heap a 32-bit
device would use. It has no sockets: the node's world link is replayed there
(bench/_link_replay.py).

The port is an npm package pinned in package.json and installed by `make install` (npm ci).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

# Where a script for the WebAssembly port returns to JavaScript: the port collects garbage only
# there (gc.collect() while Python runs only asks for it), so a heap reading after a collection
# goes after this line. On the unix port it is a comment.
TOP_LEVEL = "\n#--- top level ---\n"
REPO_ROOT = Path(__file__).resolve().parents[1]
WASM_PACKAGE = "@micropython/micropython-webassembly-pyscript"
RUNNER = Path(__file__).with_name("wasm_runner.mjs")


def wasm_unavailable() -> str | None:
    """Why the WebAssembly port cannot run here, or None when it can."""
    if not shutil.which("node"):
        return "Node.js (node) is not installed"
    if not (REPO_ROOT / "node_modules" / WASM_PACKAGE / "micropython.mjs").exists():
        return f"the npm package {WASM_PACKAGE} is not installed (run `make install`)"
    return None


def run_wasm(code: str, root: Path | None = None, heap_kb: int = 128,
             timeout: float = 120.0, check: bool = True,
             romfs: bytes | None = None) -> subprocess.CompletedProcess[str]:
    """Run `code` on the WebAssembly port with a copy of `root` as its working directory.

    `heap_kb` is the heap it starts with; the port grows its heap when that runs out, so it
    is no cap: read gc.mem_alloc() for figures. `romfs`, a ROMFS image, is the port's ROMFS
    segment 0 (vfs.rom_ioctl(2, 0)), held outside its heap as a device's flash partition is.
    With `check`, a Python exception raises with the traceback in the message.
    """
    reason = wasm_unavailable()
    if reason:
        raise RuntimeError(reason)
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "script.py"
        script.write_text(code)
        extra = []
        if romfs is not None:
            (Path(tmp) / "romfs.img").write_bytes(romfs)
            extra = [str(Path(tmp) / "romfs.img")]
        proc = subprocess.run(
            ["node", str(RUNNER), str(heap_kb), str(root) if root else "-", str(script), *extra],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"the WebAssembly MicroPython exited with {proc.returncode}\n"
                           f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}")
    return proc
