"""`lamplighter release upload / trust / distrust`: the fleet server's side of releases."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import typer
from rich.console import Console

from tools.api_client import SERVER_OPTION, TOKEN_OPTION, ApiClient

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
    """Revoke a release key on the server: bundles it signed are refused from now on.

    Nodes learn of a revoked key from a signed revocation list (`lamplighter release revoke`).
    """
    row = ApiClient(server, token).call("POST", f"/api/v1/keys/{key_id}/revoke")
    console.print(f"revoked release key {row['key_id']} at {row['revoked_at']}")
