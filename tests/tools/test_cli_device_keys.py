"""`lamplighter device rotate-key` and `retire-key` against a live server over TLS."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from tools.cli.main import app


def _env(server) -> dict[str, str]:
    return {"LAMPLIGHTER_SERVER": server.url, "LAMPLIGHTER_TOKEN": server.operator_token,
            "LAMPLIGHTER_CA": str(server.tls.ca_cert)}


def test_rotate_key_starts_one_rotation_and_refuses_a_second(live_server):
    creds = live_server.register("CLI-K1")
    runner = CliRunner(env=_env(live_server))
    first = runner.invoke(app, ["device", "rotate-key", creds["device_id"]])
    assert first.exit_code == 0, first.output
    assert "rotation to key version 2 started" in first.output
    second = runner.invoke(app, ["device", "rotate-key", creds["device_id"]])
    assert second.exit_code != 0
    assert "pending" in second.output and "retire" in second.output


def test_retire_key_asks_first_and_prints_the_new_secret_once(live_server):
    creds = live_server.register("CLI-K2")
    runner = CliRunner(env=_env(live_server))
    declined = runner.invoke(app, ["device", "retire-key", creds["device_id"]], input="n\n")
    assert declined.exit_code == 1
    with live_server.client(headers=live_server.operator_headers) as api:
        assert api.get(f"/api/v1/devices/{creds['device_id']}").json()["key_version"] == 1
    done = runner.invoke(app, ["device", "retire-key", creds["device_id"], "--yes"])
    assert done.exit_code == 0, done.output
    printed = json.loads(done.stdout.strip().splitlines()[-1])
    assert printed["key_version"] == 2 and printed["secret"] != creds["secret"]
