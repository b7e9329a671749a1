"""The server's own commands against a database that is not migrated (none, an old schema, a
newer one): a message naming the database and `lamplighter server migrate`, exit 2, and no
empty SQLite file left behind. Then `server tokens list` on a migrated one."""

from __future__ import annotations

import sqlite3

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from typer.testing import CliRunner

from fleet.core import db as fleet_db
from fleet.core import settings as fleet_settings
from tools.cli.main import app as cli
from tools.emulator.fleet_process import free_port

SERVER_COMMANDS = [
    ["server", "tokens", "list"],
    ["server", "create-token", "--name", "alice", "--role", "operator"],
    ["server", "tokens", "create", "--name", "alice", "--role", "operator"],
    ["server", "revoke-token", "alice"],
    ["server", "run", "--no-migrate", "--behind-tls-proxy", "--port", "0"],
]


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    where = tmp_path / "var"
    monkeypatch.setenv("LAMPLIGHTER_DATA_DIR", str(where))
    monkeypatch.delenv("LAMPLIGHTER_DATABASE_URL", raising=False)
    monkeypatch.delenv("LAMPLIGHTER_MASTER_KEY", raising=False)
    fleet_settings.get_settings.cache_clear()
    fleet_db.get_engine.cache_clear()
    yield where
    fleet_db.get_engine.cache_clear()
    fleet_settings.get_settings.cache_clear()


def _invoke(argv: list[str]):
    if "run" in argv:
        argv = [a if a != "0" else str(free_port()) for a in argv]
    fleet_db.get_engine.cache_clear()
    return CliRunner(env={"COLUMNS": "250"}).invoke(cli, argv)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _url(path) -> str:
    return f"sqlite:///{path.resolve()}"


@pytest.mark.parametrize("argv", SERVER_COMMANDS, ids=lambda a: " ".join(a[:3]))
def test_no_database_is_named_and_not_created(data_dir, argv):
    result = _invoke(argv)
    assert result.exit_code == 2, result.output
    text = _one_line(result.output)
    assert f"the database at {(data_dir / 'fleet.db').resolve()} is not migrated" in text
    assert "run `lamplighter server migrate`" in text
    assert "Traceback" not in result.output
    assert not (data_dir / "fleet.db").exists()
    assert not data_dir.exists()  # not even its directory


def test_the_servers_start_up_check_creates_no_file(data_dir):
    from fleet.app import create_app

    with pytest.raises(fleet_db.SchemaNotMigrated, match="lamplighter server migrate"):
        create_app()
    assert not (data_dir / "fleet.db").exists()


@pytest.mark.parametrize("argv", SERVER_COMMANDS, ids=lambda a: " ".join(a[:3]))
def test_an_old_schema_names_both_migrations(data_dir, argv):
    db = data_dir / "fleet.db"
    fleet_db.make_engine(_url(db)).dispose()
    command.upgrade(fleet_db.alembic_config(_url(db)), "0006")
    head = ScriptDirectory.from_config(fleet_db.alembic_config(_url(db))).get_current_head()
    result = _invoke(argv)
    assert result.exit_code == 2, result.output
    text = _one_line(result.output)
    assert (f"the database at {db.resolve()} is not migrated (it is at migration 0006, this "
            f"version needs {head}): run `lamplighter server migrate`") in text


def test_an_empty_file_and_a_newer_schema(data_dir):
    data_dir.mkdir()
    db = data_dir / "fleet.db"
    db.touch()  # e.g. left by an older version of this tool
    result = _invoke(["server", "tokens", "list"])
    assert result.exit_code == 2
    assert "is not migrated (it is at migration none" in _one_line(result.output)

    assert _invoke(["server", "migrate"]).exit_code == 0
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0999'")
    result = _invoke(["server", "create-token", "--name", "a", "--role", "operator"])
    assert result.exit_code == 2
    assert ("is at migration 0999, which this version of Lamplighter does not know" in
            _one_line(result.output))
    for argv in (["server", "migrate"], ["server", "run", "--behind-tls-proxy", "--port", "0"]):
        result = _invoke(argv)
        assert result.exit_code == 2, result.output
        text = _one_line(result.output)
        assert f"cannot migrate the database at {db.resolve()}" in text
        assert "a newer version of Lamplighter migrated it" in text
        assert "Traceback" not in result.output


def test_tokens_list_after_migrate(data_dir):
    assert _invoke(["server", "migrate"]).exit_code == 0
    secrets = []
    for name, role in (("alice", "operator"), ("depot", "technician"), ("grafana", "reader")):
        made = _invoke(["server", "tokens", "create", "--name", name, "--role", role])
        assert made.exit_code == 0, made.output
        secrets.append(made.output.strip())
    assert _invoke(["server", "revoke-token", "grafana"]).exit_code == 0

    live = _invoke(["server", "tokens", "list"])
    assert live.exit_code == 0, live.output
    rows = {line.split()[1]: line for line in live.output.splitlines() if "│" in line
            and "name" not in line}
    assert set(rows) == {"alice", "depot"}
    assert "operator" in rows["alice"] and "live" in rows["alice"]
    every = _invoke(["server", "tokens", "list", "--all"])
    assert "grafana" in every.output and "revoked" in every.output
    readers = _invoke(["server", "tokens", "list", "--all", "--role", "reader"])
    assert "grafana" in readers.output and "alice" not in readers.output
    for listing in (live, every):
        for secret in secrets:
            assert secret not in listing.output and secret[-12:] not in listing.output
    from fleet.core.crypto import hash_token

    assert hash_token(secrets[0])[:16] not in every.output
    bad = _invoke(["server", "tokens", "list", "--role", "admin"])
    assert bad.exit_code == 2 and "unknown role 'admin'" in bad.output
    assert _invoke(["server", "revoke-token", "alice"]).exit_code == 0
    assert _invoke(["server", "revoke-token", "depot"]).exit_code == 0
    assert "no live tokens" in _invoke(["server", "tokens", "list"]).output
