"""A power cut while a node applies a key statement leaves the old or the new key set, never a
broken one (the node's key set is written as a temp file, then renamed)."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from ota.bundle import compile_app
from ota.keys import generate_private_key, key_id, make_rotation, raw_public_key
from tests.rigs.micropython import micropython_command, micropython_env
from tools.firmware_tree import FIRMWARE_DIR, FIRMWARE_LIB

# Applies the rotation, then puts the old key set back, for ever, resting a little in each
# state: a cut falls in a write, in a verification, or in either resting state.
LOOP = """
import json, time
import bootsel
from updater import keyring
old, envelope = json.load(open("case.json"))
first = True
while True:
    serial, error = keyring.apply_statements("", [envelope])
    assert serial == 1 and not error, error
    time.sleep_ms(10)
    bootsel.write_json("/keys.json", old)
    if first:
        print("ready")
        first = False
    time.sleep_ms(10)
"""


def read_key_set(flash: Path) -> dict | None:
    """What the node reads at its next boot (bootsel.read_json: the file, else a whole temp)."""
    for name in ("keys.json", "keys.json.tmp"):
        try:
            return json.loads((flash / name).read_text())
        except FileNotFoundError:
            continue
        except ValueError:
            return None
    return None


@pytest.mark.slow
def test_power_cut_while_applying_a_statement_leaves_old_or_new_key_set(tmp_path: Path) -> None:
    old_key, new_key = generate_private_key(), generate_private_key()
    old = {"keys": {key_id(old_key): raw_public_key(old_key).hex()}, "revoked": [], "serial": 0}
    envelope = make_rotation(old_key, raw_public_key(new_key), serial=1).decode()
    new = {"keys": {**old["keys"], key_id(new_key): raw_public_key(new_key).hex()},
           "revoked": [key_id(old_key)], "serial": 1}
    lib = tmp_path / "lib"
    lib.mkdir()
    compile_app(FIRMWARE_LIB, lib)
    flash = tmp_path / "flash"
    flash.mkdir()
    (flash / "bootsel.py").write_bytes((FIRMWARE_DIR / "bootsel.py").read_bytes())
    (flash / "case.json").write_text(json.dumps([old, envelope]))
    (flash / "loop.py").write_text(LOOP.replace('"/keys.json"', '"./keys.json"')
                                   .replace('apply_statements("",', 'apply_statements(".",'))
    rng = random.Random(10)
    seen = {"old": 0, "new": 0}
    for _ in range(40):
        (flash / "keys.json").write_text(json.dumps(old))
        proc = subprocess.Popen(micropython_command("loop.py"), cwd=flash,
                                env=micropython_env([lib, Path(".")]),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.1))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        found = read_key_set(flash)
        assert found in (old, new), found
        seen["old" if found == old else "new"] += 1
        for leftover in flash.glob("keys.json*"):
            leftover.unlink()
    assert seen["old"] and seen["new"], seen  # the cuts fell on both sides of the rename
