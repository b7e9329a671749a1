"""A node updates from a real fleet server: rollout assignment, signed Range download, commit."""

from __future__ import annotations

import json
import subprocess

import httpx
from test_updater_kit import (
    FACTORY_VERSION,
    app_files,
    driver_command,
    events,
    pack_bundle,
    provision_flash,
    slot_matches,
)

from ota.keys import generate_private_key, raw_public_key

NEW = "1.2.0"


def test_node_resumes_download_installs_and_commits_a_rollout(live_server, tmp_path) -> None:
    key = generate_private_key()
    ops = live_server.operator_headers
    api = f"{live_server.url}/api/v1"
    tls = live_server.ssl_context
    httpx.post(f"{api}/keys", json={"public_key": raw_public_key(key).hex()},
               headers=ops, verify=tls).raise_for_status()
    files = app_files(NEW, pad=5000)
    bundle = pack_bundle(files, version=NEW, sequence=12, key=key)
    release = httpx.post(f"{api}/releases", content=bundle, headers=ops, verify=tls)
    release.raise_for_status()
    release_id = release.json()["id"]
    creds = live_server.register("LIVE-1")
    rollout = httpx.post(f"{api}/rollouts", json={"release_id": release_id, "waves": [100]},
                         headers=ops, verify=tls)
    rollout.raise_for_status()
    rollout_id = rollout.json()["id"]

    flash = tmp_path / "flash"
    provision_flash(flash, [key], identity={"device_id": creds["device_id"],
                                            "secret": creds["secret"],
                                            "server": live_server.url})
    if live_server.tls is not None:  # the node reaches the server over https, the CA pinned
        (flash / "fleet_ca.der").write_bytes(live_server.tls.ca_der())
    else:
        identity = json.loads((flash / "identity.json").read_text())
        (flash / "identity.json").write_text(json.dumps(dict(identity, insecure_http=True)))
    # The power went 1000 bytes into the download: the node must resume with a Range request.
    (flash / "update").mkdir()
    (flash / "update" / "bundle.part").write_bytes(bundle[:1000])
    (flash / "update" / "state.json").write_text(json.dumps({
        "rollout_id": rollout_id, "release_id": release_id, "version": NEW, "sequence": 12,
        "size": len(bundle), "sha256": "", "url": f"/device/v1/releases/{release_id}/bundle",
        "phase": "downloading", "detail": "", "checked": False, "errors": 0}))

    cmd, env = driver_command(flash)
    (flash / "driver.json").write_text(json.dumps({"rounds": 6}))
    outputs = []
    for _ in range(2):  # install and reboot, then the trial boot that commits
        proc = subprocess.run(cmd, cwd=flash, env=env, capture_output=True, text=True,
                              timeout=60, check=False)
        assert proc.returncode in (0, 3), proc.stdout + proc.stderr
        outputs.append(list(events(proc.stdout)))

    assert outputs[0][0]["version"] == FACTORY_VERSION
    assert outputs[1][0] == {"event": "boot", "slot": "./slots/b", "version": NEW}
    assert slot_matches(flash, "b", files)
    nodes = httpx.get(f"{api}/rollouts/{rollout_id}/nodes", headers=ops, verify=tls).json()
    assert [(n["device_id"], n["state"]) for n in nodes] == [(creds["device_id"], "committed")]
    history = [e["state"] for e in
               httpx.get(f"{api}/rollouts/{rollout_id}/events", headers=ops, verify=tls).json()
               if e.get("device_id") == creds["device_id"]]
    assert history[0] == "offered" and history[-1] == "committed"
    assert "installed" in history
    assert httpx.get(f"{api}/rollouts/{rollout_id}", headers=ops,
                     verify=tls).json()["state"] == "completed"
