"""`release upload/trust/distrust` against a live server: what is stored and refused, in words."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
import typer
from typer.testing import CliRunner

from ota.bundle import stage_release, write_bundle
from ota.keys import generate_private_key, raw_public_key
from ota.manifest import sign_manifest
from tools.cli_release_server import distrust, trust, upload

cli = typer.Typer()
cli.command("upload")(upload)
cli.command("trust")(trust)
cli.command("distrust")(distrust)


def build(tmp_path: Path, key, sequence: int, name: str) -> Path:
    app = tmp_path / f"app-{name}"
    app.mkdir()
    (app / "mod.py").write_text(f"X = {sequence}\n" + "# padding\n" * 20_000)
    manifest = stage_release(app, tmp_path / f"stage-{name}", version=f"2.0.{sequence}",
                             sequence=sequence, board=["emulated"],
                             expires=int(time.time()) + 3600, compile_py=False)
    out = tmp_path / f"{name}.llb"
    write_bundle(tmp_path / f"stage-{name}", sign_manifest(manifest, key), out)
    return out


@pytest.fixture
def runner(live_server) -> CliRunner:
    return CliRunner(env={"LAMPLIGHTER_SERVER": live_server.url,
                          "LAMPLIGHTER_TOKEN": live_server.operator_token})


def test_upload_stores_the_release_and_prints_it(live_server, runner, tmp_path) -> None:
    key = generate_private_key()
    httpx.post(f"{live_server.url}/api/v1/keys", json={"public_key": raw_public_key(key).hex()},
               headers=live_server.operator_headers).raise_for_status()
    bundle = build(tmp_path, key, 21, "good")
    assert bundle.stat().st_size > 200_000  # more than one 64 KB chunk on the wire

    result = runner.invoke(cli, ["upload", str(bundle), "--notes", "night dimming fix"])
    assert result.exit_code == 0, result.output
    releases = httpx.get(f"{live_server.url}/api/v1/releases",
                         headers=live_server.operator_headers).json()
    assert [(r["version"], r["sequence"], r["notes"], r["bundle_size"]) for r in releases] == [
        ("2.0.21", 21, "night dimming fix", bundle.stat().st_size)]
    assert f"release {releases[0]['id']}: version 2.0.21 sequence 21" in result.output

    again = runner.invoke(cli, ["upload", str(bundle)])
    assert again.exit_code == 1
    assert "refused (409)" in again.output


def test_upload_signed_by_an_untrusted_key_is_refused(live_server, runner, tmp_path) -> None:
    bundle = build(tmp_path, generate_private_key(), 22, "stranger")
    result = runner.invoke(cli, ["upload", str(bundle)])
    assert result.exit_code == 1
    assert "refused (422)" in result.output
    assert httpx.get(f"{live_server.url}/api/v1/releases",
                     headers=live_server.operator_headers).json() == []


def test_upload_without_a_token_says_how_to_get_one(live_server, tmp_path) -> None:
    bundle = build(tmp_path, generate_private_key(), 23, "notoken")
    result = CliRunner(env={"LAMPLIGHTER_SERVER": live_server.url, "LAMPLIGHTER_TOKEN": ""}
                       ).invoke(cli, ["upload", str(bundle)])
    assert result.exit_code == 2
    assert "create-token" in result.output


def test_trust_then_upload_then_distrust_from_the_cli(runner, tmp_path):
    from ota.keys import save_public_key

    key = generate_private_key()
    save_public_key(key, tmp_path / "release.pub")
    trusted = runner.invoke(cli, ["trust", str(tmp_path / "release.pub"), "--name", "2026"])
    assert trusted.exit_code == 0, trusted.output
    kid = trusted.output.split()[3]
    assert runner.invoke(cli, ["upload", str(build(tmp_path, key, 5, "ok"))]).exit_code == 0
    revoked = runner.invoke(cli, ["distrust", kid])
    assert revoked.exit_code == 0 and f"revoked release key {kid}" in revoked.output
    refused = runner.invoke(cli, ["upload", str(build(tmp_path, key, 6, "late"))])
    assert refused.exit_code == 1 and "revoked" in refused.output
    junk = tmp_path / "junk.pub"
    junk.write_text("not a key at all, but long enough to pass the length check " * 2)
    bad = runner.invoke(cli, ["trust", str(junk)])
    assert bad.exit_code == 1 and "refused (422)" in bad.output
