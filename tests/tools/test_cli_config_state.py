"""What a node reports of its configuration, through the CLI: `config get` (applied, refused
and why, drifting), `config drift [--group]` and `device events`, and their --help texts."""

from __future__ import annotations

import json

import pytest

from tests.tools.test_cli_fleet_ops import _check_in, _runner
from tools.cli.main import app as cli

pytestmark = pytest.mark.usefixtures("wide_console")

REASON = "dimming.dim_level: must be between 0 and 100"


def _old_profile(server, group: str) -> None:
    """A group profile an older server stored without validating it (dim_level 500)."""
    from sqlmodel import Session

    from fleet.core.db import make_engine
    from fleet.models import ConfigProfile

    engine = make_engine(server.env["LAMPLIGHTER_DATABASE_URL"])
    with Session(engine) as session:
        session.add(ConfigProfile(scope="group", target=group, version=3,
                                  body={"dimming": {"dim_level": 500}}))
        session.commit()
    engine.dispose()


def test_config_get_drift_and_device_events_show_what_the_node_reports(live_server):
    node = live_server.register("DRIFT-1", group="old")
    fine = live_server.register("DRIFT-2", group="new")
    uid = node["device_id"]
    _old_profile(live_server, "old")
    run = _runner(live_server)

    report = {"fw_version": "1.0.0", "config_version": 0}
    assert _check_in(live_server, node, report)["config_version"] == 3
    _check_in(live_server, fine, report)
    early = run.invoke(cli, ["config", "drift"])
    assert early.exit_code == 0 and "no node is drifting" in early.output
    for _ in range(2):  # the node refuses version 3 and says so at each check-in
        _check_in(live_server, node, dict(report, config_refused={"version": 3,
                                                                  "reason": REASON}))

    got = run.invoke(cli, ["config", "get", "--device", uid])
    assert got.exit_code == 0, got.output
    text = " ".join(got.output.split())
    assert "desired configuration version 3, applied 0 (refused by the node)" in text
    assert f"the node refused version 3: {REASON}" in text
    assert "drifting: it reported a version below the desired one at 3 check-ins in a row" \
        in text
    as_json = json.loads(run.invoke(cli, ["config", "get", "--device", uid, "--json"]).output)
    assert (as_json["refused_version"], as_json["refused_reason"], as_json["drifting"]) == \
        (3, REASON, True)
    clean = run.invoke(cli, ["config", "get", "--device", fine["device_id"]])
    assert "refused" not in clean.output and "drifting" not in clean.output

    drift = run.invoke(cli, ["config", "drift"])
    assert drift.exit_code == 0, drift.output
    [row] = [line for line in drift.output.splitlines() if uid in line]
    for expected in ("DRIFT-1", "old", "3 check-ins", "s ago)", f"v3: {REASON}"):
        assert expected in row, expected
    assert "DRIFT-2" not in drift.output and "1 drifting node(s)" in drift.output
    assert uid in run.invoke(cli, ["config", "drift", "--group", "old"]).output
    other = run.invoke(cli, ["config", "drift", "--group", "new"])
    assert other.exit_code == 0 and "no node is drifting in group new" in other.output
    listed = json.loads(run.invoke(cli, ["config", "drift", "--json"]).output)
    assert [n["device_id"] for n in listed["nodes"]] == [uid]

    events = run.invoke(cli, ["device", "events", uid])
    assert events.exit_code == 0, events.output
    kinds = [word for line in events.output.splitlines() for word in line.split()
             if word in ("config_refused", "registered")]
    assert kinds == ["config_refused", "registered"]
    refused_row = next(line for line in events.output.splitlines() if "config_refused" in line)
    assert '"version":3' in refused_row and REASON in refused_row
    only = run.invoke(cli, ["device", "events", uid, "--kind", "registered"])
    assert "registered" in only.output and "config_refused" not in only.output
    paged = run.invoke(cli, ["device", "events", uid, "--limit", "1"])
    assert "older events: add --cursor" in paged.output and "registered" not in paged.output
    cursor = paged.output.split("--cursor")[1].split()[0]
    older = run.invoke(cli, ["device", "events", uid, "--limit", "1", "--cursor", cursor])
    assert "registered" in older.output and "config_refused" not in older.output
    assert "no events match" in run.invoke(
        cli, ["device", "events", uid, "--since", "2999-01-01T00:00:00Z"]).output
    bad = run.invoke(cli, ["device", "events", uid, "--kind", "nonsense"])
    assert bad.exit_code == 1 and "refused (422)" in bad.output
    worse = run.invoke(cli, ["device", "events", uid, "--since", "yesterday"])
    assert worse.exit_code == 2 and "ISO 8601" in worse.output
    missing = run.invoke(cli, ["device", "events", "ll-000000000000"])
    assert missing.exit_code == 1 and "refused (404)" in missing.output
