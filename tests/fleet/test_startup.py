"""The server refuses to start when it would run unsafely, and says what to do."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from fleet.core import db as fleet_db
from fleet.core import settings as fleet_settings
from tools.cli.main import app as cli


@pytest.fixture
def fresh_env(tmp_path, monkeypatch):
    monkeypatch.setenv("LAMPLIGHTER_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("LAMPLIGHTER_DATABASE_URL", raising=False)
    monkeypatch.delenv("LAMPLIGHTER_MASTER_KEY", raising=False)
    fleet_settings.get_settings.cache_clear()
    fleet_db.get_engine.cache_clear()
    yield tmp_path
    fleet_settings.get_settings.cache_clear()
    fleet_db.get_engine.cache_clear()


def test_unmigrated_database_is_refused_with_the_command_to_run(fresh_env):
    from fleet.app import create_app

    with pytest.raises(fleet_db.SchemaNotMigrated, match="lamplighter server migrate"):
        create_app()


def test_migrate_command_then_the_app_starts(fresh_env):
    from fleet.app import create_app

    result = CliRunner().invoke(cli, ["server", "migrate"])
    assert result.exit_code == 0, result.output
    assert (fresh_env / "fleet.db").exists()
    fleet_db.get_engine.cache_clear()
    assert create_app().title == "Lamplighter fleet server"


def test_production_without_master_key_is_refused(fresh_env, monkeypatch):
    from fleet.app import create_app

    monkeypatch.setenv("LAMPLIGHTER_PRODUCTION", "true")
    fleet_settings.get_settings.cache_clear()
    with pytest.raises(RuntimeError, match="LAMPLIGHTER_MASTER_KEY is required"):
        create_app(check_schema=False)


def test_malformed_master_key_is_refused(fresh_env, monkeypatch):
    monkeypatch.setenv("LAMPLIGHTER_MASTER_KEY", "c2hvcnQ=")
    fleet_settings.get_settings.cache_clear()
    with pytest.raises(ValueError, match="32 bytes"):
        fleet_settings.get_settings()


def test_token_cli_creates_and_refuses_unknown_roles(fresh_env):
    runner = CliRunner()
    assert runner.invoke(cli, ["server", "migrate"]).exit_code == 0
    ok = runner.invoke(cli, ["server", "create-token", "--name", "ops", "--role", "operator"])
    assert ok.exit_code == 0 and ok.output.strip().startswith("llo_")
    bad = runner.invoke(cli, ["server", "create-token", "--name", "x", "--role", "admin"])
    assert bad.exit_code == 2 and "unknown role" in bad.output


def test_a_revoked_token_is_refused_and_revoking_it_again_says_none_is_live(fresh_env):
    from fastapi.testclient import TestClient

    from fleet.app import create_app

    runner = CliRunner()
    assert runner.invoke(cli, ["server", "migrate"]).exit_code == 0
    token = runner.invoke(cli, ["server", "create-token", "--name", "ops", "--role",
                                "operator"]).output.strip()
    fleet_db.get_engine.cache_clear()
    api = TestClient(create_app())
    auth = {"Authorization": f"Bearer {token}"}
    assert api.get("/api/v1/devices", headers=auth).status_code == 200
    revoked = runner.invoke(cli, ["server", "revoke-token", "ops"])
    assert revoked.exit_code == 0 and "revoked 1 token(s) named ops" in revoked.output
    assert api.get("/api/v1/devices", headers=auth).status_code == 401
    again = runner.invoke(cli, ["server", "revoke-token", "ops"])
    assert again.exit_code == 1 and "no live token named ops" in again.output


def test_dashboard_page_is_served(client):
    resp = client.get("/")
    assert resp.status_code == 200 and "Lamplighter fleet" in resp.text
    assert "/api/v1/fleet/summary" in resp.text
    assert "Revoked release keys" in resp.text and "nodes_trusting" in resp.text
