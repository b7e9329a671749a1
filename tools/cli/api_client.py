"""The CLI's client for the fleet server's operator API: one place for URLs, tokens, the CA the
server's certificate must chain to, and errors."""

from __future__ import annotations

import json
import os
import ssl
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console

err = Console(stderr=True, soft_wrap=True)

DEFAULT_SERVER = "https://127.0.0.1:8000"

# Every command that talks to the fleet server takes these options.
ServerOption = Annotated[str | None, typer.Option(
    "--server", envvar="LAMPLIGHTER_SERVER",
    help=f"Fleet server URL (default {DEFAULT_SERVER}).")]
TokenOption = Annotated[str | None, typer.Option(
    "--token", envvar="LAMPLIGHTER_TOKEN",
    help="API token; create one with `lamplighter server create-token`.")]
# The time range of the newest-first lists (the audit trail, a node's events).
SinceOption = Annotated[str | None, typer.Option(
    help="ISO 8601 time: from then on (no time zone: UTC).")]
UntilOption = Annotated[str | None, typer.Option(help="ISO 8601 time: before then.")]
CaOption = Annotated[Path | None, typer.Option(
    "--ca", envvar="LAMPLIGHTER_CA", dir_okay=False,
    help="CA certificate (PEM or DER) the fleet server's certificate must chain to (default: "
         "$LAMPLIGHTER_DATA_DIR/tls/ca.pem, i.e. ./var/tls/ca.pem, when it exists, else the "
         "system's trusted CAs). `lamplighter server init-tls` makes it.")]


def local_ca_path() -> Path:
    """Where this machine's fleet server keeps its CA: LAMPLIGHTER_TLS_DIR, else
    LAMPLIGHTER_DATA_DIR/tls, else ./var/tls; then ca.pem."""
    tls_dir = os.environ.get("LAMPLIGHTER_TLS_DIR") or Path(
        os.environ.get("LAMPLIGHTER_DATA_DIR") or "var") / "tls"
    return Path(tls_dir) / "ca.pem"


def local_ca() -> Path | None:
    """The CA of this machine's fleet server, when its ca.pem exists."""
    path = local_ca_path()
    return path if path.is_file() else None


def resolve_ca(ca: Path | str | None) -> Path | None:
    """The CA file to trust: `ca`, else LAMPLIGHTER_CA, else the local server's, else None
    (the system's trusted CAs). Exits with a message when a named file is missing."""
    named = ca or os.environ.get("LAMPLIGHTER_CA") or None
    if named is None:
        return local_ca()
    path = Path(named)
    if not path.is_file():
        err.print(f"[red]no CA certificate at {path}[/red] (--ca / LAMPLIGHTER_CA): on the "
                  "fleet server's host it is <data dir>/tls/ca.pem; `lamplighter server "
                  "init-tls` prints where")
        raise typer.Exit(2)
    return path


def ssl_context_for(ca: Path | None) -> ssl.SSLContext:
    """An SSL context trusting only `ca` (PEM or DER), or the system's trusted CAs when None."""
    if ca is None:
        return ssl.create_default_context()
    try:
        data = ca.read_bytes()
        if b"-----BEGIN" in data:
            return ssl.create_default_context(cadata=data.decode("ascii", "replace"))
        return ssl.create_default_context(cadata=data)  # DER, as pinned on a node
    except (ssl.SSLError, OSError, ValueError) as exc:
        err.print(f"[red]cannot read the CA certificate {ca}:[/red] {exc} (a PEM or DER "
                  "certificate is needed: <data dir>/tls/ca.pem on the fleet server's host)")
        raise typer.Exit(2) from None


def certificate_refused(exc: BaseException) -> str | None:
    """The reason when `exc` is a failed certificate verification, else None."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen.verify_message or str(seen)
        seen = seen.__cause__ or seen.__context__
    return "certificate verify failed" if "CERTIFICATE_VERIFY_FAILED" in str(exc) else None


def describe_ca(ca: Path | None) -> str:
    if ca:
        return f"the CA in {ca}"
    return (f"the system's trusted CAs (no --ca, no LAMPLIGHTER_CA, and no {local_ca_path()})")


def tls_refusal_message(server: str, ca: Path | None, reason: str) -> str:
    """What to tell a person whose client did not accept the server's certificate."""
    return (f"[red]the fleet server at {server} presented a certificate that does not verify "
            f"against {describe_ca(ca)}:[/red] {reason}. Pass the CA that signed the server's "
            "certificate with --ca PATH (or LAMPLIGHTER_CA=PATH); on the server's host it is "
            "<data dir>/tls/ca.pem, printed by `lamplighter server init-tls`. Check too that "
            "--server names a host the certificate covers (init-tls --host).")


class ApiClient:
    """Calls the operator API and turns every failure into a message a person can act on."""

    def __init__(self, server: str | None, token: str | None, ca: Path | str | None = None,
                 timeout: float = 60.0):
        self.server = (server or os.environ.get("LAMPLIGHTER_SERVER")
                       or DEFAULT_SERVER).rstrip("/")
        if not token:
            err.print("[red]no API token:[/red] pass --token or set LAMPLIGHTER_TOKEN "
                      "(an operator creates one with `lamplighter server create-token`)")
            raise typer.Exit(2)
        self.ca = resolve_ca(ca)
        self.verify = ssl_context_for(self.ca)
        self._client = httpx.Client(base_url=self.server, timeout=timeout, verify=self.verify,
                                    headers={"Authorization": f"Bearer {token}"})

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send one request; print the server's reason and exit non-zero on failure."""
        return self.call_or_status(method, path, (), **kwargs)[1]

    def call_or_status(self, method: str, path: str, statuses: tuple[int, ...],
                       **kwargs: Any) -> tuple[int, Any]:
        """Like call(), but an answer whose status is in `statuses` is returned as (status,
        body) instead of ending the command (e.g. 405: this server has no such route)."""
        try:
            resp = self._client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            reason = certificate_refused(exc)
            if reason is not None:
                err.print(tls_refusal_message(self.server, self.ca, reason))
                raise typer.Exit(3) from None
            err.print(f"[red]cannot reach the fleet server at {self.server}:[/red] {exc}. "
                      "Is it running? (`lamplighter server run`, or check --server)")
            raise typer.Exit(3) from None
        try:
            body = resp.json() if resp.content else None
        except ValueError:
            body = resp.text
        if resp.status_code in statuses:
            return resp.status_code, body
        if resp.status_code >= 400:
            hint = {401: " (check the token)", 403: " (this token's role may not do that)"}
            err.print(f"[red]{method} {path} refused ({resp.status_code}):[/red] "
                      f"{refusal_reason(body)}{hint.get(resp.status_code, '')}",
                      markup=True, highlight=False)
            raise typer.Exit(1)
        return resp.status_code, body


def refusal_reason(body: Any) -> str:
    """The server's reason from an error body, readable: FastAPI's validation errors become
    'where: what' (the request body's fields without the leading 'body.'), one per error."""
    from rich.markup import escape

    detail = body.get("detail", body) if isinstance(body, dict) else body
    if isinstance(detail, list):  # FastAPI validation errors
        parts = []
        for d in detail:
            if not isinstance(d, dict):
                parts.append(str(d))
                continue
            loc = [str(p) for p in d.get("loc", [])]
            if loc[:1] == ["body"]:
                loc = loc[1:]
            where = ".".join(loc)
            parts.append(f"{where}: {d.get('msg')}" if where else str(d.get("msg")))
        detail = "; ".join(parts)
    elif not isinstance(detail, str):
        detail = json.dumps(detail)
    return escape(detail)
