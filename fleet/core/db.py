"""Database engine, sessions, and the check that the schema is migrated before serving."""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, event
from sqlmodel import Session, create_engine

from fleet.core.settings import get_settings

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


class SchemaNotMigrated(RuntimeError):
    """The database is behind the code's migrations; the message says which command to run."""


def make_engine(url: str) -> Engine:
    """An engine for `url`; SQLite gets WAL mode, a busy timeout and foreign keys."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


@lru_cache
def get_engine() -> Engine:
    """The process-wide engine for the configured database."""
    return make_engine(get_settings().resolved_database_url)


def get_session() -> Iterator[Session]:
    """FastAPI dependency: one session per request."""
    with Session(get_engine(), expire_on_commit=False) as session:
        yield session


def alembic_config(url: str) -> Config:
    """Alembic configuration pointing at the packaged migrations and `url`."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def migrate(url: str) -> None:
    """Bring the database at `url` to the newest schema."""
    from alembic import command

    if url.startswith("sqlite"):
        make_engine(url).dispose()  # creates the parent directory
    command.upgrade(alembic_config(url), "head")


def sqlite_file(url: str) -> Path | None:
    """The file of an on-disk SQLite database URL, else None (another database, or :memory:)."""
    if not url.startswith("sqlite"):
        return None
    path = url.split("///", 1)[-1].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def describe_database(url: str) -> str:
    """The database for a message: an SQLite file's path, else the URL without its password."""
    path = sqlite_file(url)
    if path is not None:
        return str(path)
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}" if ":" in creds else url
    return url


MIGRATE_HINT = ("run `lamplighter server migrate` (with the same LAMPLIGHTER_DATABASE_URL / "
                "LAMPLIGHTER_DATA_DIR) first")


def check_migrated(engine: Engine) -> None:
    """Raise SchemaNotMigrated unless the database is at the newest migration.

    An SQLite file that does not exist is reported without being created (connecting would
    leave an empty file behind); a database migrated by a newer version is named as such.
    """
    url = engine.url.render_as_string(hide_password=False)
    where = describe_database(url)
    path = sqlite_file(url)
    if path is not None and not path.is_file():
        raise SchemaNotMigrated(f"the database at {where} is not migrated (there is no such "
                                f"file yet): {MIGRATE_HINT}")
    script = ScriptDirectory.from_config(alembic_config(url))
    head = script.get_current_head()
    with engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    if current == head:
        return
    if current is not None and current not in {s.revision for s in script.walk_revisions()}:
        raise SchemaNotMigrated(
            f"the database at {where} is at migration {current}, which this version of "
            f"Lamplighter does not know (it needs {head}): a newer version migrated it; run "
            "that version, or restore a backup taken before the upgrade")
    raise SchemaNotMigrated(
        f"the database at {where} is not migrated (it is at migration {current or 'none'}, "
        f"this version needs {head}): {MIGRATE_HINT}")


def require_migrated(url: str) -> None:
    """check_migrated for the database at `url` with an engine of its own (disposed after);
    a database that cannot be reached raises SchemaNotMigrated too, with the reason."""
    from sqlalchemy.exc import OperationalError

    path = sqlite_file(url)
    if path is not None and not path.is_file():  # before make_engine, which makes directories
        raise SchemaNotMigrated(f"the database at {describe_database(url)} is not migrated "
                                f"(there is no such file yet): {MIGRATE_HINT}")
    engine = make_engine(url)
    try:
        check_migrated(engine)
    except OperationalError as exc:
        raise SchemaNotMigrated(f"cannot open the database at {describe_database(url)}: "
                                f"{exc.orig or exc}") from None
    finally:
        engine.dispose()
