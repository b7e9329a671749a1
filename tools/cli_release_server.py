"""`lamplighter release upload`: send a signed bundle to the fleet server, streamed from disk."""

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
