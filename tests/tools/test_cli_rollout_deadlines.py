"""`lamplighter rollout create` with deadlines and precedence, and `status` showing timeouts
(issue 14), against a live server."""

from __future__ import annotations

import pytest
import typer
from test_cli_rollout import _release
from typer.testing import CliRunner

from tools.cli.main import app as cli
from tools.cli.rollout import _deadlines, refusal_hint


def test_rollout_create_takes_deadlines_and_precedence_and_shows_them(live_server, tmp_path):
    for i in range(3):
        live_server.register(f"DL-{i}", group="harbour")
    release_id = _release(live_server, tmp_path)
    env = {"LAMPLIGHTER_SERVER": live_server.url, "LAMPLIGHTER_TOKEN": live_server.operator_token,
           "LAMPLIGHTER_CA": live_server.verify}
    runner = CliRunner(env=env)
    made = runner.invoke(cli, ["rollout", "create", str(release_id), "--waves", "100",
                               "--deadline", "downloading=45m", "--deadline", "offered=2h"])
    assert made.exit_code == 0, made.output
    assert "deadlines: offered 2h, downloading 45m, installing 30m, installed 30m" in made.output
    assert "timed" in made.output and "memb" in made.output  # columns (wrapped when narrow)
    shown = runner.invoke(cli, ["rollout", "status", "1", "--nodes", "--planned"])
    assert shown.exit_code == 0, shown.output
    assert shown.output.count("planned") >= 3
    bad = runner.invoke(cli, ["rollout", "create", str(release_id), "--deadline", "booting=1h"])
    assert bad.exit_code == 2 and "STATE=DURATION" in bad.output
    help_text = runner.invoke(cli, ["rollout", "create", "--help"]).output
    assert "--deadline" in help_text and "--precedence" in help_text


def test_deadline_options_and_timeout_hints():
    assert _deadlines(["downloading=90", "installed=1.5h", "offered=10m"]) == {
        "downloading": 90, "installed": 5400, "offered": 600}
    with pytest.raises(typer.BadParameter):
        _deadlines(["downloading=soon"])
    assert "still counts" in refusal_hint("timeout: downloading, no further report for 20 s")
    assert "another version" in refusal_hint("version_mismatch: reported committed but runs 1")
