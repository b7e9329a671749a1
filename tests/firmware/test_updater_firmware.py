"""Full-firmware updates run the same state machine through the board's OTA API (faked here)."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

from test_updater_kit import FakeServer, driver_command, events, pack_bundle, provision_flash

from ota.keys import generate_private_key

KEY = generate_private_key()
IMAGE = bytes(range(256)) * 700  # 175 KB "firmware.bin"

# Two OTA partitions as files, and a bootloader with ESP-IDF's rollback rule: an image booted
# for the first time that resets before it is marked valid is reverted at the next boot.
FAKE_OTA = '''
import json
STATE = "ota.json"

def _load():
    try:
        return json.load(open(STATE))
    except OSError:
        return {"running": "ota_0", "boot": "ota_0", "valid": True, "tried": False}

def _save(s):
    with open(STATE + ".tmp", "w") as f:
        json.dump(s, f)
    import os
    os.rename(STATE + ".tmp", STATE)

def bootloader():
    s = _load()
    if s["boot"] != s["running"]:
        s["running"], s["valid"], s["tried"] = s["boot"], False, True
    elif not s["valid"] and s["tried"]:
        other = "ota_1" if s["running"] == "ota_0" else "ota_0"
        s["running"] = s["boot"] = other
        s["valid"], s["tried"] = True, False
    _save(s)

class _Writer:
    def __init__(self, label, size):
        self.f = open(label + ".bin", "wb")
    def write(self, buf):
        self.f.write(buf)
    def finish(self):
        self.f.close()

class FakeOta:
    def _next(self):
        return "ota_1" if _load()["running"] == "ota_0" else "ota_0"
    def ota_begin(self, size):
        return _Writer(self._next(), size)
    def ota_switch(self):
        s = _load(); s["boot"] = self._next(); _save(s)
    def ota_running(self):
        return _load()["running"]
    def ota_commit(self):
        s = _load(); s["valid"] = True; _save(s)
    def ota_rollback(self):
        s = _load(); s["boot"] = self._next(); s["valid"] = True; _save(s)
'''


def boot(flash: Path, **cfg) -> list[dict]:
    (flash / "driver.json").write_text(json.dumps({"rounds": 6, "fake_ota": True,
                                                   "health_timeout_s": 3, **cfg}))
    cmd, env = driver_command(flash)
    proc = subprocess.run(cmd, cwd=flash, env=env, capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode in (0, 3), proc.stdout + proc.stderr
    return list(events(proc.stdout))


def firmware_node(tmp_path: Path, server: FakeServer) -> Path:
    flash = tmp_path / "flash"
    provision_flash(flash, [KEY], server=server.url)
    (flash / "fake_ota.py").write_text(FAKE_OTA)
    return flash


def firmware_bundle() -> bytes:
    return pack_bundle({"firmware.bin": IMAGE}, version="2.0.0", sequence=20, key=KEY,
                       kind="firmware")


def test_firmware_image_is_written_booted_and_committed(tmp_path: Path) -> None:
    with FakeServer(firmware_bundle(), sequence=20, version="2.0.0") as server:
        flash = firmware_node(tmp_path, server)
        assert boot(flash)[-1] == {"event": "reset"}
        assert hashlib.sha256((flash / "ota_1.bin").read_bytes()).digest() == \
            hashlib.sha256(IMAGE).digest()
        boot(flash)
        assert server.states()[-1] == "committed"
    ota = json.loads((flash / "ota.json").read_text())
    assert ota["running"] == "ota_1" and ota["valid"]
    assert json.loads((flash / "slot.json").read_text())["committed_sequence"] == 20


def test_image_that_never_proves_healthy_goes_back_to_the_old_one(tmp_path: Path) -> None:
    with FakeServer(firmware_bundle(), sequence=20, version="2.0.0") as server:
        flash = firmware_node(tmp_path, server)
        boot(flash)
        assert boot(flash, healthy=False, rounds=8)[-1] == {"event": "reset"}
        boot(flash)
        assert server.states()[-1] == "rolled_back"
    assert json.loads((flash / "ota.json").read_text())["running"] == "ota_0"
    assert json.loads((flash / "slot.json").read_text())["committed_sequence"] == 10


def test_image_that_resets_before_commit_is_reverted_by_the_bootloader(tmp_path: Path) -> None:
    with FakeServer(firmware_bundle(), sequence=20, version="2.0.0") as server:
        flash = firmware_node(tmp_path, server)
        boot(flash)
        boot(flash, healthy=False, rounds=1)  # crashes (ends) before proving itself
        boot(flash)
        assert server.states()[-1] == "rolled_back"
        assert "bootloader" in server.reports["node-test"][-1]["detail"]
    assert json.loads((flash / "ota.json").read_text())["running"] == "ota_0"
