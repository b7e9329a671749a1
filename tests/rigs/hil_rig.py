"""A lab rig for end-to-end runs: a fleet server, provisioned emulated lampposts, releases."""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from ota.bundle import stage_release, write_bundle
from ota.keys import generate_private_key, key_id, raw_public_key
from ota.manifest import sign_manifest
from tools.emulator.fleet_process import FleetServer
from tools.emulator.launcher import Launcher
from tools.emulator.scenario import Scenario
from tools.emulator.sim import ensure_identity
from tools.firmware_tree import FIRMWARE_DIR, STABLE_ROOT_FILES

RIG_WIFI = {"ssid": "harbour-street", "password": "rig passphrase"}  # the world takes any


@dataclass
class RigNode:
    pole_id: str
    device_id: str
    launcher: Launcher


@dataclass
class Rig:
    """Emulated lampposts provisioned against `server`, with a release key the server trusts.

    Virtual time starts `lead_s` seconds in the past and runs `speed`× real time, so readings
    stay in the past of the server's clock for lead_s / (speed - 1) real seconds.
    """

    server: FleetServer
    work: Path
    speed: float = 20.0
    lead_s: int = 6 * 3600
    nodes: list[RigNode] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.key = generate_private_key()
        self.key_ring = {"keys": {key_id(self.key): raw_public_key(self.key).hex()},
                         "revoked": [], "serial": 0}
        self.api("POST", "/api/v1/keys",
                 json={"public_key": raw_public_key(self.key).hex(), "name": "rig"})
        self.epoch = int(time.time()) - self.lead_s

    def api(self, method: str, path: str, **kwargs: object) -> object:
        resp = httpx.request(method, f"{self.server.url}{path}",
                             headers=self.server.operator_headers, timeout=60,
                             verify=self.server.ssl_context, **kwargs)
        resp.raise_for_status()
        return resp.json() if resp.content else None

    def add_nodes(self, count: int, *, group: str = "rig", checkin_interval_s: int = 30,
                  scenario: Callable[[int], Scenario] | None = None,
                  node_url: str | None = None) -> list[RigNode]:
        """Provision and boot `count` lampposts (identity, pinned release key, app in slot a).

        `node_url` points the nodes at something other than the server (a TCP fault proxy in
        front of it): it carries what the server speaks, so the nodes use the server's scheme.
        Against an https server each node pins the server's CA; against a plain-HTTP one (a
        test server) its identity allows http.
        """
        tls = self.server.tls
        if node_url and tls is not None and node_url.startswith("http://"):
            node_url = "https://" + node_url[len("http://"):]
        added = []
        for _ in range(count):
            i = len(self.nodes) + 1
            pole = f"RIG-{i:04d}"
            flash = self.work / pole
            identity = ensure_identity(self.server.url, self.server.operator_token, flash, pole,
                                       "harbour", group, node_url=node_url,
                                       verify=self.server.ssl_context,
                                       insecure_http=tls is None)
            scen = scenario(i) if scenario else Scenario(start_epoch=self.epoch, seed=i)
            # on the street's Wi-Fi (the world's access point), as a real post is
            launcher = Launcher(flash, scen, speed=self.speed, keys=self.key_ring,
                                config={"checkin_interval_s": checkin_interval_s},
                                ca_der=tls.ca_der() if tls is not None else None,
                                wifi=RIG_WIFI)
            launcher.start()
            node = RigNode(pole, identity["device_id"], launcher)
            self.nodes.append(node)
            added.append(node)
        return added

    def release(self, version: str, sequence: int,
                patch: Callable[[Path], None] | None = None, key=None,
                upload: bool = True) -> dict | Path:
        """Build the firmware app as `version` (optionally patched), sign (with the rig's key
        unless `key` is given), upload; the release (or, without `upload`, the bundle file)."""
        tmp = Path(tempfile.mkdtemp(dir=self.work, prefix=f"release-{version}-"))
        app = tmp / "app"
        shutil.copytree(FIRMWARE_DIR, app, ignore=shutil.ignore_patterns("__pycache__"))
        for name in STABLE_ROOT_FILES:
            (app / name).unlink()
        node_py = app / "lib" / "core" / "node.py"
        node_py.write_text(re.sub(r'^FW_VERSION = "[^"]+"', f'FW_VERSION = "{version}"',
                                  node_py.read_text(), flags=re.M))
        if patch:
            patch(app)
        manifest = stage_release(app, tmp / "stage", version=version, sequence=sequence,
                                 board=["emulated"], expires=int(time.time()) + 30 * 86400,
                                 created=self.epoch - 60)
        bundle = tmp / "bundle.llb"
        write_bundle(tmp / "stage", sign_manifest(manifest, key or self.key), bundle)
        if not upload:
            return bundle
        resp = httpx.post(f"{self.server.url}/api/v1/releases", content=bundle.read_bytes(),
                          headers=self.server.operator_headers, timeout=60,
                          verify=self.server.ssl_context)
        resp.raise_for_status()
        return resp.json()

    def devices(self) -> dict[str, dict]:
        rows = self.api("GET", "/api/v1/devices?limit=10000")
        assert isinstance(rows, list)
        return {d["device_id"]: d for d in rows}

    def wait_until(self, what: str, predicate: Callable[[], bool], timeout: float = 120) -> None:
        """Poll `predicate` until true; fail with `what` and the nodes' last log lines if not."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.5)
        tails = {n.pole_id: list(n.launcher.lines)[-8:] for n in self.nodes}
        raise AssertionError(f"timed out waiting for {what}; node logs: "
                             f"{json.dumps(tails, indent=1)[:6000]}")

    def stop(self) -> None:
        for node in self.nodes:
            node.launcher.stop()
