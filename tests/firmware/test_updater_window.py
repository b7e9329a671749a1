"""The maintenance window on the node (issue 14): the update client downloads, installs and
reboots only inside the window its assignment carries, by its own clock, on MicroPython."""

from __future__ import annotations

import json
import time
from pathlib import Path

from test_updater_kit import FakeServer, Release, provision_flash, run_driver, slot_matches

from ota.keys import generate_private_key

KEY = generate_private_key()
ROUND_S = 600  # the driver's clock moves on this much per check-in round


def run(tmp_path: Path, window: dict, rounds: int) -> tuple[FakeServer, list[dict], Release]:
    release = Release.make(KEY, "1.1.0", 11)
    flash = tmp_path / "flash"
    with FakeServer(release.bundle) as srv:
        srv.assignment["window"] = window
        provision_flash(flash, [KEY], server=srv.url)
        proc, evs = run_driver(flash, rounds=rounds, advance_s=ROUND_S, reboots=1,
                               stop_when_reported=True)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr
    return srv, evs, release


def test_an_offer_before_the_window_downloads_and_installs_only_once_it_opens(tmp_path):
    now = int(time.time())
    window = {"start": now + 3 * ROUND_S - 60, "end": now + 3 * ROUND_S + 3600,
              "period": 86400}
    srv, evs, release = run(tmp_path, window, rounds=10)
    reports = srv.reports["node-test"]
    waiting = [r for r in reports if r["detail"].startswith("waiting for the window")]
    # rounds 0-2 are before the window: offered, held, reported as waiting for it
    assert len(waiting) == 3, reports
    assert waiting[0]["detail"] == f"waiting for the window: opens at {window['start']}"
    assert reports[:3] == waiting  # nothing happened before it opened
    assert srv.states()[-1] == "committed", reports
    assert [e["event"] for e in evs] == ["boot", "reset", "boot", "end"]
    assert slot_matches(tmp_path / "flash", "b", release.files)


def test_a_window_that_closes_mid_update_holds_the_install_and_the_reboot(tmp_path):
    now = int(time.time())
    window = {"start": now - 60, "end": now + ROUND_S // 2, "period": 86400}
    srv, evs, _ = run(tmp_path, window, rounds=6)
    reports = srv.reports["node-test"]
    assert reports[-1]["state"] in ("downloading", "installing"), reports
    assert reports[-1]["detail"] == (
        f"waiting for the window: opens at {window['start'] + 86400}")
    assert "installed" not in srv.states() and "committed" not in srv.states()
    assert [e["event"] for e in evs] == ["boot", "end"]  # never rebooted
    pointer = json.loads((tmp_path / "flash" / "slot.json").read_text())
    assert pointer["pending"] is None and pointer["active"] == "a"


def test_a_node_whose_window_passed_rolls_it_on_by_its_period(tmp_path):
    now = int(time.time())
    # the occurrence the server sent is two days old: the node rolls it on to today's, open now
    window = {"start": now - 2 * 86400 - 60, "end": now - 2 * 86400 + 7200, "period": 86400}
    srv, _, _ = run(tmp_path, window, rounds=8)
    assert srv.states()[-1] == "committed", srv.reports
    assert not any(r["detail"].startswith("waiting") for r in srv.reports["node-test"])
