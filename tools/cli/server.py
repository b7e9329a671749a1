"""`lamplighter server …`: run, migrate and administer the fleet server."""

from __future__ import annotations

import base64
import hashlib
import secrets
import ssl
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

if TYPE_CHECKING:
    from sqlalchemy import Engine

server_app = typer.Typer(help="Run and administer the fleet server.", no_args_is_help=True)
console = Console()
err = Console(stderr=True, soft_wrap=True)


RUN_HELP = (
    "Serve the fleet API over HTTPS (SQLite under ./var unless LAMPLIGHTER_DATABASE_URL says "
    "otherwise).\n\n"
    "The certificate and key are server.pem and server.key in the TLS directory "
    "(LAMPLIGHTER_TLS_DIR, default <data dir>/tls), made by `lamplighter server init-tls`; "
    "--cert/--key name others.\n\n"
    "With --behind-tls-proxy the server speaks plain HTTP to a TLS terminator instead.")


@server_app.command("run", help=RUN_HELP)
def run(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(
        min=1, help="Server processes (they share the database).")] = 1,
    migrate_first: Annotated[bool, typer.Option("--migrate/--no-migrate",
        help="Apply pending migrations before serving (production deployments usually say "
             "--no-migrate and run `lamplighter server migrate` as a release step).")] = True,
    behind_tls_proxy: Annotated[bool, typer.Option("--behind-tls-proxy",
        help="Serve plain HTTP to a TLS terminator (nginx, a load balancer) on the same host "
             "or private network; nodes and operators must reach the server only through it, "
             "and its certificate must chain to the CA pinned on the nodes.")] = False,
    cert: Annotated[Path | None, typer.Option(
        "--cert", dir_okay=False, help="Server certificate (PEM, chain appended) to serve "
        "instead of <tls dir>/server.pem.")] = None,
    key: Annotated[Path | None, typer.Option(
        "--key", dir_okay=False, help="Its private key (PEM) instead of <tls dir>/server.key.")
    ] = None,
) -> None:
    import uvicorn

    from fleet.core.db import SchemaNotMigrated, require_migrated
    from fleet.core.settings import get_settings
    from fleet.core.tls import default_tls_files
    from tools.cli.lifecycle import require_free_port

    settings = get_settings()
    require_free_port(host, port)
    ssl_args: dict[str, str] = {}
    if behind_tls_proxy:
        if cert or key:
            err.print("[red]--behind-tls-proxy serves plain HTTP:[/red] the certificate is the "
                      "terminator's, so leave out --cert/--key")
            raise typer.Exit(2)
    else:
        files = default_tls_files()
        cert_file = cert or files.server_cert
        key_file = key or files.server_key
        missing = [str(p) for p in (cert_file, key_file) if not p.is_file()]
        if missing:
            err.print(f"[red]cannot serve HTTPS: no {' and no '.join(missing)}.[/red] Run "
                      "`lamplighter server init-tls` (it makes a CA and a server certificate; "
                      "--cert/--key/--ca take your own), or pass --behind-tls-proxy to serve "
                      "plain HTTP to a TLS terminator on the same host or private network.")
            raise typer.Exit(2)
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert_file,
                                                                                key_file)
        except (ssl.SSLError, OSError) as exc:
            err.print(f"[red]cannot serve HTTPS with {cert_file} and {key_file}:[/red] {exc} "
                      "(is the key the certificate's, unencrypted PEM? `lamplighter server "
                      "init-tls` makes a matching pair)")
            raise typer.Exit(2) from None
        ssl_args = {"ssl_certfile": str(cert_file), "ssl_keyfile": str(key_file)}
    url = settings.resolved_database_url
    if migrate_first:
        _migrate(url)
    try:
        settings.master_key_bytes()
        require_migrated(url)
    except (SchemaNotMigrated, RuntimeError) as exc:
        err.print(f"[red]cannot start:[/red] {exc}")
        raise typer.Exit(2) from None
    scheme = "http" if behind_tls_proxy else "https"
    console.print(f"fleet server on {scheme}://{host}:{port}  database: {_redact(url)}")
    if behind_tls_proxy:
        err.print("[yellow]warning: plain HTTP (--behind-tls-proxy).[/yellow] Nodes and "
                  "operators must reach this server only through the TLS terminator; do not "
                  f"expose {host}:{port} beyond the terminator's host or private network.")
    else:
        console.print(f"certificate: {ssl_args['ssl_certfile']}")
    # uvicorn stops on SIGTERM and Ctrl-C, and with --workers N stops its worker processes too
    uvicorn.run("fleet.app:create_app", factory=True, host=host, port=port, workers=workers,
                log_level=settings.log_level, access_log=False, **ssl_args)


INIT_TLS_HELP = (
    "Make the fleet's TLS files: a CA (once) and a server certificate it signs.\n\n"
    "Writes ca.pem, ca.key, server.pem and server.key into the TLS directory "
    "(LAMPLIGHTER_TLS_DIR, default <data dir>/tls, i.e. ./var/tls); the private keys are "
    "readable by their owner only.\n\n"
    "Run it again to issue a new server certificate (other --host names, or before the old one "
    "expires): the CA stays, so provisioned nodes keep working. --new-ca replaces the CA too, "
    "after which every node pinned to the old one must be re-provisioned. --cert/--key/--ca "
    "import a certificate you already have instead.\n\n"
    "Nodes get the CA (ca.pem, pinned as DER) when they are provisioned; operators' tools trust "
    "it with --ca or LAMPLIGHTER_CA.")


@server_app.command("init-tls", help=INIT_TLS_HELP)
def init_tls_cmd(
    host: Annotated[list[str] | None, typer.Option(
        "--host", help="A DNS name or IP address the server certificate covers; repeat for "
        "several; nodes and operators must use one of them in their server URL (default: "
        "localhost and 127.0.0.1).")] = None,
    new_ca: Annotated[bool, typer.Option(
        "--new-ca", help="Replace the CA too. Every node pinned to the old CA stops trusting "
        "the server until it is re-provisioned.")] = False,
    yes: Annotated[bool, typer.Option(
        "--yes", "-y", help="Do not ask before replacing the CA.")] = False,
    cert: Annotated[Path | None, typer.Option(
        "--cert", exists=True, dir_okay=False, readable=True,
        help="Import your own server certificate (PEM; chain may follow) instead of making "
        "one. Needs --key and --ca.")] = None,
    key: Annotated[Path | None, typer.Option(
        "--key", exists=True, dir_okay=False, readable=True,
        help="The private key (PEM, unencrypted) of --cert.")] = None,
    ca: Annotated[Path | None, typer.Option(
        "--ca", exists=True, dir_okay=False, readable=True,
        help="The CA certificate (PEM or DER) that signed --cert: what nodes pin.")] = None,
) -> None:
    from fleet.core.tls import DEFAULT_HOSTS, default_tls_files, import_tls, init_tls

    files = default_tls_files()
    imported = [p for p in (cert, key, ca) if p is not None]
    if imported:
        if len(imported) != 3:
            err.print("[red]importing needs all three:[/red] --cert (server certificate), "
                      "--key (its private key) and --ca (the CA that signed it)")
            raise typer.Exit(2)
        if host or new_ca:
            err.print("[red]--host and --new-ca make certificates; they do not go with "
                      "--cert/--key/--ca[/red]")
            raise typer.Exit(2)
        assert cert is not None and key is not None and ca is not None
        replacing = files.ca_cert.exists() and _fingerprint(files.ca_cert.read_bytes()) != \
            _fingerprint(ca.read_bytes())
        if replacing and not _confirm_new_ca(files.ca_cert, yes):
            raise typer.Exit(1)
        try:
            written = import_tls(files, cert.read_bytes(), key.read_bytes(), ca.read_bytes())
        except (ValueError, TypeError) as exc:
            err.print(f"[red]refused {cert}:[/red] {_import_reason(exc, cert, key, ca)}")
            raise typer.Exit(2) from None
        if replacing and files.ca_key.exists():
            files.ca_key.unlink()  # it signed the old CA, not this one
    else:
        if not new_ca and files.ca_cert.exists() and not files.ca_key.exists():
            err.print(f"[red]the CA in {files.ca_cert} was imported (there is no "
                      f"{files.ca_key.name} to sign with):[/red] have that CA issue the new "
                      "server certificate and import it with --cert/--key/--ca, or pass "
                      "--new-ca to make a CA here (and re-provision every node)")
            raise typer.Exit(2)
        if new_ca and files.ca_cert.exists() and not _confirm_new_ca(files.ca_cert, yes):
            raise typer.Exit(1)
        try:
            written = init_tls(files, tuple(host or DEFAULT_HOSTS), new_ca=new_ca)
        except ValueError as exc:
            err.print(f"[red]cannot make the certificates:[/red] {exc}")
            raise typer.Exit(2) from None
    for path in written:
        typer.echo(f"wrote {path}")
    kept = "" if files.ca_cert in written else " (kept: provisioned nodes keep trusting it)"
    typer.echo(f"CA certificate: {files.ca_cert}{kept}")
    typer.echo(f"CA SHA-256 fingerprint: {_fingerprint(files.ca_cert.read_bytes())}")
    typer.echo("next: start the server (`lamplighter server run`). Nodes receive this CA when "
               "they are provisioned; operators' tools trust it with "
               f"--ca {files.ca_cert} (or LAMPLIGHTER_CA).")


def _fingerprint(cert: bytes) -> str:
    from fleet.core.tls import ca_der_of

    digest = hashlib.sha256(ca_der_of(cert)).hexdigest().upper()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def _confirm_new_ca(current: Path, yes: bool) -> bool:
    err.print(f"[bold red]warning: replacing the fleet's CA ({current}, SHA-256 "
              f"{_fingerprint(current.read_bytes())}).[/bold red] Every node provisioned with "
              "it pins it: none of them will trust the server again until it is re-provisioned "
              "with the new CA, and operators must use the new ca.pem.")
    if yes:
        return True
    return typer.confirm("replace the CA?", default=False, err=True)


def _import_reason(exc: Exception, cert: Path, key: Path, ca: Path) -> str:
    text = str(exc)
    if "does not belong" in text:
        return (f"the private key {key} does not match the certificate {cert} (its public key "
                "differs): pass the key the certificate was issued for")
    if "not issued by" in text:
        return f"{cert} was not signed by the CA {ca}: {text}"
    return f"cannot read the certificate, key or CA: {text}"


@server_app.command("migrate")
def migrate_cmd() -> None:
    """Bring the database to the newest schema (safe to run again)."""
    from fleet.core.settings import get_settings

    url = get_settings().resolved_database_url
    _migrate(url)
    console.print(f"database at the newest schema: {_redact(url)}")


@server_app.command("create-token")
def create_token_cmd(
    name: Annotated[str, typer.Option(
        help="Who or what holds the token, e.g. 'alice' or 'grafana'.")],
    role: Annotated[str, typer.Option(help="operator, technician or reader.")],
) -> None:
    """Create an API token (printed once; only its hash is stored)."""
    from sqlmodel import Session

    from fleet.tokens import create_token

    try:
        with Session(_migrated_engine()) as session:
            token = create_token(session, name, role)
    except ValueError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    console.print(token)


@server_app.command("revoke-token")
def revoke_token_cmd(name: Annotated[str, typer.Argument(help="The token's name.")]) -> None:
    """Revoke every live token with this name."""
    from sqlmodel import Session

    from fleet.errors import NotFound
    from fleet.tokens import revoke_token

    try:
        with Session(_migrated_engine()) as session:
            count = revoke_token(session, name)
    except NotFound as exc:
        err.print(f"[red]{exc.detail}[/red]")
        raise typer.Exit(1) from None
    console.print(f"revoked {count} token(s) named {name}")


tokens_app = typer.Typer(help="The API tokens of the database this host's server uses "
                              "(LAMPLIGHTER_DATABASE_URL / LAMPLIGHTER_DATA_DIR).",
                         no_args_is_help=True)
server_app.add_typer(tokens_app, name="tokens")
tokens_app.command("create", help="Create an API token (printed once; only its hash is "
                   "stored). Same as `lamplighter server create-token`.")(create_token_cmd)
tokens_app.command("revoke", help="Revoke every live token with this name. Same as "
                   "`lamplighter server revoke-token`.")(revoke_token_cmd)


@tokens_app.command("list")
def list_tokens_cmd(
    all_tokens: Annotated[bool, typer.Option(
        "--all", help="Include revoked tokens.")] = False,
    role: Annotated[str | None, typer.Option(
        help="Only this role: operator, technician or reader.")] = None,
) -> None:
    """The API tokens: name, role, created, revoked. Never a token or its hash: a token is
    shown once, when it is created."""
    from rich.table import Table
    from sqlalchemy import select
    from sqlmodel import Session

    from fleet.auth import ROLES
    from fleet.models import ApiToken

    if role is not None and role not in ROLES:
        err.print(f"[red]unknown role {role!r}:[/red] choose one of {', '.join(ROLES)}")
        raise typer.Exit(2)
    query = select(ApiToken).order_by(ApiToken.name, ApiToken.id)
    if not all_tokens:
        query = query.where(ApiToken.revoked_at.is_(None))
    if role is not None:
        query = query.where(ApiToken.role == role)
    with Session(_migrated_engine()) as session:
        rows = session.execute(query).scalars().all()
    if not rows:
        console.print("no revoked or live tokens" if all_tokens else
                      "no live tokens (--all shows revoked ones too)")
        return
    table = Table("name", "role", "created (UTC)", "state")
    for row in rows:
        state = ("[green]live[/green]" if row.revoked_at is None else
                 f"[red]revoked[/red] {_utc(row.revoked_at)}")
        table.add_row(row.name, row.role, _utc(row.created_at), state)
    console.print(table)


def _utc(when: datetime | None) -> str:
    from fleet.models import aware

    moment = aware(when)
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment is not None else ""


def _migrate(url: str) -> None:
    """Migrate the database at `url`; a failure (a schema from a newer version, a database
    that cannot be reached) ends the command with the reason instead of a traceback."""
    from alembic.util.exc import CommandError
    from sqlalchemy.exc import SQLAlchemyError

    from fleet.core.db import describe_database, migrate

    try:
        migrate(url)
    except CommandError as exc:
        newer = ("; a newer version of Lamplighter migrated it: run that version, or restore a "
                 "backup taken before the upgrade") if "Can't locate revision" in str(exc) else ""
        err.print(f"[red]cannot migrate the database at {describe_database(url)}:[/red] "
                  f"{exc}{newer}")
        raise typer.Exit(2) from None
    except SQLAlchemyError as exc:
        err.print(f"[red]cannot migrate the database at {describe_database(url)}:[/red] "
                  f"{getattr(exc, 'orig', None) or exc}")
        raise typer.Exit(2) from None


def _migrated_engine() -> Engine:
    """The engine of this host's database, once it is known to be at the newest migration;
    otherwise exit 2 naming the database and `lamplighter server migrate` (and never leave an
    empty SQLite file behind)."""
    from fleet.core.db import SchemaNotMigrated, get_engine, require_migrated
    from fleet.core.settings import get_settings

    try:
        require_migrated(get_settings().resolved_database_url)
    except SchemaNotMigrated as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    return get_engine()


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


