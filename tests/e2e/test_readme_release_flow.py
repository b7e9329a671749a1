"""The README's release flow, run literally against what `make run` starts, ends with lampposts
committed on the new release."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tools.emulator.fleet_process import start_fleet_server
from tools.emulator.sim import demo_release_key, release_key_set, start_fleet, trust_on_server
from tools.firmware_tree import REPO_ROOT

pytestmark = pytest.mark.slow


def readme_commands(anchor: str) -> list[str]:
    """The commands of the README's first shell block after `anchor`."""
    text = (REPO_ROOT / "README.md").read_text()
    start = text.index(anchor)
    block = re.search(r"```sh\n(.*?)```", text[start:], re.S)
    assert block, "the README's release flow has no shell block"
    joined = block.group(1).replace("\\\n", " ")
    commands = []
    for line in joined.splitlines():
        command = line.split("  #", 1)[0].strip()
        if command:
            commands.append(command)
    return commands


def test_the_readme_release_flow_commits_on_the_demo_lampposts(tmp_path: Path) -> None:
    commands = readme_commands("With `make run` going in another terminal")
    key_commands = readme_commands("Release keys change through signed statements")
    assert any(c.startswith("lamplighter release rotate") for c in commands)
    assert commands[-1].startswith("lamplighter rollout status")
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / "firmware").symlink_to(REPO_ROOT / "firmware")
    data = checkout / "var"
    # what `make run` (lamplighter demo) sets up: a server, its release key, lampposts in `sim`
    server = start_fleet_server(data, extra_env={"LAMPLIGHTER_CHECKIN_INTERVAL_S": "30"})
    fleet = None
    try:
        _, public = demo_release_key(data)
        trust_on_server(server.url, server.operator_token, public, "demo release key",
                        verify=server.ssl_context)
        fleet = start_fleet(server.url, server.operator_token, 2, data / "sim", prefix="DEMO",
                            speed=10.0, start_epoch=int(time.time()) - 6 * 3600,
                            keys=release_key_set([public]), verify=server.ssl_context,
                            ca_der=server.ca_der)
        # as under `make run`: the CLI finds the server's CA in the data directory by itself
        env = {k: v for k, v in os.environ.items()
               if k not in ("LAMPLIGHTER_CA", "LAMPLIGHTER_TLS_DIR")}
        env.update(LAMPLIGHTER_SERVER=server.url, LAMPLIGHTER_DATA_DIR=str(data),
                   PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")

        def run(commands: list[str]) -> None:
            for command in commands:
                if command.startswith("source "):
                    continue  # the test runs the virtualenv's lamplighter already
                if command.startswith("export LAMPLIGHTER_TOKEN="):
                    env["LAMPLIGHTER_TOKEN"] = server.operator_token
                    continue
                proc = subprocess.run(shlex.split(command), cwd=checkout, env=env,
                                      capture_output=True, text=True, timeout=300, check=False)
                assert proc.returncode == 0, f"{command}\n{proc.stdout}\n{proc.stderr}"

        run(commands)

        headers = {"Authorization": f"Bearer {server.operator_token}"}
        deadline = time.monotonic() + 300
        states: dict = {}
        while time.monotonic() < deadline:
            rows = httpx.get(f"{server.url}/api/v1/rollouts/1/nodes", headers=headers,
                             verify=server.ssl_context).json()
            states = {r["device_id"]: r["state"] for r in rows}
            if len(states) == 2 and set(states.values()) == {"committed"}:
                break
            time.sleep(1)
        assert len(states) == 2 and set(states.values()) == {"committed"}, states
        devices = httpx.get(f"{server.url}/api/v1/devices", headers=headers,
                            verify=server.ssl_context).json()
        assert {d["fw_version"] for d in devices} == {"1.2.0"}
        assert {d["keyset"] for d in devices} == {1}  # the rotation reached both lampposts

        # the README's next block: another rotation, then a revocation of the first key
        run(key_commands)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            devices = httpx.get(f"{server.url}/api/v1/devices", headers=headers,
                                verify=server.ssl_context).json()
            if {d["keyset"] for d in devices} == {3}:
                break
            time.sleep(1)
        assert {d["keyset"] for d in devices} == {3}, devices
        assert all(d["keyset_error"] is None for d in devices)
    finally:
        if fleet is not None:
            fleet.stop()
        server.stop()
