"""The slot's code image on a firmware built without ROMFS, as micropython.org's ESP32_GENERIC
is (its vfs module has neither VfsRom nor rom_ioctl): nothing is mounted, no heap is taken for
an image, and the modules load from the slot's files."""

import json
import subprocess

from tests.rigs.micropython import micropython_command, micropython_env
from tools.emulator.launcher import build_firmware, install_factory_app

SLOT = "./slots/a"


def test_a_firmware_without_romfs_mounts_nothing_and_builds_no_image(tmp_path):
    flash = tmp_path / "flash"
    install_factory_app(flash, build_firmware())  # a slot of .mpy files: an image to make
    code = f"""
import sys, json, gc
import vfs as _real

class NoRomfs:  # the vfs module of a firmware without ROMFS
    mount = staticmethod(_real.mount)
    umount = staticmethod(_real.umount)

sys.modules["vfs"] = NoRomfs
from core import app_image
before_path = list(sys.path)
gc.collect()
before = gc.mem_alloc()
result = app_image.mount({SLOT!r})
grown = gc.mem_alloc() - before
sys.modules["vfs"] = _real
import core.node
print(json.dumps({{"mount": result, "grown": grown, "same_path": sys.path == before_path,
    "mounts": len(_real.mount()), "node": core.node.__file__}}))
"""
    lib = flash / "slots" / "a" / "lib"
    proc = subprocess.run([*micropython_command("-c", 600), code], check=False, cwd=flash,
                          env=micropython_env([lib]), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [out] = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert out["mount"] == [None, 0, 0]  # not an error, and no image size to warn about
    assert out["grown"] < 1024  # no image buffer was allocated (it would be tens of KB)
    assert out["same_path"] is True
    assert out["mounts"] == 1  # only the host filesystem
    assert out["node"].endswith("slots/a/lib/core/node.mpy")  # from the slot's files


def test_a_node_running_from_its_files_says_so_once_at_boot(tmp_path):
    """No image mounted (here a slot of sources, as on a firmware without ROMFS nothing is):
    the boot log says where the code comes from, once."""
    from tools.emulator.launcher import Launcher

    launcher = Launcher(tmp_path / "flash", speed=0, end_ms=60_000, compiled=False)
    with launcher:
        assert launcher.wait_done(timeout=120)
    said = [fields for _, fields in launcher.events("app_image")]
    assert said == [{"where": "files", "size": "0"}], said
