"""`lamplighter audit …`: read the fleet server's trail of operator actions."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tools.cli.api_client import (
    ApiClient,
    CaOption,
    ServerOption,
    SinceOption,
    TokenOption,
    UntilOption,
)

audit_app = typer.Typer(help="Who did which operator action to what, when, and the outcome.",
                        no_args_is_help=True)
console = Console()


def _when(text: str | None, option: str) -> str | None:
    """An ISO 8601 time, checked here so a typo is named before the server is asked."""
    if text is None:
        return None
    try:
        datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"{option} takes an ISO 8601 time, e.g. 2026-11-30T06:00:00Z "
                                 "(no time zone: UTC)") from None
    return text


def outcome_text(record: dict[str, Any]) -> str:
    """"ok", or "refused <status>: <reason>" (no status for a refusal on the server's CLI)."""
    if record["outcome"] == "ok":
        return "[green]ok[/green]"
    status = f" {record['status']}" if record["status"] is not None else ""
    return f"[red]refused{status}[/red]: {escape(record['reason'])}"


@audit_app.command("list")
def list_records(
    actor: Annotated[str | None, typer.Option(
        help="Token name, or local:<user> for the server's CLI; a trailing * matches a "
             "prefix.")] = None,
    target: Annotated[str | None, typer.Option(
        help="e.g. device:ll-3f9a0c21d4e5, group:harbour, rollout:3, token:grafana; a "
             "trailing * matches a prefix (device:*).")] = None,
    action: Annotated[str | None, typer.Option(
        help="e.g. config.set, command.send, rollout.* (a trailing * matches a prefix).")] = None,
    refused: Annotated[bool, typer.Option(
        "--refused", help="Only the refused actions.")] = False,
    since: SinceOption = None,
    until: UntilOption = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="At most this many.")] = 50,
    cursor: Annotated[int | None, typer.Option(
        min=1, help="Older records: the cursor the previous page printed.")] = None,
    server: ServerOption = None, token: TokenOption = None, ca: CaOption = None,
) -> None:
    """The operator actions, newest first (an operator token reads them)."""
    params: dict[str, Any] = {"actor": actor, "target": target, "action": action,
                              "outcome": "refused" if refused else None,
                              "since": _when(since, "--since"), "until": _when(until, "--until"),
                              "limit": limit, "cursor": cursor}
    page = ApiClient(server, token, ca).call(
        "GET", "/api/v1/audit", params={k: v for k, v in params.items() if v is not None})
    table = Table("time (UTC)", "actor", "action", "target", "outcome", "detail")
    for r in page["records"]:
        detail = json.dumps(r["detail"], separators=(",", ":")) if r["detail"] else ""
        table.add_row(r["at"][:19].replace("T", " "), escape(r["actor"]), r["action"],
                      escape(r["target"]), outcome_text(r), escape(detail))
    if not page["records"]:
        console.print("no audit records match")
        return
    console.print(table)
    if page["next_cursor"] is not None:
        console.print(f"older records: add --cursor {page['next_cursor']}")
