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
         "check-in, until it acknowledges them.",
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
    server: ServerOption = None, token: TokenOption = None, ca: CaOption = None,
) -> None:
    """Queue a command for a node; it is delivered at the node's next check-in (an operator
    token). The server's reason is printed when it refuses the type or an argument."""
    args = parse_assignments(arg or [], "--arg")
    sent = ApiClient(server, token, ca).call(
        "POST", f"/api/v1/devices/{device_id}/commands",
        json={"type": command_type, "args": args})
    what = " ".join(filter(None, (sent["type"], _args(sent["args"]))))
    out.print(f"command {sent['id']} ({escape(what)}) "
              f"queued for {sent['device_id']}: delivered at its next check-in; follow it "
              f"with `lamplighter command list {sent['device_id']}`")


@command_app.command("list")
def list_cmd(
    device_id: DeviceIdArgument,
    as_json: Annotated[bool, typer.Option("--json", help="Print the server's JSON.")] = False,
    server: ServerOption = None, token: TokenOption = None, ca: CaOption = None,
) -> None:
    """A node's commands, newest first: when each was queued, delivered and acknowledged,
    and the node's result (a reader token is enough)."""
    commands = ApiClient(server, token, ca).call("GET", f"/api/v1/devices/{device_id}/commands")
    if as_json:
        out.print_json(data=commands)
        return
    if not commands:
        out.print(f"no commands for {device_id}")
        return
    table = Table("id", "type", "args", "queued (UTC)", "delivered", "acknowledged", "result")
    for c in commands:
        delivered = _when(c["delivered_at"]) or "[yellow]waiting[/yellow]"
        acked = _when(c["acked_at"]) or ("[yellow]not yet[/yellow]" if c["delivered_at"]
                                         else "")
        table.add_row(str(c["id"]), escape(c["type"]), escape(_args(c["args"])),
                      _when(c["created_at"]), delivered, acked, escape(c["result"]))
    out.print(table)
