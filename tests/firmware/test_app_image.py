"""The slot's code image (app_image.py) on the unix port: its bytes, its mount, and the
flash path an ESP32 with a ROMFS partition takes (against a fake partition)."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from mpremote.romfs import VfsRomWriter

from tests.rigs.micropython import micropython_command, micropython_env
from tools.emulator.launcher import Launcher, build_firmware, install_factory_app
from tools.emulator.scenario import Scenario

SLOT = "./slots/a"

# A vfs module whose rom_ioctl drives a fake ROMFS partition (a bytearray erased to 0xff);
# write number `cut_after` + 1 raises, as a power cut would stop the writes there.
FAKE_FLASH = """
import sys, json
import vfs as _real

class FakeFlash:
    VfsRom = _real.VfsRom
    mount = staticmethod(_real.mount)
    umount = staticmethod(_real.umount)

    def __init__(self, part, cut_after=None):
        self.part = part
        self.cut_after = cut_after
        self.writes = 0
        self.erased = 0

    def rom_ioctl(self, op, *args):
        if op == 1:
            return 1
        if op == 2:
            return memoryview(self.part)
        if op == 6:
            return 4096
        if op == 3:
            offset, size = (args[1], args[2]) if len(args) == 3 else (0, args[1])
            for i in range(offset, offset + size):
                self.part[i] = 0xFF
            self.erased += size
            return 4
        if op == 4:
            if self.cut_after is not None and self.writes >= self.cut_after:
                raise KeyboardInterrupt  # the power went
            seg, offset, buf = args
            self.part[offset:offset + len(buf)] = buf
            self.writes += 1
            return 0
        if op == 5:
            return 0
        raise ValueError(op)

def boot(part, cut_after=None):
    fake = FakeFlash(part, cut_after)
    sys.modules["vfs"] = fake
    sys.modules.pop("core.app_image", None)
    import core
    if hasattr(core, "app_image"):
        delattr(core, "app_image")
    from core import app_image
    try:
        result = app_image.mount(SLOT)
    except KeyboardInterrupt:
        result = "cut"
    finally:
        try:
            _real.umount("/app")
        except OSError:
            pass
        sys.modules["vfs"] = _real
    return result, fake.writes
"""


def _run(flash: Path, code: str) -> list:
    lib = flash / "slots" / "a" / "lib"
    proc = subprocess.run([*micropython_command("-c", 600), code], check=False, cwd=flash,
                          env=micropython_env([lib]), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def build() -> Path:
    return build_firmware()


@pytest.fixture
def flash(tmp_path, build) -> Path:
    root = tmp_path / "flash"
    install_factory_app(root, build)
    return root


def _reference_image(slot: Path, stamp: bytes) -> bytes:
    """The same tree packed by mpremote's ROMFS writer."""
    writer = VfsRomWriter()

    def add(folder: Path) -> None:
        for path in sorted(folder.iterdir(), key=lambda p: p.name):
            if path.is_dir():
                if not any(path.rglob("*.mpy")):
                    continue
                writer.opendir(path.name)
                add(path)
                writer.closedir()
            elif path.suffix == ".mpy":
                writer.mkfile(path.name, path.read_bytes())

    for sub in ("boards", "lib"):
        writer.opendir(sub)
        add(slot / sub)
        writer.closedir()
    writer.mkfile("stamp", stamp)
    return writer.finalise()


def test_image_is_a_romfs_mpremote_would_build_and_imports_run_from_it(flash):
    [out] = _run(flash, f"""
import sys, json, binascii
from core import app_image
entries, size = app_image.layout({SLOT!r})
where, mounted_size, heap = app_image.mount({SLOT!r})
with open("/app/stamp", "rb") as f:
    stamp = f.read()
import core.node, drivers.ld2410
with open("probe.txt", "w") as f:  # the node's own files are still where they were
    f.write("x")
print(json.dumps({{"where": where, "size": size, "mounted": mounted_size, "heap": heap,
    "stamp": binascii.hexlify(stamp).decode(), "node": core.node.__file__,
    "ld2410": drivers.ld2410.__file__, "path": sys.path[:2]}}))
""")
    assert out["where"] == "ram"
    assert out["size"] == out["mounted"]
    assert out["size"] <= out["heap"] <= out["size"] + 128  # one buffer, nothing else
    assert out["node"] == "/app/lib/core/node.mpy"
    assert out["ld2410"] == "/app/lib/drivers/ld2410.mpy"
    assert out["path"] == ["/app/lib", "/app/boards"]
    assert (flash / "probe.txt").read_text() == "x"
    slot = flash / "slots" / "a"
    reference = _reference_image(slot, bytes.fromhex(out["stamp"]))
    assert len(reference) == out["size"]
    [dump] = _run(flash, f"""
import json, binascii
from core import app_image
entries, size = app_image.layout({SLOT!r})
buf = bytearray(size)
app_image.write_image(app_image._Writer(buffer=buf), entries)
print(json.dumps({{"image": binascii.hexlify(buf).decode()}}))
""")
    assert bytes.fromhex(dump["image"]) == reference


def test_a_source_slot_mounts_nothing(tmp_path):
    flash = tmp_path / "flash"
    slot = flash / "slots" / "a"
    shutil.copytree(Path(__file__).resolve().parents[2] / "firmware" / "lib", slot / "lib")
    [out] = _run(flash, f"""
import sys, json, vfs
from core import app_image
before = list(sys.path)
print(json.dumps({{"mount": app_image.mount({SLOT!r}), "same_path": sys.path == before,
    "mounts": len(vfs.mount())}}))
""")
    assert out["mount"] == [None, 0, 0]
    assert out["same_path"] is True
    assert out["mounts"] == 1  # only the host filesystem


def test_flash_partition_is_written_once_per_slot_and_survives_a_cut_write(flash):
    slot = flash / "slots" / "a"
    out = _run(flash, f"""
SLOT = {SLOT!r}
{FAKE_FLASH}
part = bytearray(b"\\xff" * 131072)
first = boot(part)
again = boot(part)
# a new release in the slot (as after an update): the image is written again
with open(SLOT + "/app_version.json", "w") as f:
    f.write('{{"version": "9.9.9", "sequence": 42}}')
changed = boot(part)
# another release, and the power goes during the writes: no valid image is left behind
with open(SLOT + "/app_version.json", "w") as f:
    f.write('{{"version": "9.9.10", "sequence": 43}}')
cut = boot(part, cut_after=3)
valid_after_cut = bytes(part[:3]) == b"\\xd2\\xcd\\x31"
recovered = boot(part)
steady = boot(part)
import vfs as real
real.mount(real.VfsRom(memoryview(part)), "/check")
with open("/check/stamp", "rb") as f:
    stamp = f.read()
from core import app_image
entries, size = app_image.layout(SLOT)
with open("/check/lib/core/node.mpy", "rb") as f:
    node_bytes = len(f.read())
print(json.dumps({{"first": first, "again": again, "changed": changed, "cut": cut,
    "valid_after_cut": valid_after_cut, "recovered": recovered, "steady": steady,
    "stamp_ok": stamp == entries[-1][2], "node_bytes": node_bytes}}))
""")
    [r] = out
    (where, size, heap), writes = r["first"]
    assert (where, heap) == ("flash", 0) and writes == -(-size // 4096)  # whole 4 KB chunks
    assert r["again"] == [["flash", size, 0], 0]  # same slot: nothing written
    assert r["changed"][0][0] == "flash" and r["changed"][1] > 0
    assert r["cut"] == ["cut", 3]
    assert r["valid_after_cut"] is False  # the first chunk, with the magic, goes down last
    assert r["recovered"][0][0] == "flash" and r["recovered"][1] > 0
    assert r["steady"][1] == 0
    assert r["stamp_ok"] is True
    assert r["node_bytes"] == (slot / "lib" / "core" / "node.mpy").stat().st_size


def test_the_node_runs_from_its_image_and_reports_the_buffer_apart(tmp_path):
    launcher = Launcher(tmp_path / "flash", Scenario(seed=3), end_ms=3_700_000)
    with launcher:
        assert launcher.wait_done(timeout=120)
    lines = list(launcher.lines)
    image = [line for line in lines if " app_image " in line]
    assert image and "where=ram" in image[0], lines[:20]
    heap = [line for line in lines if " heap " in line]
    assert len(heap) >= 2
    fields = dict(item.split("=", 1) for item in heap[-1].split(" ")[3:])
    assert int(fields["image"]) > 30000  # the code image's buffer ...
    assert int(fields["alloc"]) < int(fields["image"])  # ... is not in the app's figure
    assert not [line for line in lines if " ERROR " in line]
