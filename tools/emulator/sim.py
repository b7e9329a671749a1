"""A fleet of emulated lampposts (real MicroPython processes) reporting to a fleet server."""

from __future__ import annotations

import json
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

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


Verify = ssl.SSLContext | str | bool


def _same_server(a: str, b: str) -> bool:
    """True when two URLs name the same host and port, http or https (a server moved to TLS)."""
    return urlsplit(a).netloc == urlsplit(b).netloc and urlsplit(a).path == urlsplit(b).path


def _write_identity(identity_path: Path, identity: dict) -> None:
    tmp = identity_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(identity))
    tmp.replace(identity_path)


def ensure_identity(server_url: str, token: str, flash_dir: Path, pole_id: str,
                    district: str, group: str, board: str = "emulated",
                    node_url: str | None = None, verify: Verify = True,
                    insecure_http: bool = False) -> dict:
    """The node's identity on its flash: reused when present, else registered on the server.

    `node_url` is the address the node itself uses (a proxy in front of the server, say).
    `verify` is what the server's certificate must chain to (httpx's verify: an SSL context,
    a CA file, or True for the system's CAs). An identity for the same host and port under
    the other scheme (a server that moved from http to https) is kept, with the new URL.
    The node refuses a plain http:// server unless `insecure_http` (a test server; the
    caller says so) marks its identity "insecure_http": true.
    """
    node_url = node_url or server_url
    identity_path = flash_dir / "identity.json"
    link = {"insecure_http": True} if insecure_http and node_url.startswith("http://") else {}
    if identity_path.exists():
        identity = json.loads(identity_path.read_text())
        same = identity.get("server") == node_url
        if same or _same_server(identity.get("server") or "", node_url):
            if not same or identity.get("insecure_http", False) != bool(link):
                identity.pop("insecure_http", None)
                identity.update(link, server=node_url)
                _write_identity(identity_path, identity)
            return identity
    resp = httpx.post(f"{server_url}/api/v1/devices",
                      json={"pole_id": pole_id, "district": district, "group": group,
                            "board": board, "lat": 51.50 + len(pole_id) * 0.001, "lon": -0.12},
                      headers={"Authorization": f"Bearer {token}"}, timeout=30, verify=verify)
    if resp.status_code == 409:
        raise RuntimeError(f"pole {pole_id} is registered on {server_url} but its identity is "
                           f"not in {flash_dir}; remove that node or use another --prefix")
    resp.raise_for_status()
    creds = resp.json()
    identity = {"device_id": creds["device_id"], "secret": creds["secret"], "server": node_url,
                **link}
    flash_dir.mkdir(parents=True, exist_ok=True)
    _write_identity(identity_path, identity)
    return identity


def release_key_set(public_keys: list[Path]) -> dict:
    """The key set a node pins (its keys.json) trusting these release public key files."""
    from ota.keys import KeyRing, load_public_key

    ring = KeyRing()
    for path in public_keys:
        ring.add(load_public_key(path))
    return ring.to_json()


def demo_release_key(data_dir: Path) -> tuple[Path, Path]:
    """(private, public) key files of the demo's release key, made on first use."""
    from ota.keys import generate_private_key, save_private_key, save_public_key

    private = data_dir / "keys" / "demo-release.pem"
    public = private.with_name(private.name + ".pub")
    if not private.exists():
        key = generate_private_key()
        save_private_key(key, private)
        save_public_key(key, public)
    return private, public


def trust_on_server(server_url: str, token: str, public_key: Path, name: str,
                    verify: Verify = True) -> str:
    """Have the fleet server accept releases signed by this key; returns the key id.

    A key the server has revoked stays revoked (its reply says so).
    """
    from ota.keys import key_id, load_public_key

    raw = load_public_key(public_key)
    resp = httpx.post(f"{server_url}/api/v1/keys", json={"public_key": raw.hex(), "name": name},
                      headers={"Authorization": f"Bearer {token}"}, timeout=30,
                      verify=verify)
    if resp.status_code not in (200, 201):
        raise RuntimeError(f"the server refused release key {key_id(raw)}: "
                           f"{resp.json().get('detail', resp.text)}")
    return key_id(raw)


def start_fleet(server_url: str, token: str, count: int, root: Path, *, prefix: str = "SIM",
                speed: float = 1.0, checkin_interval_s: int = 30, group: str = "sim",
                seed: int = 1, start_epoch: int | None = None,
                keys: dict | None = None, verify: Verify = True,
                ca_der: bytes | None = None, insecure_http: bool = False) -> Fleet:
    """Register (or reuse) `count` nodes and boot each on its own emulated board.

    The virtual clock starts at `start_epoch` (default: now) and runs `speed` times real time;
    a node whose clock runs ahead of the server's corrects its signatures from the server's time.
    `keys` is the release key set pinned on a node whose flash has none yet (see
    release_key_set); without it a node refuses every release. `verify` is what the server's
    certificate must chain to for the registrations; `ca_der` the CA each node pins (DER) to
    reach an https server. `insecure_http` lets the nodes talk to an http:// server (a local
    test server only: their identities say so, see ensure_identity).
    """
    fleet = Fleet()
    epoch = int(time.time()) if start_epoch is None else start_epoch
    try:
        for i in range(count):
            pole = f"{prefix}-{i + 1:04d}"
            flash = root / pole
            identity = ensure_identity(server_url, token, flash, pole,
                                       DISTRICTS[i % len(DISTRICTS)], group, verify=verify,
                                       insecure_http=insecure_http)
            scenario = Scenario(start_epoch=epoch, seed=seed + i)
            launcher = Launcher(flash, scenario, speed=speed,
                                config={"checkin_interval_s": checkin_interval_s}, keys=keys,
                                ca_der=ca_der)
            launcher.start()
            fleet.nodes.append(SimNode(pole, identity["device_id"], flash, launcher))
    except BaseException:
        fleet.stop()
        raise
    return fleet
