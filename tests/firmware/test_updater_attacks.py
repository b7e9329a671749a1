"""The node refuses every bundle it must not install, reports why, and keeps running its release."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from test_updater_kit import (
    FACTORY_VERSION,
    FakeServer,
    app_files,
    driver_command,
    events,
    pack_bundle,
    provision_flash,
    slot_matches,
)

from ota.keys import generate_private_key, key_id

TRUSTED = generate_private_key()
REVOKED = generate_private_key()
STRANGER = generate_private_key()
NEW = "1.1.0"


def run_node(flash: Path, rounds: int = 6) -> list[dict]:
    """Boot the node once and let it check in `rounds` times; its event lines."""
    (flash / "driver.json").write_text(json.dumps({"rounds": rounds}))
    cmd, env = driver_command(flash)
    proc = subprocess.run(cmd, cwd=flash, env=env, capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode in (0, 3), proc.stderr
    return list(events(proc.stdout))


def bundle(**changes) -> bytes:
    args = {"files": app_files(NEW), "version": NEW, "sequence": 11, "key": TRUSTED}
    args.update(changes)
    return pack_bundle(**args)


def bad_signature() -> bytes:
    data = bytearray(bundle())
    data[40] ^= 0x01  # inside the 64-byte signature (offset 22..85)
    return bytes(data)


def mixed_releases() -> bytes:
    """Release 1.1.0's signed header and manifest followed by release 1.2.0's file bytes."""
    ours, theirs = bundle(), bundle(files=app_files("1.2.0"), version="1.2.0", sequence=12)
    body = sum(len(b) for b in app_files(NEW).values())
    return ours[:-body] + theirs[-body:]


def lying_hash() -> bytes:
    """A manifest that signs one set of bytes while the bundle carries another, same sizes."""
    shipped = app_files(NEW)
    declared = dict(shipped, **{"lib/filler.py": b"#" * len(shipped["lib/filler.py"])})
    return bundle(declared=declared)


CASES: dict[str, tuple[Callable[[], bytes], dict, str]] = {
    "bad_signature": (bad_signature, {}, "bad_signature"),
    "unknown_key": (lambda: bundle(key=STRANGER), {}, "unknown_key"),
    "revoked_key": (lambda: bundle(key=REVOKED), {}, "revoked_key"),
    "rollback_in_bundle": (lambda: bundle(sequence=9, version="0.9.0"), {}, "rollback"),
    "rollback_announced": (lambda: bundle(sequence=9, version="0.9.0"), {"sequence": 9},
                           "rollback"),
    "expired": (lambda: bundle(expires=int(time.time()) - 5,
                               created=int(time.time()) - 100), {}, "expired"),
    "other_board": (lambda: bundle(board=("esp32_devkitc",)), {}, "wrong_board"),
    "file_hash": (lying_hash, {}, "bad_file_hash"),
    "mixed_releases": (mixed_releases, {}, "bad_file_hash"),
    "endless_data": (bundle, {"endless": True}, "file_too_long"),
    "longer_than_manifest": (lambda: bundle() + b"\x00" * 700, {}, "file_too_long"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_refused_bundle_leaves_the_running_release_alone(case: str, tmp_path: Path) -> None:
    make, server_opts, reason = CASES[case]
    flash = tmp_path / "flash"
    opts = {"sequence": 11, **server_opts}
    with FakeServer(make(), **opts) as server:
        provision_flash(flash, [TRUSTED, REVOKED], revoked=[key_id(REVOKED)], server=server.url)
        pointer_before = (flash / "slot.json").read_bytes()
        run = run_node(flash)
        states = server.states()

    # The server heard "refused" with the reason code, and nothing was ever installed.
    assert states and states[-1] == "refused", states
    detail = server.reports["node-test"][-1]["detail"]
    assert detail.startswith(reason), detail
    assert "installed" not in states and "committed" not in states
    # The slot pointer and the active slot are untouched; no half-written slot is left behind.
    assert (flash / "slot.json").read_bytes() == pointer_before
    assert slot_matches(flash, "a", app_files(FACTORY_VERSION))
    assert not (flash / "slots" / "b" / "app_version.json").exists()
    assert not (flash / "update" / "bundle.part").exists()
    # The node kept running its release, and still boots it after a restart.
    assert run[0]["version"] == FACTORY_VERSION and run[-1]["event"] == "end"
    again = run_node(flash, rounds=1)
    assert again[0] == {"event": "boot", "slot": "./slots/a", "version": FACTORY_VERSION}


def test_refused_rollout_is_not_retried_once_reported(tmp_path: Path) -> None:
    """After the refusal reached the server, the same offer is ignored (no second download)."""
    flash = tmp_path / "flash"
    with FakeServer(bundle(key=STRANGER)) as server:
        provision_flash(flash, [TRUSTED], server=server.url)
        run_node(flash)
        server.reports.clear()
        server.finished = lambda device: False  # a confused server keeps offering it
        run_node(flash)
        assert server.states() == []
    state = json.loads((flash / "update" / "state.json").read_text())
    assert state["phase"] == "idle" and state["rollout_id"] == 7


def test_good_bundle_installs_and_commits(tmp_path: Path) -> None:
    """The same path with a genuine bundle: installed into slot b, booted, committed."""
    flash = tmp_path / "flash"
    with FakeServer(bundle()) as server:
        provision_flash(flash, [TRUSTED], server=server.url)
        first = run_node(flash)
        second = run_node(flash)
        states = server.states()
    assert first[-1] == {"event": "reset"}
    assert second[0] == {"event": "boot", "slot": "./slots/b", "version": NEW}
    assert states[-1] == "committed" and "installing" in states and "installed" in states
    pointer = json.loads((flash / "slot.json").read_text())
    assert pointer["active"] == "b" and pointer["previous"] == "a"
    assert pointer["committed_sequence"] == 11 and pointer["pending"] is None
    assert slot_matches(flash, "b", app_files(NEW))


@pytest.mark.parametrize(("ooms", "ends"), [(2, "committed"), (6, "failed")])
def test_running_out_of_memory_is_retried_then_given_up(ooms: int, ends: str,
                                                        tmp_path: Path) -> None:
    """Fragmentation can fail one attempt: the phase is retried; only a persistent failure is
    final, and either way the running release stays."""
    flash = tmp_path / "flash"
    with FakeServer(bundle()) as server:
        provision_flash(flash, [TRUSTED], server=server.url)
        for _ in range(3):
            (flash / "driver.json").write_text(json.dumps({"rounds": 12, "oom_checks": ooms}))
            cmd, env = driver_command(flash)
            proc = subprocess.run(cmd, cwd=flash, env=env, capture_output=True, text=True,
                                  timeout=60, check=False)
            assert proc.returncode in (0, 3), proc.stderr
            if server.states() and server.states()[-1] in ("committed", "failed"):
                break
        states = server.states()
    assert states[-1] == ends, states
    if ends == "failed":
        assert server.reports["node-test"][-1]["detail"] == "out of memory in downloading"
        assert slot_matches(flash, "a", app_files(FACTORY_VERSION))
