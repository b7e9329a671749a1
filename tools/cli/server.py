"""`lamplighter server …`: run, migrate and administer the fleet server."""

from __future__ import annotations

import base64
import secrets
from typing import Annotated

import typer
from rich.console import Console

server_app = typer.Typer(help="Run and administer the fleet server.", no_args_is_help=True)
console = Console()
err = Console(stderr=True, soft_wrap=True)


@server_app.command("run")
def run(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(
        min=1, help="Server processes (they share the database).")] = 1,
    migrate_first: Annotated[bool, typer.Option("--migrate/--no-migrate",
        help="Apply pending migrations before serving (production deployments usually say "
             "--no-migrate and run `lamplighter server migrate` as a release step).")] = True,
) -> None:
    """Serve the fleet API (SQLite under ./var unless LAMPLIGHTER_DATABASE_URL says otherwise)."""
    import uvicorn

    from fleet.core.db import SchemaNotMigrated, check_migrated, get_engine, migrate
    from fleet.core.settings import get_settings

    settings = get_settings()
    url = settings.resolved_database_url
    if migrate_first:
        migrate(url)
    try:
        settings.master_key_bytes()
        check_migrated(get_engine())
    except (SchemaNotMigrated, RuntimeError) as exc:
        err.print(f"[red]cannot start:[/red] {exc}")
        raise typer.Exit(2) from None
    console.print(f"fleet server on http://{host}:{port}  database: {_redact(url)}")
    uvicorn.run("fleet.app:create_app", factory=True, host=host, port=port, workers=workers,
                log_level=settings.log_level, access_log=False)


@server_app.command("migrate")
def migrate_cmd() -> None:
    """Bring the database to the newest schema (safe to run again)."""
    from fleet.core.db import migrate
    from fleet.core.settings import get_settings

    url = get_settings().resolved_database_url
    migrate(url)
    console.print(f"database at the newest schema: {_redact(url)}")


@server_app.command("create-token")
def create_token_cmd(
    name: Annotated[str, typer.Option(
        help="Who or what holds the token, e.g. 'alice' or 'grafana'.")],
    role: Annotated[str, typer.Option(help="operator, technician or reader.")],
) -> None:
    """Create an API token (printed once; only its hash is stored)."""
    from sqlmodel import Session

    from fleet.core.db import get_engine
    from fleet.tokens import create_token

    try:
        with Session(get_engine()) as session:
            token = create_token(session, name, role)
    except ValueError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    console.print(token)


@server_app.command("revoke-token")
def revoke_token_cmd(name: Annotated[str, typer.Argument(help="The token's name.")]) -> None:
    """Revoke every live token with this name."""
    from sqlmodel import Session

    from fleet.core.db import get_engine
    from fleet.errors import NotFound
    from fleet.tokens import revoke_token

    try:
        with Session(get_engine()) as session:
            count = revoke_token(session, name)
    except NotFound as exc:
        err.print(f"[red]{exc.detail}[/red]")
        raise typer.Exit(1) from None
    console.print(f"revoked {count} token(s) named {name}")


@server_app.command("gen-master-key")
def gen_master_key() -> None:
    """Print a new master key for LAMPLIGHTER_MASTER_KEY (keep it in your secret store)."""
    console.print(base64.b64encode(secrets.token_bytes(32)).decode())


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}" if ":" in creds else url
    return url


