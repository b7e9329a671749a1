"""`lamplighter audit list` against a live server: the table, the filters, refusals, paging."""

from __future__ import annotations

import pytest
from sqlmodel import Session
from typer.testing import CliRunner

from fleet.core.db import make_engine
from fleet.tokens import create_token
from tools.cli.main import app as cli

pytestmark = pytest.mark.usefixtures("wide_console")


def test_audit_list_shows_and_filters_operator_actions(live_server):
    node = live_server.register("AUDIT-1")
    uid = node["device_id"]
    with live_server.client(headers=live_server.operator_headers) as api:
        api.put("/api/v1/groups/harbour/config", json={"config": {"dimming": {"dim_level": 40}}})
        api.post(f"/api/v1/devices/{uid}/commands", json={"type": "identify"})
        refused = api.post("/api/v1/devices/ll-000000000000/commands", json={"type": "reboot"})
        assert refused.status_code == 404
    env = {"LAMPLIGHTER_SERVER": live_server.url, "LAMPLIGHTER_TOKEN": live_server.operator_token,
           "LAMPLIGHTER_CA": live_server.verify, "COLUMNS": "250"}
    runner = CliRunner(env=env)

    listed = runner.invoke(cli, ["audit", "list"])
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    row = next(line for line in lines if "config.set" in line)
    assert "local-operator" in row and "group:harbour" in row and "ok" in row
    assert '{"keys":["dimming.dim_level"]}' in row
    assert any("device.register" in line and f"device:{uid}" in line for line in lines)
    assert any("token.create" in line and "local:" in line for line in lines)

    only = runner.invoke(cli, ["audit", "list", "--target", f"device:{uid}"])
    assert only.exit_code == 0
    assert "command.send" in only.output and "device.register" in only.output
    assert "group:harbour" not in only.output

    refusals = runner.invoke(cli, ["audit", "list", "--refused", "--actor", "local-operator"])
    assert refusals.exit_code == 0
    assert "refused 404: no device ll-000000000000" in refusals.output
    assert "config.set" not in refusals.output

    paged = runner.invoke(cli, ["audit", "list", "--limit", "1"])
    assert paged.exit_code == 0 and "older records: add --cursor" in paged.output
    cursor = paged.output.rsplit("--cursor", 1)[1].split()[0]
    older = runner.invoke(cli, ["audit", "list", "--limit", "1", "--cursor", cursor])
    assert older.exit_code == 0 and "command.send" in older.output

    nothing = runner.invoke(cli, ["audit", "list", "--since", "2999-01-01"])
    assert nothing.exit_code == 0 and "no audit records match" in nothing.output
    bad = runner.invoke(cli, ["audit", "list", "--since", "yesterday"])
    assert bad.exit_code == 2 and "ISO 8601" in bad.output


def test_audit_list_needs_an_operator_token(live_server):
    engine = make_engine(  # the server's database, as its own command line reaches it
        live_server.env["LAMPLIGHTER_DATABASE_URL"])
    with Session(engine) as session:
        reader = create_token(session, "dashboards", "reader")
    engine.dispose()
    runner = CliRunner(env={"LAMPLIGHTER_SERVER": live_server.url, "LAMPLIGHTER_TOKEN": reader,
                            "LAMPLIGHTER_CA": live_server.verify})
    refused = runner.invoke(cli, ["audit", "list"])
    assert refused.exit_code == 1 and "refused (403)" in refused.output
