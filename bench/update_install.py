"""Update install: peak heap of a streaming 200 KB install, and bytes on the wire per update.

Heap: the node's update client (compiled to .mpy, as a release ships it) installs a signed
200 KB bundle from flash into the inactive slot on the MicroPython unix port, every file
streamed through a 1 KB buffer with its SHA-256. The figure is the smallest heap in which
that install succeeds minus the smallest heap in which the same process, with the same
modules loaded, merely idles: the peak the install adds. The manifest check that runs when
the download completes (Ed25519 verifier loaded, then dropped) is measured the same way.

Wire: the bundle of the real firmware app (mpy-cross compiled, with header and signed
manifest) against the total size of the .py sources it is built from, measured in this run.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from bench.report import Figure
from ota.bundle import _app_sources, mpy_cross_compile, stage_release, write_bundle
from ota.keys import generate_private_key, key_id, raw_public_key
from ota.manifest import sign_manifest
from tools.micropython import FIRMWARE_DIR, FIRMWARE_LIB, run_micropython

TARGET_KB = 32
BUNDLE_BYTES = 200 * 1024

INSTALL = """
import gc, json, time
import bootsel
from updater import Updater
def reset():
    pass
u = Updater(None, "emulated", time.time, reset, root=".")
u._offered = True
gc.collect()
if DO_INSTALL:
    u.step()
print(json.dumps({"phase": u.state["phase"], "detail": u.state.get("detail")}))
"""


def _build(tmp: Path, key) -> tuple[Path, Path, int]:
    """(200 KB bundle, real app bundle, .py source bytes of the app)."""
    now = int(time.time())
    app = stage_release(FIRMWARE_DIR, tmp / "app-stage", version="1.1.0", sequence=11,
                        board=["emulated"], expires=now + 86400)
    app_bundle = tmp / "app.llb"
    write_bundle(tmp / "app-stage", sign_manifest(app, key), app_bundle)
    sources = sum((FIRMWARE_DIR / p).stat().st_size for p in _app_sources(FIRMWARE_DIR))

    big = tmp / "big-src"
    shutil.copytree(FIRMWARE_DIR, big, ignore=shutil.ignore_patterns("__pycache__"))
    filler = BUNDLE_BYTES - app.total_size
    for i in range(filler // 8192 + 1):
        (big / "lib" / f"data{i:02d}.bin").write_bytes(os.urandom(min(8192, filler)))
        filler -= 8192
        if filler <= 0:
            break
    manifest = stage_release(big, tmp / "big-stage", version="1.1.0", sequence=11,
                             board=["emulated"], expires=now + 86400)
    big_bundle = tmp / "big.llb"
    write_bundle(tmp / "big-stage", sign_manifest(manifest, key), big_bundle)
    return big_bundle, app_bundle, sources


def _flash(tmp: Path, bundle: Path, key, phase: str) -> Path:
    """A node's flash with the bundle downloaded: "installing" (checked) or "downloading"."""
    flash = tmp / "flash"
    if flash.exists():
        shutil.rmtree(flash)
    (flash / "slots" / "a").mkdir(parents=True)
    (flash / "slots" / "a" / "app_version.json").write_text('{"version":"1.0.0","sequence":10}')
    (flash / "slot.json").write_text(json.dumps({"active": "a", "previous": None,
                                                  "pending": None, "committed_sequence": 10}))
    (flash / "keys.json").write_text(json.dumps(
        {"keys": {key_id(key): raw_public_key(key).hex()}, "revoked": []}))
    (flash / "update").mkdir()
    shutil.copy(bundle, flash / "update" / "bundle.part")
    (flash / "update" / "state.json").write_text(json.dumps({
        "rollout_id": 1, "release_id": 1, "url": "/x", "size": bundle.stat().st_size,
        "sha256": "", "version": "1.1.0", "sequence": 11, "phase": phase,
        "detail": "", "checked": phase == "installing", "errors": 0, "kind": "app"}))
    return flash


# mode: "idle" (no step), "install" (the install step), "check" (the manifest check that
# runs when a download completes: Ed25519 and all).
_START = {"idle": "installing", "install": "installing", "check": "downloading"}
_END = {"idle": "installing", "install": "installed", "check": "installing"}


def _ok(tmp: Path, bundle: Path, key, lib: Path, heap_kb: int, mode: str) -> bool:
    flash = _flash(tmp, bundle, key, _START[mode])
    shutil.copy(FIRMWARE_DIR / "bootsel.py", flash / "bootsel.py")
    code = INSTALL.replace("DO_INSTALL", "False" if mode == "idle" else "True")
    proc = run_micropython(code, path_dirs=[lib, Path(".")], heap_kb=heap_kb, cwd=flash,
                           check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return False
    return json.loads(lines[-1])["phase"] == _END[mode]


def _min_heap(tmp: Path, bundle: Path, key, lib: Path, mode: str) -> int:
    """Smallest heap (KB) in which the run succeeds (binary search)."""
    lo, hi = 4, 256
    if not _ok(tmp, bundle, key, lib, hi, mode):
        raise RuntimeError(f"{mode} fails even with a 256 KB heap")
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _ok(tmp, bundle, key, lib, mid, mode):
            hi = mid
        else:
            lo = mid
    return hi


def run() -> list[Figure]:
    key = generate_private_key()
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        big, app_bundle, sources = _build(tmp, key)
        lib = tmp / "lib-mpy"
        lib.mkdir()
        for source in sorted(FIRMWARE_LIB.glob("*.py")):
            mpy_cross_compile(source, lib / (source.stem + ".mpy"), source.name)
        idle = _min_heap(tmp, big, key, lib, "idle")
        busy = _min_heap(tmp, big, key, lib, "install")
        check = _min_heap(tmp, big, key, lib, "check")
        started = time.monotonic()
        assert _ok(tmp, big, key, lib, 100, "install")
        install_s = time.monotonic() - started
        big_size = big.stat().st_size
        wire = app_bundle.stat().st_size
    return [
        Figure(f"peak heap above baseline, installing a {big_size // 1024} KB bundle",
               busy - idle, "KB", "idle node with the updater loaded (KB)", idle,
               f"≤ {TARGET_KB} KB", busy - idle <= TARGET_KB),
        Figure("peak heap above baseline, checking its manifest (Ed25519, 45 files)",
               check - idle, "KB", "idle node (KB)", idle),
        Figure("install step time, 200 KB, unix port (process start included)",
               install_s * 1000, "ms"),
        Figure("bytes on the wire per app update (bundle)", wire, "bytes",
               "raw .py sources of the app", sources, "fewer than the sources", wire < sources),
    ]


if __name__ == "__main__":
    from bench.report import print_figures

    print_figures(__doc__.splitlines()[0], run())
