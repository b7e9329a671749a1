"""Boot selection: trial boots are counted, a crashing or incomplete update is rolled back."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from test_updater_kit import (
    FACTORY_VERSION,
    FakeServer,
    app_files,
    driver_command,
    events,
    pack_bundle,
    provision_flash,
)

from ota.keys import generate_private_key

KEY = generate_private_key()


def boot(flash: Path, rounds: int = 6) -> subprocess.CompletedProcess[str]:
    (flash / "driver.json").write_text(json.dumps({"rounds": rounds, "health_timeout_s": 3}))
    cmd, env = driver_command(flash)
    return subprocess.run(cmd, cwd=flash, env=env, capture_output=True, text=True, timeout=60,
                          check=False)


def pointer(flash: Path) -> dict:
    return json.loads((flash / "slot.json").read_text())


def test_release_that_crashes_on_start_is_rolled_back_after_three_boots(tmp_path: Path) -> None:
    files = app_files("1.1.0")
    files["lib/app_info.py"] = b"raise RuntimeError('broken release')\n"
    flash = tmp_path / "flash"
    with FakeServer(pack_bundle(files, version="1.1.0", sequence=11, key=KEY)) as server:
        provision_flash(flash, [KEY], server=server.url)
        assert boot(flash).returncode == 3  # installed, switched, rebooted
        attempts = []
        for _ in range(3):
            proc = boot(flash)
            assert proc.returncode == 1 and "broken release" in proc.stdout + proc.stderr
            attempts.append(pointer(flash)["pending"]["attempts"])
        assert attempts == [1, 2, 3]  # counted on flash before the app ran
        back = boot(flash)  # the fourth boot gives up the update
        first = next(events(back.stdout))
        assert first == {"event": "boot", "slot": "./slots/a", "version": FACTORY_VERSION}
        assert server.states()[-1] == "rolled_back"
        assert "3 boots" in server.reports["node-test"][-1]["detail"]
    p = pointer(flash)
    assert p["active"] == "a" and p["pending"] is None and p["committed_sequence"] == 10
    assert p["rolled_back"]["version"] == "1.1.0"


def test_release_never_healthy_is_rolled_back_by_the_updater(tmp_path: Path) -> None:
    flash = tmp_path / "flash"
    bundle = pack_bundle(app_files("1.1.0", healthy=False), version="1.1.0", sequence=11,
                         key=KEY)
    with FakeServer(bundle) as server:
        provision_flash(flash, [KEY], server=server.url)
        boot(flash)
        trial = boot(flash, rounds=8)
        assert next(events(trial.stdout))["slot"] == "./slots/b"
        assert list(events(trial.stdout))[-1] == {"event": "reset"}
        after = boot(flash)
        assert next(events(after.stdout))["slot"] == "./slots/a"
        assert server.states()[-1] == "rolled_back"
        assert "not healthy within 3 s" in server.reports["node-test"][-1]["detail"]
    assert pointer(flash)["active"] == "a"


SELECT = """
import bootsel
print('"' + bootsel.select(".") + '"')
"""


def select(flash: Path, mpy) -> str:
    return mpy(SELECT, cwd=flash, path_dirs=[Path(".")])[-1]


def test_incomplete_pending_slot_is_never_booted(tmp_path: Path, mpy) -> None:
    flash = tmp_path / "flash"
    provision_flash(flash, [KEY])
    (flash / "slots" / "b" / "lib").mkdir(parents=True)
    (flash / "slots" / "b" / "lib" / "app_info.py").write_text("VERSION = 'half'\n")
    p = pointer(flash)
    p["pending"] = {"slot": "b", "attempts": 0, "rollout_id": 7, "version": "1.1.0",
                    "sequence": 11}
    (flash / "slot.json").write_text(json.dumps(p))
    assert select(flash, mpy) == "./slots/a"
    p = pointer(flash)
    assert p["pending"] is None and p["rolled_back"]["reason"] == "pending slot incomplete"


def test_pointer_survives_a_cut_inside_a_fat_style_rename(tmp_path: Path, mpy) -> None:
    """Where rename cannot replace, the old pointer is removed first: the temp file is used."""
    flash = tmp_path / "flash"
    provision_flash(flash, [KEY])
    (flash / "slots" / "b").mkdir()
    (flash / "slots" / "b" / "app_version.json").write_text('{"version":"1.1.0","sequence":11}')
    (flash / "slot.json").rename(flash / "slot.json.tmp")
    assert select(flash, mpy) == "./slots/a"
    # A half-written temp file beside an intact pointer is ignored.
    (flash / "slot.json.tmp").rename(flash / "slot.json")
    (flash / "slot.json.tmp").write_text('{"active": "b", "pend')
    p = pointer(flash)
    assert p["active"] == "a" and select(flash, mpy) == "./slots/a"


def test_no_pointer_boots_the_first_complete_slot(tmp_path: Path, mpy) -> None:
    flash = tmp_path / "flash"
    provision_flash(flash, [KEY])
    (flash / "slot.json").unlink()
    assert select(flash, mpy) == "./slots/a"
