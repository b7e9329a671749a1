"""`lamplighter command …`: queue a command for a node and follow its delivery."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tools.cli.api_client import ApiClient, CaOption, ServerOption, TokenOption
from tools.cli.config import parse_assignments

command_app = typer.Typer(
    help="Commands for one node (reboot, identify, lamp_override): delivered at its next "
         "check-in, until it answers them (ok with a result, or refused with a reason) or "
         "they expire.",
    no_args_is_help=True)
out = Console(soft_wrap=True)

DeviceIdArgument = Annotated[str, typer.Argument(help="The node's device id (ll-…).")]


def _when(text: str | None) -> str:
    return text[:19].replace("T", " ") if text else ""


def _args(args: dict[str, Any]) -> str:
    return json.dumps(args, separators=(",", ":")) if args else ""


@command_app.command("send")
def send_cmd(
    device_id: DeviceIdArgument,
    command_type: Annotated[str, typer.Argument(
        metavar="TYPE", help="reboot, identify or lamp_override.", show_default=False)],
    arg: Annotated[list[str] | None, typer.Option(
        "--arg", "-a", help="An argument as KEY=VALUE (VALUE is JSON where it parses, else a "
        "string); repeat for several, e.g. lamp_override --arg level_pct=100 --arg "
        "minutes=10.")] = None,
    expires_in: Annotated[int | None, typer.Option(
        "--expires-in", metavar="SECONDS", help="Expire the command if the node has not "
        "answered it within SECONDS (60 to 604800; the server's default is a day): an expired "
        "command is no longer delivered.", show_default=False)] = None,
    server: ServerOption = None, token: TokenOption = None, ca: CaOption = None,
) -> None:
    """Queue a command for a node; it is delivered at the node's next check-in (an operator
    token). The server's reason is printed when it refuses the type or an argument."""
    args = parse_assignments(arg or [], "--arg")
    body: dict[str, Any] = {"type": command_type, "args": args}
    if expires_in is not None:
        body["expires_in_s"] = expires_in
    sent = ApiClient(server, token, ca).call(
        "POST", f"/api/v1/devices/{device_id}/commands", json=body)
    what = " ".join(filter(None, (sent["type"], _args(sent["args"]))))
    out.print(f"command {sent['id']} ({escape(what)}) "
              f"queued for {sent['device_id']}: delivered at its next check-in, unless it "
              f"expires first ({_when(sent['expires_at'])} UTC); follow it "
              f"with `lamplighter command list {sent['device_id']}`")


@command_app.command("list")
def list_cmd(
    device_id: DeviceIdArgument,
    as_json: Annotated[bool, typer.Option("--json", help="Print the server's JSON.")] = False,
    server: ServerOption = None, token: TokenOption = None, ca: CaOption = None,
) -> None:
    """A node's commands, newest first: each one's state (queued, delivered, acked,
    expired), when it was queued, delivered and acknowledged, and the node's answer: its
    result, or its reason for refusing (a reader token is enough)."""
    commands = ApiClient(server, token, ca).call("GET", f"/api/v1/devices/{device_id}/commands")
    if as_json:
        out.print_json(data=commands)
        return
    if not commands:
        out.print(f"no commands for {device_id}")
        return
    table = Table("id", "type", "args", "state", "queued (UTC)", "delivered", "acknowledged",
                  "answer")
    for c in commands:
        state = c["state"]
        delivered = _when(c["delivered_at"]) or ("[yellow]waiting[/yellow]"
                                                 if state == "queued" else "")
        acked = _when(c["acked_at"]) or ("[yellow]not yet[/yellow]" if state == "delivered"
                                         else "")
        table.add_row(str(c["id"]), escape(c["type"]), escape(_args(c["args"])),
                      _STATE_STYLE.get(state, "{}").format(state), _when(c["created_at"]),
                      delivered, acked, _answer(c))
    out.print(table)


_STATE_STYLE = {"acked": "[green]{}[/green]", "expired": "[red]{}[/red]"}


def _answer(c: dict[str, Any]) -> str:
    """The node's answer: its result, or its reason for refusing ("" before it answers)."""
    if c["ok"] is False:
        return f"[red]refused[/red]: {escape(c['reason'])}"
    return escape(c["result"])
