"""A fleet of emulated lampposts (real MicroPython processes) reporting to a fleet server."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tools.emulator.launcher import Launcher
from tools.emulator.scenario import Scenario

DISTRICTS = ("harbour", "old-town", "riverside", "station")


@dataclass
class SimNode:
    """One emulated lamppost: its identity, flash directory and running launcher."""

    pole_id: str
    device_id: str
    flash_dir: Path
    launcher: Launcher


@dataclass
class Fleet:
    """The running emulated lampposts; stop() powers them all off."""

    nodes: list[SimNode] = field(default_factory=list)

    def stop(self) -> None:
        for node in self.nodes:
            node.launcher.stop()


def ensure_identity(server_url: str, token: str, flash_dir: Path, pole_id: str,
                    district: str, group: str, board: str = "emulated",
                    node_url: str | None = None) -> dict:
    """The node's identity on its flash: reused when present, else registered on the server.

    `node_url` is the address the node itself uses (a proxy in front of the server, say).
    """
    node_url = node_url or server_url
    identity_path = flash_dir / "identity.json"
    if identity_path.exists():
        identity = json.loads(identity_path.read_text())
        if identity.get("server") == node_url:
            return identity
    resp = httpx.post(f"{server_url}/api/v1/devices",
                      json={"pole_id": pole_id, "district": district, "group": group,
                            "board": board, "lat": 51.50 + len(pole_id) * 0.001, "lon": -0.12},
                      headers={"Authorization": f"Bearer {token}"}, timeout=30)
    if resp.status_code == 409:
        raise RuntimeError(f"pole {pole_id} is registered on {server_url} but its identity is "
                           f"not in {flash_dir}; remove that node or use another --prefix")
    resp.raise_for_status()
    creds = resp.json()
    identity = {"device_id": creds["device_id"], "secret": creds["secret"], "server": node_url}
    flash_dir.mkdir(parents=True, exist_ok=True)
    tmp = identity_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(identity))
    tmp.replace(identity_path)
    return identity


def start_fleet(server_url: str, token: str, count: int, root: Path, *, prefix: str = "SIM",
                speed: float = 1.0, checkin_interval_s: int = 30, group: str = "sim",
                seed: int = 1, start_epoch: int | None = None) -> Fleet:
    """Register (or reuse) `count` nodes and boot each on its own emulated board.

    The virtual clock starts at `start_epoch` (default: now) and runs `speed` times real time;
    a node whose clock runs ahead of the server's corrects its signatures from the server's time.
    """
    fleet = Fleet()
    epoch = int(time.time()) if start_epoch is None else start_epoch
    try:
        for i in range(count):
            pole = f"{prefix}-{i + 1:04d}"
            flash = root / pole
            identity = ensure_identity(server_url, token, flash, pole,
                                       DISTRICTS[i % len(DISTRICTS)], group)
            scenario = Scenario(start_epoch=epoch, seed=seed + i)
            launcher = Launcher(flash, scenario, speed=speed,
                                config={"checkin_interval_s": checkin_interval_s})
            launcher.start()
            fleet.nodes.append(SimNode(pole, identity["device_id"], flash, launcher))
    except BaseException:
        fleet.stop()
        raise
    return fleet
