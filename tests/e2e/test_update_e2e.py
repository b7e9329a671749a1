"""Signed updates end to end: real MicroPython nodes, a live server, staged rollouts."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def _crash_at_start(app: Path) -> None:
    main = app / "lib" / "node_main.py"
    main.write_text('raise RuntimeError("this release cannot start")\n' + main.read_text())


def _states(rig, rollout_id: int) -> dict[str, str]:
    rows = rig.api("GET", f"/api/v1/rollouts/{rollout_id}/nodes")
    return {r["device_id"]: r["state"] for r in rows}


def test_rollout_canary_first_then_all_nodes_run_the_new_version(rig):
    nodes = rig.add_nodes(3)
    rig.wait_until("all nodes online", lambda: all(
        d["online"] for d in rig.devices().values()) and len(rig.devices()) == 3)
    release = rig.release("0.2.0", 2)
    rollout = rig.api("POST", "/api/v1/rollouts", json={
        "release_id": release["id"], "waves": [30, 100], "success_threshold_pct": 100,
        "failure_threshold_pct": 50})
    assert [w["planned"] for w in rollout["waves"]] == [1, 2]
    rig.wait_until("the canary committed", lambda: list(
        _states(rig, rollout["id"]).values()) == ["committed"], timeout=180)
    rig.wait_until("every node committed", lambda: sorted(
        _states(rig, rollout["id"]).values()) == ["committed"] * 3, timeout=180)
    status = rig.api("GET", f"/api/v1/rollouts/{rollout['id']}")
    assert status["state"] == "completed"
    rig.wait_until("every node reports 0.2.0", lambda: all(
        d["fw_version"] == "0.2.0" for d in rig.devices().values()), timeout=120)
    for node in nodes:
        assert (node.launcher.flash_dir / "slot.json").read_text().count('"active": "b"') == 1


def test_a_release_that_crashes_is_rolled_back_and_pauses_the_rollout(rig):
    rig.add_nodes(3)
    rig.wait_until("all nodes online", lambda: len(rig.devices()) == 3 and all(
        d["online"] for d in rig.devices().values()))
    release = rig.release("0.3.0", 3, patch=_crash_at_start)
    rollout = rig.api("POST", "/api/v1/rollouts", json={
        "release_id": release["id"], "waves": [30, 100], "failure_threshold_pct": 50})
    rig.wait_until("the canary rolled back", lambda: list(
        _states(rig, rollout["id"]).values()) == ["rolled_back"], timeout=240)
    status = rig.api("GET", f"/api/v1/rollouts/{rollout['id']}")
    assert status["state"] == "paused" and "1 of 1 nodes failed" in status["state_reason"]
    assert len(_states(rig, rollout["id"])) == 1  # the rest were never offered it
    rig.wait_until("every node still runs 0.1.0", lambda: all(
        d["fw_version"] == "0.1.0" and d["online"] for d in rig.devices().values()))
