"""Power cuts (SIGKILL) at random moments of an update never leave a node without a signed app."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from test_updater_kit import (
    FACTORY_SEQUENCE,
    FACTORY_VERSION,
    FakeServer,
    app_files,
    compiled_lib,
    driver_command,
    events,
    pack_bundle,
    provision_flash,
    slot_matches,
)

from ota.keys import generate_private_key
from tests.rigs.micropython import micropython_command, micropython_env

KEY = generate_private_key()
MIN_NODES = 24
MIN_CUTS = 120
MAX_CUTS_PER_NODE = 8
MAX_NODES = 80  # a bound on the nodes added to cover every phase
COVERED_PHASES = ("downloading", "installing", "switched")
FINISHED = ("committed", "rolled_back", "refused", "failed", "idle")
GOOD, BAD = "1.1.0", "1.1.1"


def release_files(version: str) -> dict[str, bytes]:
    """A release big enough (about 80 KB in 14 files) that cuts land inside each phase."""
    files = app_files(version, healthy=version != BAD)
    for i in range(12):
        files[f"lib/part{i}.py"] = (f"# {version} part {i}\n" * 400).encode()[:6500]
    return files


SIGNED = {FACTORY_VERSION: app_files(FACTORY_VERSION), GOOD: release_files(GOOD),
          BAD: release_files(BAD)}

PICK = """
import bootsel
print('"' + bootsel.select(".") + '"')
"""


def booted_slot(flash: Path, scratch: Path) -> str:
    """The slot bootsel would boot from this flash, asked on a copy (selection counts boots)."""
    if scratch.exists():
        shutil.rmtree(scratch)
    shutil.copytree(flash, scratch)
    (scratch / "pick.py").write_text(PICK)
    proc = subprocess.run(micropython_command("pick.py"), cwd=scratch, check=True,
                          env=micropython_env([compiled_lib(), Path(".")]),
                          capture_output=True, text=True, timeout=30)
    return json.loads(proc.stdout.strip().splitlines()[-1]).rsplit("/", 1)[-1]


def signed_release_in(flash: Path, slot: str) -> str | None:
    """Which signed release the slot holds byte for byte (None: none of them)."""
    version = json.loads((flash / "slots" / slot / "app_version.json").read_text())["version"]
    return version if slot_matches(flash, slot, SIGNED[version]) else None


def phase_at_cut(flash: Path) -> str:
    """Where the update stood when the power went: the persisted phase, or the trial boot."""
    try:
        state = json.loads((flash / "update" / "state.json").read_text())
    except (OSError, ValueError):
        return "before offer"
    return state["phase"]


@pytest.mark.slow
def test_power_cuts_never_brick_a_node(tmp_path: Path) -> None:
    rng = random.Random(20261124)
    good = pack_bundle(SIGNED[GOOD], version=GOOD, sequence=11, key=KEY)
    bad = pack_bundle(SIGNED[BAD], version=BAD, sequence=12, key=KEY)
    phases: dict[str, int] = {}
    cuts = 0
    with FakeServer(good, sequence=11, version=GOOD, chunk_delay_s=0.004) as good_srv, \
            FakeServer(bad, sequence=12, version=BAD, chunk_delay_s=0.004) as bad_srv:
        # How long one boot of the driver takes, to spread the cuts over whole boots.
        calib = tmp_path / "calib"
        provision_flash(calib, [KEY], server=good_srv.url,
                        identity={"device_id": "calib", "secret": "00" * 32,
                                  "server": good_srv.url,
                                  "insecure_http": True})  # a test server (see test_tls_link)
        cmd, env = driver_command(calib)
        (calib / "driver.json").write_text(json.dumps({"rounds": 8}))
        started = time.monotonic()
        subprocess.run(cmd, cwd=calib, env=env, capture_output=True, timeout=60, check=False)
        boot_s = time.monotonic() - started

        def uncovered() -> bool:
            return any(phases.get(p, 0) < 2 for p in COVERED_PHASES)

        n = -1
        # Cuts land at random moments; short phases (an install takes tens of ms) can be missed
        # by a given set, so nodes are added until every phase took two cuts (bounded).
        while n < MIN_NODES - 1 or cuts < MIN_CUTS or (uncovered() and n < MAX_NODES - 1):
            n += 1
            server = bad_srv if n % 3 == 0 else good_srv
            device = f"node-{n}"
            flash = tmp_path / device
            provision_flash(flash, [KEY], identity={"device_id": device, "secret": "00" * 32,
                                                    "server": server.url,
                                                    "insecure_http": True})
            (flash / "driver.json").write_text(json.dumps({"rounds": 8,
                                                           "health_timeout_s": 3}))
            cmd, env = driver_command(flash)
            for _ in range(MAX_CUTS_PER_NODE):
                proc = subprocess.Popen(cmd, cwd=flash, env=env, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
                time.sleep(rng.uniform(0, boot_s * 1.1))
                proc.kill()  # SIGKILL: the power goes, mid-write or not
                proc.wait()
                cuts += 1
                phase = phase_at_cut(flash)
                phases[phase] = phases.get(phase, 0) + 1
                # Zero bricked: right now, bootsel would boot a complete, signed release.
                slot = booted_slot(flash, tmp_path / "scratch")
                assert signed_release_in(flash, slot), (device, phase, slot)
                if phase in FINISHED:
                    break  # the update is over: later cuts would test nothing new

            # Power stays on now: the node finishes the update and reports how it ended.
            outcome = None
            for _ in range(6):
                proc = subprocess.run(cmd, cwd=flash, env=env, capture_output=True, text=True,
                                      timeout=60, check=False)
                assert proc.returncode in (0, 3), proc.stdout + proc.stderr
                ends = [e for e in events(proc.stdout) if e["event"] == "end"]
                if ends and server.finished(device):
                    outcome = server.states(device)[-1]
                    break
            pointer = json.loads((flash / "slot.json").read_text())
            running = signed_release_in(flash, pointer["active"])
            assert pointer["pending"] is None
            if outcome == "committed":
                assert running == server.assignment["version"], device
            else:
                assert outcome == "rolled_back", (device, server.states(device))
                assert running == FACTORY_VERSION
                assert pointer["committed_sequence"] == FACTORY_SEQUENCE
            if server is bad_srv:
                assert outcome == "rolled_back"  # never healthy: it must not stay

        resumed = good_srv.range_starts + bad_srv.range_starts
    assert cuts >= 100
    # Cut downloads resumed where they stopped (HTTP Range), past the manifest check too.
    assert len(resumed) >= 5 and max(resumed) > len(good) // 2
    # The cuts landed in every phase of the update, including the trial boot.
    for phase in ("downloading", "installing", "switched"):
        assert phases.get(phase, 0) >= 2, phases
