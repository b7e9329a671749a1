"""`lamplighter release upload|trust|distrust|publish|statements|keys`: the server side."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from tools.api_client import SERVER_OPTION, TOKEN_OPTION, ApiClient, err

console = Console()
CHUNK = 64 * 1024


def _chunks(path: Path) -> Iterator[bytes]:
    """The file's bytes, 64 KB at a time, so a large bundle never sits whole in memory."""
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk


def upload(
    bundle: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True,
                                  help="Signed bundle (.llb) from `lamplighter release sign`."),
    notes: str = typer.Option("", help="Release notes kept with the release (≤ 500 chars)."),
    server: str | None = SERVER_OPTION,
    token: str | None = TOKEN_OPTION,
) -> None:
    """Upload a signed bundle; the server checks its signature against the trusted keys."""
    api = ApiClient(server, token)
    size = bundle.stat().st_size
    release = api.call("POST", "/api/v1/releases", params={"notes": notes},
                       content=_chunks(bundle),
                       headers={"Content-Type": "application/octet-stream",
                                "Content-Length": str(size)})
    console.print(f"release {release['id']}: version {release['version']} sequence "
                  f"{release['sequence']} ({release['kind']}, boards "
                  f"{', '.join(release['boards'])}), {release['bundle_size']} bytes, "
                  f"sha256 {release['bundle_sha256'][:16]}…")


def trust(
    public_key: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True,
                                      help="Release public key (PEM or hex), from `keygen`."),
    name: str = typer.Option("", help="A name to show beside the key id."),
    server: str | None = SERVER_OPTION,
    token: str | None = TOKEN_OPTION,
) -> None:
    """Make the server accept bundles signed by this key (it never needs the private key)."""
    row = ApiClient(server, token).call("POST", "/api/v1/keys", json={
        "public_key": public_key.read_text().strip(), "name": name})
    console.print(f"trusted release key {row['key_id']} {row['name']}".rstrip())


def distrust(
    key_id: str = typer.Argument(..., help="Key id (16 hex digits) to revoke on the server."),
    server: str | None = SERVER_OPTION,
    token: str | None = TOKEN_OPTION,
) -> None:
    """Revoke a release key on the server: bundles it signed are refused from now on, and the
    active rollouts of releases it signed pause.

    Nodes learn of a revoked key only from a signed revocation
    (`lamplighter release revoke <key id> --key <another key> --serial N --upload`).
    """
    row = ApiClient(server, token).call("POST", f"/api/v1/keys/{key_id}/revoke")
    console.print(f"revoked release key {row['key_id']} at {row['revoked_at']}")
    if row.get("note"):
        typer.echo(row["note"])


STATEMENTS = "/api/v1/keys/statements"


def server_serial(api: ApiClient) -> int:
    """The serial of the server's key set: its last statement's (0: none yet)."""
    chain = api.call("GET", STATEMENTS)
    return chain[-1]["serial"] if chain else 0


def publish_statement(api: ApiClient, envelope: bytes, source: Path) -> dict[str, Any]:
    """Send a signed statement to the server and say what it stored."""
    try:
        row = api.call("POST", STATEMENTS, content=envelope,
                       headers={"Content-Type": "application/json"})
    except typer.Exit as exc:
        if exc.exit_code == 3:  # unreachable: the statement itself is fine
            err.print(f"the statement stays in {source}; send it later with "
                      f"`lamplighter release publish {source}`")
        raise
    typer.echo(f"server: statement {row['serial']} stored ({row['summary']}); "
               f"{row['nodes_behind']} active nodes receive it at their next check-in")
    return row


def publish(
    statement: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True,
                                     help="Statement file from `release rotate` or `revoke`."),
    server: str | None = SERVER_OPTION,
    token: str | None = TOKEN_OPTION,
) -> None:
    """Send a signed rotation or revocation to the server; nodes receive it at check-in.

    It must be the next serial of the server's chain (`lamplighter release statements`).
    """
    publish_statement(ApiClient(server, token), statement.read_bytes(), statement)


def statements(
    server: str | None = SERVER_OPTION,
    token: str | None = TOKEN_OPTION,
) -> None:
    """List the server's key statement chain, and the serial the next statement needs."""
    chain = ApiClient(server, token).call("GET", STATEMENTS)
    for row in chain:
        when = row["created_at"][:16].replace("T", " ")
        typer.echo(f"{row['serial']:>4}  {row['summary']}  signed by {row['key_id']}  "
                   f"{when} by {row['created_by']}  nodes behind: {row['nodes_behind']}")
    current = chain[-1]["serial"] if chain else 0
    if not chain:
        typer.echo("no key statements yet: the key set is at serial 0")
    typer.echo(f"next statement: --serial {current + 1}")


def key_id_argument(text: str) -> str:
    """A key id as given, or the key id of the public key file of that name."""
    from ota.errors import OtaError
    from ota.keys import key_id, load_public_key

    path = Path(text)
    if not path.is_file():
        return text  # a key id (the caller says so if it is not one)
    try:
        return key_id(load_public_key(path))
    except OtaError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None


def keys(
    nodes: str | None = typer.Option(
        None, "--nodes", metavar="KEY_ID|FILE", help="List the nodes that still trust this "
                                                     "revoked key (its id or public key file)."),
    server: str | None = SERVER_OPTION,
    token: str | None = TOKEN_OPTION,
) -> None:
    """List the release keys; for revoked ones, how many active nodes still trust them."""
    api = ApiClient(server, token)
    if nodes:
        nodes = key_id_argument(nodes)
        rows = api.call("GET", f"/api/v1/keys/{nodes}/nodes")
        for n in rows:
            keyset = "never reported" if n["keyset"] is None else f"key set {n['keyset']}"
            seen = (n["last_seen"] or "never")[:16].replace("T", " ")
            error = f"  refused: {n['keyset_error']}" if n["keyset_error"] else ""
            typer.echo(f"{n['device_id']}  {n['pole_id']}  {keyset}  last seen {seen}{error}")
        typer.echo(f"{len(rows)} nodes still trust {nodes}")
        return
    for k in api.call("GET", "/api/v1/keys"):
        origin = (f"rotated in by statement {k['introduced_by_serial']}"
                  if k["introduced_by_serial"] else "trusted by an operator")
        if k["revoked_at"] is None:
            state = "trusted"
        elif k["revoked_by_serial"] is not None:
            state = f"REVOKED by statement {k['revoked_by_serial']}"
        else:
            state = "REVOKED on the server only"
        line = f"{k['key_id']}  {state}  ({origin}{', ' + k['name'] if k['name'] else ''})"
        if k["nodes_trusting"] is not None:
            line += f"  nodes still trusting: {k['nodes_trusting']}"
        typer.echo(line)
        if k["note"]:
            typer.echo(f"    {k['note']}")
