"""`release upload/trust/distrust/publish/statements/keys` against a live server, in words."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from ota.bundle import stage_release, write_bundle
from ota.keys import generate_private_key, key_id, make_revocation, make_rotation, raw_public_key
from ota.manifest import sign_manifest
from tools.cli.release import release_app as cli


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
                          "LAMPLIGHTER_TOKEN": live_server.operator_token,
                          "LAMPLIGHTER_CA": live_server.verify})


def test_upload_stores_the_release_and_prints_it(live_server, runner, tmp_path) -> None:
    key = generate_private_key()
    httpx.post(f"{live_server.url}/api/v1/keys", json={"public_key": raw_public_key(key).hex()},
               headers=live_server.operator_headers,
               verify=live_server.ssl_context).raise_for_status()
    bundle = build(tmp_path, key, 21, "good")
    assert bundle.stat().st_size > 200_000  # more than one 64 KB chunk on the wire

    result = runner.invoke(cli, ["upload", str(bundle), "--notes", "night dimming fix"])
    assert result.exit_code == 0, result.output
    releases = httpx.get(f"{live_server.url}/api/v1/releases",
                         headers=live_server.operator_headers,
                         verify=live_server.ssl_context).json()
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
                     headers=live_server.operator_headers,
                     verify=live_server.ssl_context).json() == []


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


def _trust(server, key) -> str:
    httpx.post(f"{server.url}/api/v1/keys", json={"public_key": raw_public_key(key).hex()},
               headers=server.operator_headers, verify=server.ssl_context).raise_for_status()
    return key_id(key)


def _checkin(server, creds: dict, report: dict) -> dict:
    import json

    from tests.rigs.device_signing import signed_headers

    body = json.dumps(report).encode()
    headers = signed_headers(creds["device_id"], creds["secret"], "POST", "/device/v1/checkin",
                             body)
    resp = httpx.post(f"{server.url}/device/v1/checkin", content=body, headers=headers,
                      verify=server.ssl_context)
    resp.raise_for_status()
    return resp.json()


def test_publish_then_statements_lists_the_chain_and_the_next_serial(live_server, runner,
                                                                    tmp_path):
    old, new = generate_private_key(), generate_private_key()
    _trust(live_server, old)
    empty = runner.invoke(cli, ["statements"])
    assert empty.exit_code == 0, empty.output
    assert "no key statements yet" in empty.output and "next statement: --serial 1" \
        in empty.output
    (tmp_path / "rot.json").write_bytes(make_rotation(old, raw_public_key(new), serial=1))
    sent = runner.invoke(cli, ["publish", str(tmp_path / "rot.json")])
    assert sent.exit_code == 0, sent.output
    assert f"server: statement 1 stored (rotation {key_id(old)} -> {key_id(new)}" in sent.output
    again = runner.invoke(cli, ["publish", str(tmp_path / "rot.json")])
    assert again.exit_code == 1 and "refused (409)" in again.output
    assert "stored already (serial 1)" in again.output
    assert "sign a new statement with --serial 2" in again.output
    listed = runner.invoke(cli, ["statements"])
    assert listed.exit_code == 0, listed.output
    assert f"1  rotation {key_id(old)} -> {key_id(new)} (old key retired)  signed by " \
           f"{key_id(old)}" in listed.output
    assert "next statement: --serial 2" in listed.output


def test_forged_statement_is_refused_from_the_cli(live_server, runner, tmp_path):
    _trust(live_server, generate_private_key())
    stranger = generate_private_key()
    (tmp_path / "rev.json").write_bytes(make_revocation(stranger, ["0" * 16], serial=1))
    result = runner.invoke(cli, ["publish", str(tmp_path / "rev.json")])
    assert result.exit_code == 1
    assert "refused (422)" in result.output and "(unknown_key)" in result.output


def test_keys_shows_the_nodes_still_trusting_a_revoked_key(live_server, runner):
    signer, other = generate_private_key(), generate_private_key()
    kid, other_id = _trust(live_server, signer), _trust(live_server, other)
    nodes = [live_server.register(f"KEYS-{i}") for i in range(3)]
    distrusted = runner.invoke(cli, ["distrust", kid])
    assert distrusted.exit_code == 0, distrusted.output
    assert "revoked on the server only" in distrusted.output
    shown = runner.invoke(cli, ["keys"])
    assert shown.exit_code == 0, shown.output
    assert f"{kid}  REVOKED on the server only" in shown.output
    assert "nodes still trusting: 3" in shown.output
    assert f"{other_id}  trusted  (trusted by an operator)" in shown.output
    envelope = make_revocation(other, [kid], serial=1)
    httpx.post(f"{live_server.url}/api/v1/keys/statements", content=envelope,
               headers=dict(live_server.operator_headers,
                            **{"Content-Type": "application/json"}),
               verify=live_server.ssl_context).raise_for_status()
    reply = _checkin(live_server, nodes[0], {"fw_version": "1.0.0", "keyset": 0})
    assert reply["key_statements"] == [envelope.decode()]
    _checkin(live_server, nodes[0], {"fw_version": "1.0.0", "keyset": 1})
    _checkin(live_server, nodes[1], {"fw_version": "1.0.0", "keyset": 0,
                                     "keyset_error": "bad_signature: statement 1"})
    shown = runner.invoke(cli, ["keys"])
    assert f"{kid}  REVOKED by statement 1" in shown.output
    assert "nodes still trusting: 2" in shown.output
    listed = runner.invoke(cli, ["keys", "--nodes", kid])
    assert listed.exit_code == 0, listed.output
    assert f"{nodes[1]['device_id']}  {nodes[1]['pole_id']}  key set 0" in listed.output
    assert "refused: bad_signature: statement 1" in listed.output
    assert f"{nodes[2]['device_id']}  {nodes[2]['pole_id']}  never reported" in listed.output
    assert nodes[0]["device_id"] not in listed.output
    assert f"2 nodes still trust {kid}" in listed.output
    unrevoked = runner.invoke(cli, ["keys", "--nodes", other_id])
    assert unrevoked.exit_code == 1 and "is not revoked" in unrevoked.output


def test_publish_to_an_unreachable_server_says_the_file_is_kept(tmp_path):
    (tmp_path / "rev.json").write_bytes(make_revocation(generate_private_key(), ["0" * 16],
                                                        serial=1))
    result = CliRunner(env={"LAMPLIGHTER_SERVER": "http://127.0.0.1:9",
                            "LAMPLIGHTER_TOKEN": "t"}).invoke(
        cli, ["publish", str(tmp_path / "rev.json")])
    assert result.exit_code == 3
    assert f"lamplighter release publish {tmp_path / 'rev.json'}" in " ".join(
        result.output.split())
