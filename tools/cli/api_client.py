"""The CLI's client for the fleet server's operator API: one place for URLs, tokens and errors."""

from __future__ import annotations

import os
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console

err = Console(stderr=True, soft_wrap=True)

# Every command that talks to the fleet server takes these two options.
ServerOption = Annotated[str | None, typer.Option(
    "--server", envvar="LAMPLIGHTER_SERVER",
    help="Fleet server URL [env LAMPLIGHTER_SERVER; default http://127.0.0.1:8000].")]
TokenOption = Annotated[str | None, typer.Option(
    "--token", envvar="LAMPLIGHTER_TOKEN",
    help="API token [env LAMPLIGHTER_TOKEN]; create one with `lamplighter server create-token`.")]


class ApiClient:
    """Calls the operator API and turns every failure into a message a person can act on."""

    def __init__(self, server: str | None, token: str | None, timeout: float = 60.0):
        self.server = (server or os.environ.get("LAMPLIGHTER_SERVER")
                       or "http://127.0.0.1:8000").rstrip("/")
        if not token:
            err.print("[red]no API token:[/red] pass --token or set LAMPLIGHTER_TOKEN "
                      "(an operator creates one with `lamplighter server create-token`)")
            raise typer.Exit(2)
        self._client = httpx.Client(base_url=self.server, timeout=timeout,
                                    headers={"Authorization": f"Bearer {token}"})

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send one request; print the server's reason and exit non-zero on failure."""
        try:
            resp = self._client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            err.print(f"[red]cannot reach the fleet server at {self.server}:[/red] {exc}. "
                      "Is it running? (`lamplighter server run`, or check --server)")
            raise typer.Exit(3) from None
        if resp.status_code >= 400:
            try:
                detail = resp.json().get("detail", resp.text)
            except ValueError:
                detail = resp.text
            if isinstance(detail, list):  # FastAPI validation errors
                detail = "; ".join(f"{'.'.join(str(p) for p in d.get('loc', []))}: {d.get('msg')}"
                                   for d in detail)
            hint = {401: " (check the token)", 403: " (this token's role may not do that)"}
            err.print(f"[red]{method} {path} refused ({resp.status_code}):[/red] {detail}"
                      f"{hint.get(resp.status_code, '')}")
            raise typer.Exit(1)
        return resp.json() if resp.content else None
