"""`lamplighter release`: an operator makes a key, builds, signs and verifies a bundle offline."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from ota.keys import (
    KeyRing,
    apply_revocation,
    apply_rotation,
    key_id,
    load_private_key,
    load_public_key,
)
from tools.cli.release import release_app

runner = CliRunner()


def invoke(*args: str, env: dict[str, str] | None = None):
    return runner.invoke(release_app, [str(a) for a in args], env=env)


def app_dir(root: Path) -> Path:
    app = root / "app"
    (app / "lib").mkdir(parents=True)
    (app / "main.py").write_text("print('lamp')\n")
    (app / "lib" / "lamp.py").write_text("LEVEL = 1\n")
    return app


def keygen(tmp_path: Path, name: str = "release.pem"):
    result = invoke("keygen", tmp_path / name)
    assert result.exit_code == 0, result.output
    private = tmp_path / name
    assert f"key id {key_id(load_private_key(private))}" in result.output
    return private, tmp_path / f"{name}.pub"


def test_keygen_build_sign_verify(tmp_path):
    private, public = keygen(tmp_path)
    kid = key_id(load_private_key(private))
    built = invoke("build", app_dir(tmp_path), "--out", tmp_path / "stage", "--version", "1.4.0",
                   "--sequence", "12", "--board", "emulated", "--board", "esp32_devkitc")
    assert built.exit_code == 0, built.output
    assert "2 files" in built.output
    signed = invoke("sign", tmp_path / "stage", "--key", private, "--out", tmp_path / "r.llb")
    assert signed.exit_code == 0, signed.output
    assert kid in signed.output
    envelope = json.loads((tmp_path / "r.llb.manifest.json").read_text())
    assert envelope["key_id"] == kid
    verified = invoke("verify", tmp_path / "r.llb", "--trusted", public)
    assert verified.exit_code == 0, verified.output
    assert "OK: app 1.4.0 (sequence 12)" in verified.output



def test_verify_for_a_board_answers_whether_that_node_would_install(tmp_path):
    private, public = keygen(tmp_path)
    invoke("build", app_dir(tmp_path), "--out", tmp_path / "stage", "--version", "1.4.0",
           "--sequence", "12", "--board", "emulated")
    invoke("sign", tmp_path / "stage", "--key", private, "--out", tmp_path / "r.llb")
    yes = invoke("verify", tmp_path / "r.llb", "--trusted", public, "--board", "emulated",
                 "--installed-sequence", "11")
    assert yes.exit_code == 0, yes.output
    assert "a node on board emulated at sequence 11 would install it" in yes.output
    other_board = invoke("verify", tmp_path / "r.llb", "--trusted", public,
                         "--board", "esp32_devkitc")
    assert other_board.exit_code == 1 and "REFUSED (wrong_board)" in other_board.output
    same_sequence = invoke("verify", tmp_path / "r.llb", "--trusted", public,
                           "--board", "emulated", "--installed-sequence", "12")
    assert same_sequence.exit_code == 1 and "REFUSED (rollback)" in same_sequence.output
    no_board = invoke("verify", tmp_path / "r.llb", "--trusted", public,
                      "--installed-sequence", "3")
    assert no_board.exit_code == 1 and "give its --board too" in no_board.output

def test_keygen_refuses_to_overwrite(tmp_path):
    private, _ = keygen(tmp_path)
    before = private.read_bytes()
    result = invoke("keygen", private)
    assert result.exit_code == 1
    assert "refusing to overwrite" in result.output
    assert private.read_bytes() == before


def test_verify_with_another_key_or_tampered_bundle_is_refused(tmp_path):
    private, _ = keygen(tmp_path)
    _, other_public = keygen(tmp_path, "other.pem")
    invoke("build", app_dir(tmp_path), "--out", tmp_path / "stage", "--version", "1.0.0",
           "--sequence", "1", "--board", "emulated")
    invoke("sign", tmp_path / "stage", "--key", private, "--out", tmp_path / "r.llb")
    result = invoke("verify", tmp_path / "r.llb", "--trusted", other_public)
    assert result.exit_code == 1
    assert "REFUSED (unknown_key)" in result.output
    data = bytearray((tmp_path / "r.llb").read_bytes())
    data[-1] ^= 1
    (tmp_path / "r.llb").write_bytes(bytes(data))
    result = invoke("verify", tmp_path / "r.llb", "--trusted", tmp_path / "release.pem.pub")
    assert result.exit_code == 1
    assert "REFUSED (bad_file_hash)" in result.output


def test_encrypted_key_signs_with_password_from_environment(tmp_path):
    env = {"LL_KEY_PASSWORD": "correct horse"}
    result = invoke("keygen", tmp_path / "k.pem", "--encrypt", "--password-env",
                    "LL_KEY_PASSWORD", env=env)
    assert result.exit_code == 0, result.output
    invoke("build", app_dir(tmp_path), "--out", tmp_path / "stage", "--version", "1.0.0",
           "--sequence", "1", "--board", "emulated")
    wrong = invoke("sign", tmp_path / "stage", "--key", tmp_path / "k.pem", "--out",
                   tmp_path / "r.llb", "--password-env", "LL_KEY_PASSWORD",
                   env={"LL_KEY_PASSWORD": "wrong"})
    assert wrong.exit_code == 1 and "password is wrong" in wrong.output
    right = invoke("sign", tmp_path / "stage", "--key", tmp_path / "k.pem", "--out",
                   tmp_path / "r.llb", "--password-env", "LL_KEY_PASSWORD", env=env)
    assert right.exit_code == 0, right.output


def test_build_with_a_bad_version_explains_itself(tmp_path):
    result = invoke("build", app_dir(tmp_path), "--out", tmp_path / "stage", "--version", "v1",
                    "--sequence", "1", "--board", "emulated")
    assert result.exit_code == 1
    assert "semantic version" in result.output


def test_rotate_and_revoke_write_statements_the_key_ring_accepts(tmp_path):
    old_private, old_public = keygen(tmp_path, "old.pem")
    _, new_public = keygen(tmp_path, "new.pem")
    result = invoke("rotate", "--old-key", old_private, "--new-public", new_public,
                    "--out", tmp_path / "rot.json", "--serial", "1")
    assert result.exit_code == 0, result.output
    assert "(serial 1)" in result.output
    ring = KeyRing()
    ring.add(load_public_key(old_public))
    new_id = apply_rotation(ring, (tmp_path / "rot.json").read_bytes())
    assert new_id == key_id(load_public_key(new_public)) and ring.serial == 1
    bad = invoke("revoke", "nothex", "--key", old_private, "--serial", "2",
                 "--out", tmp_path / "rev.json")
    assert bad.exit_code == 1 and "not key ids" in bad.output
    _, third_public = keygen(tmp_path, "third.pem")
    third_id = key_id(load_public_key(third_public))
    ring.add(load_public_key(third_public))
    result = invoke("revoke", third_id, "--key", tmp_path / "new.pem", "--serial", "2",
                    "--out", tmp_path / "rev.json")
    assert result.exit_code == 0, result.output
    assert apply_revocation(ring, (tmp_path / "rev.json").read_bytes()) == [third_id]
    assert ring.serial == 2


def test_rotate_and_revoke_require_a_serial_and_say_how_to_find_it(tmp_path):
    old_private, _ = keygen(tmp_path, "old.pem")
    _, new_public = keygen(tmp_path, "new.pem")
    missing = invoke("rotate", "--old-key", old_private, "--new-public", new_public,
                     "--out", tmp_path / "rot.json")
    assert missing.exit_code == 2 and "--serial" in missing.output
    helped = " ".join(invoke("rotate", "--help").output.replace("│", " ").split())
    assert "`lamplighter release statements` prints the next one" in helped
    zero = invoke("revoke", "0" * 16, "--key", old_private, "--serial", "0",
                  "--out", tmp_path / "rev.json")
    assert zero.exit_code == 1 and "--serial is 1 or more" in zero.output
    assert not (tmp_path / "rev.json").exists()
    many = invoke("revoke", *[f"{i:016x}" for i in range(17)], "--key", old_private,
                  "--serial", "1", "--out", tmp_path / "rev.json")
    assert many.exit_code == 1 and "at most 16" in many.output


def test_keygen_writes_the_public_key_in_the_requested_format(tmp_path):
    result = invoke("keygen", tmp_path / "k.pem", "--public-format", "hex")
    assert result.exit_code == 0, result.output
    text = (tmp_path / "k.pem.pub").read_text().strip()
    assert text == load_private_key(tmp_path / "k.pem").public_key().public_bytes_raw().hex()
    bad = invoke("keygen", tmp_path / "j.pem", "--public-format", "der")
    assert bad.exit_code == 1 and "pem, raw, hex" in bad.output
    assert not (tmp_path / "j.pem").exists()


def test_rotate_with_upload_publishes_the_statement(tmp_path, live_server):
    import httpx

    env = {"LAMPLIGHTER_SERVER": live_server.url, "LAMPLIGHTER_TOKEN": live_server.operator_token,
           "LAMPLIGHTER_CA": live_server.verify}
    old_private, old_public = keygen(tmp_path, "old.pem")
    _, new_public = keygen(tmp_path, "new.pem")
    httpx.post(f"{live_server.url}/api/v1/keys",
               json={"public_key": (old_public).read_text()},
               headers=live_server.operator_headers,
               verify=live_server.ssl_context).raise_for_status()
    wrong = invoke("rotate", "--old-key", old_private, "--new-public", new_public,
                   "--out", tmp_path / "rot.json", "--serial", "2", "--upload", env=env)
    assert wrong.exit_code == 1
    assert "the server's key set is at serial 0: sign this statement with --serial 1" \
        in wrong.output
    assert not (tmp_path / "rot.json").exists()
    done = invoke("rotate", "--old-key", old_private, "--new-public", new_public,
                  "--out", tmp_path / "rot.json", "--serial", "1", "--upload", env=env)
    assert done.exit_code == 0, done.output
    assert "server: statement 1 stored (rotation" in done.output
    chain = httpx.get(f"{live_server.url}/api/v1/keys/statements",
                      headers=live_server.operator_headers, verify=live_server.ssl_context).json()
    assert [s["envelope"] for s in chain] == [(tmp_path / "rot.json").read_text()]
    new_id = key_id(load_public_key(new_public))
    revoked = invoke("revoke", "0" * 16, "--key", tmp_path / "new.pem", "--serial", "2",
                     "--out", tmp_path / "rev.json", "--upload", env=env)
    assert revoked.exit_code == 0, revoked.output
    assert "server: statement 2 stored (revokes 0000000000000000)" in revoked.output
    assert chain[0]["summary"].endswith(f"-> {new_id} (old key retired)")


def test_upload_to_an_unreachable_server_writes_nothing(tmp_path):
    old_private, _ = keygen(tmp_path, "old.pem")
    env = {"LAMPLIGHTER_SERVER": "http://127.0.0.1:9", "LAMPLIGHTER_TOKEN": "t"}
    result = invoke("revoke", "0" * 16, "--key", old_private, "--serial", "1",
                    "--out", tmp_path / "rev.json", "--upload", env=env)
    assert result.exit_code == 3 and "cannot reach the fleet server" in result.output
    assert not (tmp_path / "rev.json").exists()
    no_token = invoke("revoke", "0" * 16, "--key", old_private, "--serial", "1",
                      "--out", tmp_path / "rev.json", "--upload",
                      env={"LAMPLIGHTER_TOKEN": ""})
    assert no_token.exit_code == 2 and "create-token" in no_token.output
