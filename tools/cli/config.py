"""`lamplighter config …`: a group's desired configuration and a node's overrides."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from fleet.config_schema import deep_merge, leaves
from tools.cli.api_client import ApiClient, CaOption, ServerOption, TokenOption

config_app = typer.Typer(
    help="Nodes' configuration: a group's desired configuration, and one node's overrides "
         "merged over it. Nodes receive the merged result at their next check-in; `get` and "
         "`drift` show what they report of it (applied, refused and why, drifting).",
    no_args_is_help=True)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

GroupOption = Annotated[str | None, typer.Option(
    "--group", "-g", help="A group's desired configuration.")]
DeviceOption = Annotated[str | None, typer.Option(
    "--device", "-d", help="One node's overrides (merged over its group's configuration).")]


def parse_value(text: str) -> Any:
    """A value as JSON where it parses (40, 2.5, true, null, [1,2], {"a":1}, "quoted"), else
    the text itself as a string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_assignments(items: list[str], what: str, dotted: bool = False) -> dict[str, Any]:
    """{"key": value} from KEY=VALUE items (value as parse_value); with `dotted`, a dotted KEY
    names a nested key (dimming.dim_level=40 -> {"dimming": {"dim_level": 40}}). A bad item is
    a usage error naming it."""
    parsed: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        parts = key.split(".") if dotted else [key]
        if not sep or not all(parts):
            raise typer.BadParameter(f"{item!r} is not KEY=VALUE (e.g. dimming.dim_level=40, "
                                     "log_level=debug, dimming.schedule='[[0,360,20]]')",
                                     param_hint=what)
        nested: Any = parse_value(value)
        for part in reversed(parts):
            nested = {part: nested}
        parsed = deep_merge(parsed, nested)
    return parsed


def _scope(group: str | None, device: str | None) -> tuple[str, str, str]:
    """(scope, target, API path) from exactly one of --group and --device."""
    if (group is None) == (device is None):
        raise typer.BadParameter("give exactly one of --group G and --device ID",
                                 param_hint="--group/--device")
    if group is not None:
        return "group", group, f"/api/v1/groups/{group}/config"
    assert device is not None
    return "device", device, f"/api/v1/devices/{device}/config"


def _print_config(config: dict[str, Any]) -> None:
    if not config:
        out.print("  (no keys)")
        return
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for key in sorted(config):
        table.add_row(f"  {escape(key)}", escape(json.dumps(config[key])))
    out.print(table)


SOURCE_STYLE = {"node": "bold magenta", "group": "bold cyan", "default": "dim"}


def _print_view(view: dict[str, Any], everything: bool) -> None:
    """The desired configuration, key by key with its source (default keys only with
    `everything`), then what a node would refuse of it."""
    scope, target = view["scope"], view["target"]
    if scope == "device":
        applied = view.get("applied_version")
        out.print(f"device {escape(target)} (group {escape(str(view.get('group')))}): its "
                  f"overrides are version {view['version']}; desired configuration version "
                  f"{view['desired_version']}, applied {applied}"
                  + _lag(view), highlight=False)
        _print_reported(view)
    else:
        out.print(f"group {escape(target)}: configuration version {view['version']}")
    keys = view.get("keys") or []
    shown = [k for k in keys if everything or k["source"] != "default"]
    table = Table(box=None, pad_edge=False)
    table.add_column("  key", style="bold")
    table.add_column("value")
    table.add_column("from")
    for k in shown:
        style = SOURCE_STYLE.get(k["source"], "")
        table.add_row(f"  {escape(k['key'])}", escape(json.dumps(k["value"])),
                      f"[{style}]{k['source']}[/{style}]" if style else escape(k["source"]))
    if shown:
        out.print(table)
    hidden = len(keys) - len(shown)
    if not shown:
        out.print("  (nothing set: every key has its default)")
    if hidden:
        out.print(f"  … and {hidden} key(s) at their defaults (--all shows them)")
    for reason in view.get("refused") or []:
        err.print(f"[red]a node would refuse:[/red] {escape(reason)}", highlight=False)


def _lag(view: dict[str, Any]) -> str:
    """What the header says after "applied N": nothing when it is the desired version."""
    if view.get("applied_version") == view["desired_version"]:
        return ""
    if view.get("refused_version") == view["desired_version"]:
        return " (refused by the node)"
    if view.get("drifting"):
        return " (drifting)"
    return " (not yet)"


def _print_reported(view: dict[str, Any]) -> None:
    """The node's own word on its configuration: the version it refused and why, and drift
    (a server that does not report them prints nothing here)."""
    if view.get("refused_version") is not None:
        out.print(f"  [red]the node refused version {view['refused_version']}:[/red] "
                  f"{escape(str(view.get('refused_reason')))}", highlight=False)
    if view.get("drifting"):
        out.print(f"  [yellow]drifting:[/yellow] it reported a version below the desired one "
                  f"at {view.get('behind_checkins')} check-ins in a row "
                  "(`lamplighter config drift` lists every such node)", highlight=False)


NO_READ_ROUTE = ("this fleet server has no route to read a stored configuration (GET {path} "
                 "answers 405)")


@config_app.command("get")
def get_cmd(
    group: GroupOption = None, device: DeviceOption = None,
    everything: Annotated[bool, typer.Option(
        "--all", help="Also list the keys at their defaults.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the server's JSON.")] = False,
    server: ServerOption = None, token: TokenOption = None, ca: CaOption = None,
) -> None:
    """The desired configuration of a group or a node: each key set, with where its value
    comes from (default, group or node; merged key by key), and the versions. For a node, also
    what it reports: the version it applied, a version it refused and its reason, and whether
    it is drifting (behind its desired version for more than two check-ins in a row).

    Where the server cannot show a stored configuration (an older server with no GET route
    for it), says so and shows what it does know: the configuration version each node has
    applied.
    """
    scope, target, path = _scope(group, device)
    api = ApiClient(server, token, ca)
    status, body = api.call_or_status("GET", path, (405,))
    if status != 405:
        if as_json:
            out.print_json(data=body)
            return
        if "keys" in body:
            _print_view(body, everything)
        else:
            out.print(f"{scope} {escape(target)}: configuration version {body.get('version')}")
            _print_config(body.get("config") or {})
        return
    err.print(f"[yellow]{NO_READ_ROUTE.format(path=path)}[/yellow]; what it does know:")
    if scope == "device":
        node = api.call("GET", f"/api/v1/devices/{target}")
        known = {"device_id": node["device_id"], "group": node["group"],
                 "applied_config_version": node["applied_config_version"],
                 "last_seen": node["last_seen"]}
        if as_json:
            out.print_json(data=known)
            raise typer.Exit(1)
        out.print(f"{node['device_id']} (group {escape(node['group'])}) has applied "
                  f"configuration version {node['applied_config_version']} (the sum of its "
                  "group's and its own profile versions; last check-in "
                  f"{node['last_seen'] or 'never'})")
    else:
        nodes = api.call("GET", "/api/v1/devices", params={"group": target, "limit": 10000})
        if as_json:
            out.print_json(data=[{"device_id": n["device_id"],
                                  "applied_config_version": n["applied_config_version"]}
                                 for n in nodes])
            raise typer.Exit(1)
        if not nodes:
            out.print(f"no nodes in group {escape(target)}")
        for n in nodes:
            out.print(f"{n['device_id']} ({escape(n['pole_id'])}): applied configuration "
                      f"version {n['applied_config_version']}")
    out.print("the audit trail names the keys each change set: `lamplighter audit list "
              f"--action config.set --target {scope}:{escape(target)}`")
    raise typer.Exit(1)


@config_app.command("set")
def set_cmd(
    assignments: Annotated[list[str] | None, typer.Argument(
        metavar="KEY=VALUE...", help="Keys to set; a dotted KEY names a nested one "
        "(dimming.dim_level=40); a VALUE is JSON where it parses (40, true, null, [1,2], "
        "{\"a\":1}), else a string.", show_default=False)] = None,
    group: GroupOption = None, device: DeviceOption = None,
    file: Annotated[Path | None, typer.Option(
        "--file", "-f", exists=True, dir_okay=False, readable=True,
        help="A JSON object of keys to set (KEY=VALUE arguments override its keys).")] = None,
    replace: Annotated[bool, typer.Option(
        "--replace", help="Store exactly these keys as the group's configuration (or the "
        "node's overrides): keys not given are removed. Needed where the server cannot "
        "show the stored configuration to merge into.")] = False,
    server: ServerOption = None, token: TokenOption = None, ca: CaOption = None,
) -> None:
    """Set configuration keys of a group (--group) or one node's overrides (--device).

    The given keys are merged key by key into the stored configuration (other keys stay, also
    beside a nested one), or with --replace become the whole of it. Nodes receive the merged
    result at their next check-in. The server checks every key against the node's
    configuration schema; its reason is printed when it refuses a key or a value (422).
    """
    scope, target, path = _scope(group, device)
    keys: dict[str, Any] = {}
    if file is not None:
        try:
            loaded = json.loads(file.read_text())
        except (ValueError, OSError) as exc:
            raise typer.BadParameter(f"{file} is not JSON: {exc}", param_hint="--file") from None
        if not isinstance(loaded, dict):
            raise typer.BadParameter(f"{file} must hold a JSON object of keys",
                                     param_hint="--file")
        keys.update(loaded)
    keys = deep_merge(keys, parse_assignments(assignments or [], "KEY=VALUE", dotted=True))
    if not keys and not replace:
        raise typer.BadParameter("give KEY=VALUE arguments or --file F (or --replace with "
                                 "neither to clear every key)", param_hint="KEY=VALUE")
    api = ApiClient(server, token, ca)
    body = keys
    if not replace:
        status, stored = api.call_or_status("GET", path, (404, 405))
        if status == 405:
            err.print(f"[red]not set:[/red] {NO_READ_ROUTE.format(path=path)}, so the keys "
                      f"cannot be merged into the {scope}'s stored configuration, and setting "
                      "them would remove every other key. Pass --replace to store exactly "
                      f"these keys as the {scope}'s configuration: {escape(json.dumps(keys))}")
            raise typer.Exit(1)
        if status == 404 and scope == "device":
            api.call("GET", f"/api/v1/devices/{target}")  # no such node: its reason, exit 1
        current = stored.get("config") if status == 200 and isinstance(stored, dict) else None
        body = deep_merge(current or {}, keys)
    status, saved = api.call_or_status("PUT", path, (422,), json={"config": body})
    if status == 422:
        from tools.cli.api_client import refusal_reason

        err.print(f"[red]the server refused this configuration (422):[/red] "
                  f"{refusal_reason(saved)}", highlight=False)
        raise typer.Exit(1)
    out.print(f"{scope} {escape(target)}: configuration version {saved['version']} stored; "
              "nodes receive it at their next check-in")
    _print_config(leaves(saved["config"]))


@config_app.command("drift")
def drift_cmd(
    group: Annotated[str | None, typer.Option(
        "--group", "-g", help="Only the nodes of this group.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="At most this many.")] = 100,
    cursor: Annotated[int | None, typer.Option(
        min=1, help="The next page: the cursor the previous page printed.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the server's JSON.")] = False,
    server: ServerOption = None, token: TokenOption = None, ca: CaOption = None,
) -> None:
    """Nodes whose applied configuration has stayed below their desired one for more than two
    check-ins in a row: both versions, the version a node refused and its reason, and its
    last check-in (GET /api/v1/config/drift; a reader token is enough)."""
    from tools.cli.device import _ago

    params: dict[str, Any] = {"group": group, "limit": limit, "cursor": cursor}
    page = ApiClient(server, token, ca).call(
        "GET", "/api/v1/config/drift", params={k: v for k, v in params.items() if v is not None})
    if as_json:
        out.print_json(data=page)
        return
    if not page["nodes"]:
        out.print("no node is drifting" + (f" in group {escape(group)}" if group else ""))
        return
    table = Table("device", "pole", "group", "desired", "applied", "behind", "last check-in",
                  "refused")
    for n in page["nodes"]:
        refused = "" if n["refused_version"] is None else \
            f"[red]v{n['refused_version']}:[/red] {escape(n['refused_reason'] or '')}"
        table.add_row(n["device_id"], escape(n["pole_id"]), escape(n["group"]),
                      str(n["desired_version"]), str(n["applied_version"]),
                      f"{n['behind_checkins']} check-ins", _ago(n["last_seen"]), refused)
    out.print(table)
    out.print(f"{len(page['nodes'])} drifting node(s)")
    if page["next_cursor"] is not None:
        out.print(f"more: add --cursor {page['next_cursor']}")
