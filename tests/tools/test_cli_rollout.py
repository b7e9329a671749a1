"""`lamplighter rollout …` against a live server: create, watch, pause, and the refusals."""

from __future__ import annotations

import time

import httpx
from typer.testing import CliRunner

from ota.bundle import stage_release, write_bundle
from ota.keys import generate_private_key, raw_public_key
from ota.manifest import sign_manifest
from tools.cli.main import app as cli


def _release(server, tmp_path) -> int:
    key = generate_private_key()
    httpx.post(f"{server.url}/api/v1/keys", json={"public_key": raw_public_key(key).hex()},
               headers=server.operator_headers, verify=server.ssl_context).raise_for_status()
    app = tmp_path / "app"
    app.mkdir()
    (app / "mod.py").write_text("X = 1\n")
    manifest = stage_release(app, tmp_path / "stage", version="2.0.0", sequence=20,
                             board=["emulated"], expires=int(time.time()) + 3600,
                             compile_py=False)
    write_bundle(tmp_path / "stage", sign_manifest(manifest, key), tmp_path / "b.llb")
    resp = httpx.post(f"{server.url}/api/v1/releases", content=(tmp_path / "b.llb").read_bytes(),
                      headers=server.operator_headers, verify=server.ssl_context)
    resp.raise_for_status()
    return resp.json()["id"]


def test_rollout_create_status_pause_from_the_cli(live_server, tmp_path):
    for i in range(4):
        live_server.register(f"CLI-{i}", group="harbour")
    release_id = _release(live_server, tmp_path)
    env = {"LAMPLIGHTER_SERVER": live_server.url, "LAMPLIGHTER_TOKEN": live_server.operator_token,
           "LAMPLIGHTER_CA": live_server.verify}
    runner = CliRunner(env=env)
    made = runner.invoke(cli, ["rollout", "create", str(release_id), "--waves", "25,100",
                               "--group", "harbour", "--window", "9-16", "--tz", "Europe/Oslo"])
    assert made.exit_code == 0, made.output
    assert "rollout 1 of 2.0.0" in made.output and "active" in made.output
    shown = runner.invoke(cli, ["rollout", "status", "1", "--nodes"])
    assert shown.exit_code == 0 and "25 %" in shown.output
    paused = runner.invoke(cli, ["rollout", "pause", "1"])
    assert paused.exit_code == 0 and "paused" in paused.output
    again = runner.invoke(cli, ["rollout", "pause", "1"])
    assert again.exit_code == 1 and "cannot pause" in again.output
    listed = runner.invoke(cli, ["rollout", "releases"])
    assert "2.0.0" in listed.output


def test_rollout_cli_explains_bad_input(live_server):
    env = {"LAMPLIGHTER_SERVER": live_server.url, "LAMPLIGHTER_TOKEN": live_server.operator_token,
           "LAMPLIGHTER_CA": live_server.verify}
    runner = CliRunner(env=env)
    bad = runner.invoke(cli, ["rollout", "create", "1", "--waves", "ten"])
    assert bad.exit_code == 2 and "comma-separated percentages" in bad.output
    missing = runner.invoke(cli, ["rollout", "create", "99"])
    assert missing.exit_code == 1 and "no release 99" in missing.output
    wrong = CliRunner(env=dict(env, LAMPLIGHTER_TOKEN="nope")).invoke(cli, ["rollout", "status"])
    assert wrong.exit_code == 1 and "check the token" in wrong.output


def test_a_refusal_tells_the_operator_what_to_do():
    """A node's refusal detail starts with its reason code; the CLI turns it into an action."""
    from tools.cli.rollout import refusal_hint

    hint = refusal_hint("unknown_key: 0123456789abcdef")
    assert "does not trust key 0123456789abcdef" in hint
    assert "--release-keys" in hint and "rotation" in hint
    assert "--sequence" in refusal_hint("rollback: sequence 3 is not newer than 5")
    assert refusal_hint("no reason code here") == ""
