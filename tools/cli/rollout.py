"""`lamplighter rollout …`: stage a release across the fleet and watch it."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from tools.cli.api_client import ApiClient, CaOption, ServerOption, TokenOption

rollout_app = typer.Typer(help="Roll a release out in waves, watch it, pause, resume or abort.",
                          no_args_is_help=True)
console = Console()


DEADLINE_STATES = ("offered", "downloading", "installing", "installed")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration_s(text: str) -> int:
    """Seconds from '90', '90s', '30m', '2h' or '1d'."""
    text = text.strip().lower()
    unit = _UNITS.get(text[-1:], None)
    number = text[:-1] if unit else text
    try:
        return int(float(number) * (unit or 1))
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a duration: use e.g. 90s, 30m, 2h") from None


def _deadlines(items: list[str] | None) -> dict[str, int]:
    """--deadline STATE=DURATION options as the API's `deadlines` (unnamed states keep the
    server's defaults)."""
    out: dict[str, int] = {}
    for item in items or []:
        state, sep, value = item.partition("=")
        if not sep or state.strip() not in DEADLINE_STATES:
            raise typer.BadParameter(f"--deadline is STATE=DURATION with STATE one of "
                                     f"{', '.join(DEADLINE_STATES)}, e.g. downloading=2h")
        out[state.strip()] = _duration_s(value)
    return out


def _human_s(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _waves(text: str) -> list[int]:
    try:
        waves = [int(p) for p in text.split(",")]
    except ValueError:
        raise typer.BadParameter("waves are comma-separated percentages, e.g. 5,25,100") from None
    return waves


# What an operator can do about a node's refusal (its detail starts with the reason code).
REFUSAL_HINTS = {
    "unknown_key": "the node does not trust key {arg}: re-provision it with --release-keys, or "
                   "ship a rotation signed by a key it trusts (lamplighter release rotate "
                   "--upload)",
    "revoked_key": "key {arg} is revoked on the node: sign the release with a key it trusts",
    "bad_signature": "the bundle's signature does not verify: sign it again and upload the "
                     "new bundle",
    "rollback": "the node runs a newer sequence: sign the release with a higher --sequence",
    "expired": "the manifest has expired: build it again with a later --expires-days",
    "clock_unset": "the node's clock is not set: it cannot judge expiry until it checks in",
    "wrong_board": "the release does not list this node's board ({arg}): build it with --board",
    "wrong_hardware": "the release does not list this node's hardware revision ({arg})",
    "over_budget": "the download took far more bytes than the bundle: look for a proxy or "
                   "server that restarts or pads downloads",
    "not_announced": "the bundle served is not the release offered: check the artifact store",
    "timeout": "the node stopped reporting within its deadline (switched off, offline, stuck): "
               "check its power and link; it is still offered the update, and a later report "
               "from it still counts",
    "version_mismatch": "the node reported committed but runs another version: look at its "
                        "boot log (a rollback the bootloader made, or a release built with the "
                        "wrong version)",
}


def refusal_hint(detail: str) -> str:
    """What to do about a node's refusal, from its `<reason>: <detail>` text ("" if unknown)."""
    reason, _, rest = detail.partition(":")
    hint = REFUSAL_HINTS.get(reason.strip())
    if hint is None:
        return ""
    arg = rest.strip().split(" ")[0] if rest.strip() else "?"
    return hint.format(arg=arg)


def print_rollout(r: dict[str, Any]) -> None:
    """A rollout's state, its deadlines and a table of its waves (timeouts among the failed)."""
    colour = {"active": "green", "paused": "yellow", "aborted": "red",
              "completed": "cyan"}.get(r["state"], "white")
    console.print(f"rollout {r['id']} of {r['version']} [{colour}]{r['state']}[/{colour}]"
                  f"{' — ' + r['state_reason'] if r['state_reason'] else ''}; "
                  f"current wave {r['wave']}; target {json.dumps(r['target'])}")
    deadlines = r.get("deadlines") or {}
    if deadlines:
        window = r.get("window")
        console.print("deadlines: " + ", ".join(
            f"{k} {_human_s(deadlines[k])}" for k in DEADLINE_STATES if k in deadlines)
            + (f" (window time only: {window['start_hour']}-{window['end_hour']} "
               f"{window.get('tz', 'UTC')}, which nodes also keep to)" if window else "")
            + (f"; precedence {r['priority']:+d}" if r.get("priority") else ""))
    table = Table("wave", "percent", "planned", "members", "offered", "committed", "failed",
                  "timed out", "in progress")
    for w in r["waves"]:
        s = w["states"]
        failed = w.get("failed", sum(s.get(k, 0) for k in ("failed", "rolled_back", "refused",
                                                              "timeout")))
        busy = sum(s.get(k, 0) for k in ("offered", "downloading", "installing", "installed"))
        offered = sum(n for k, n in s.items() if k not in ("planned", "skipped", "superseded"))
        marker = " ←" if w["wave"] == r["wave"] else ""
        timed = w.get("timed_out", s.get("timeout", 0))
        table.add_row(f"{w['wave']}{marker}", f"{w['percent']} %", str(w["planned"]),
                      str(w.get("members", w["planned"])), str(offered),
                      str(s.get("committed", 0)), str(failed),
                      f"[red]{timed}[/red]" if timed else "0", str(busy))
    console.print(table)


@rollout_app.command("create")
def create(
    release_id: Annotated[int, typer.Argument(
        help="Release id (see `lamplighter rollout releases`).")],
    waves: Annotated[str, typer.Option(
        help="Cumulative percentages; the first is the canary.")] = "10,50,100",
    group: Annotated[str | None, typer.Option(help="Only nodes in this group.")] = None,
    district: Annotated[str | None, typer.Option(help="Only nodes in this district.")] = None,
    board: Annotated[str | None, typer.Option(help="Only this board type.")] = None,
    tag: Annotated[str | None, typer.Option(help="Only nodes with this tag.")] = None,
    from_version: Annotated[str | None, typer.Option(
        help="Only nodes running this version.")] = None,
    failure_threshold: Annotated[float, typer.Option(
        help="Pause when this % of a wave fails.")] = 20.0,
    success_threshold: Annotated[float | None, typer.Option(
        help="Advance when this % of the wave committed; 0 = advance by hand.")] = 90.0,
    window: Annotated[str | None, typer.Option(
        help="Only offer the update between these local hours, e.g. 9-16 (daytime).")] = None,
    tz: Annotated[str, typer.Option(help="Time zone of --window, e.g. Europe/London.")] = "UTC",
    downgrade: Annotated[bool, typer.Option(help="Allow offering an older version (signed "
                                               "downgrade with a higher sequence).")] = False,
    name: Annotated[str, typer.Option(help="A name for the dashboard.")] = "",
    deadline: Annotated[list[str] | None, typer.Option(
        "--deadline", metavar="STATE=DURATION",
        help="How long a node may stay in a state before it counts as failed (timeout), "
             "e.g. downloading=2h; repeat for each state: offered (also: a node of the "
             "current wave not yet offered), downloading, installing, installed. Defaults "
             "1h, 2h, 30m, 30m; with --window only window time counts.")] = None,
    precedence: Annotated[str | None, typer.Option(
        help="When the target shares nodes with an active or paused rollout (refused "
             "otherwise): 'new' offers this one first on those nodes, 'existing' lets the "
             "other finish there first.")] = None,
    server: ServerOption = None, token: TokenOption = None, ca: CaOption = None,
) -> None:
    """Start offering a release to the matching nodes, canary wave first.

    The window travels with the offer: nodes download, install and reboot only inside it.
    """
    body: dict[str, Any] = {
        "release_id": release_id, "name": name, "waves": _waves(waves),
        "target": {k: v for k, v in {"group": group, "district": district, "board": board,
                                     "tag": tag, "from_version": from_version}.items() if v},
        "failure_threshold_pct": failure_threshold,
        "success_threshold_pct": success_threshold or None, "allow_downgrade": downgrade}
    if deadline:
        body["deadlines"] = _deadlines(deadline)
    if precedence is not None:
        if precedence not in ("new", "existing"):
            raise typer.BadParameter("--precedence is 'new' or 'existing'")
        body["precedence"] = precedence
    if window:
        try:
            start, end = (int(x) for x in window.split("-"))
        except ValueError:
            raise typer.BadParameter("--window is START-END in hours, e.g. 9-16") from None
        body["window"] = {"start_hour": start, "end_hour": end, "tz": tz}
    print_rollout(ApiClient(server, token, ca).call("POST", "/api/v1/rollouts", json=body))


@rollout_app.command("status")
def status(rollout_id: Annotated[int | None, typer.Argument(
    help="Rollout id; all when omitted.")] = None,
           nodes: Annotated[bool, typer.Option(
               help="Also list every node's update state (timeouts in red, with what the "
                    "node last reported).")] = False,
           planned: Annotated[bool, typer.Option(
               help="With --nodes, also the members not offered yet.")] = False,
           server: ServerOption = None, token: TokenOption = None,
                ca: CaOption = None) -> None:
    """Show a rollout's waves and counts, timeouts included (or every rollout).

    Reading a rollout is when the server marks nodes past their deadline as timed out."""
    api = ApiClient(server, token, ca)
    if rollout_id is None:
        for r in api.call("GET", "/api/v1/rollouts"):
            print_rollout(r)
        return
    print_rollout(api.call("GET", f"/api/v1/rollouts/{rollout_id}"))
    if nodes:
        table = Table("node", "wave", "state", "reported", "detail", "updated")
        hints = set()
        params = {"planned": "true"} if planned else None
        for n in api.call("GET", f"/api/v1/rollouts/{rollout_id}/nodes", params=params):
            state = f"[red]{n['state']}[/red]" if n["state"] == "timeout" else n["state"]
            table.add_row(n["device_id"], str(n["wave"]), state, n.get("reported", ""),
                          n["detail"], n["updated_at"][:19])
            if n["state"] in ("refused", "timeout", "failed"):
                hints.add(refusal_hint(n["detail"] or ""))
        console.print(table)
        for hint in sorted(h for h in hints if h):
            console.print(f"[yellow]what to do:[/yellow] {hint}")


def _action(action: str, help_text: str) -> None:
    def command(rollout_id: Annotated[int, typer.Argument(help="Rollout id.")],
                server: ServerOption = None, token: TokenOption = None,
                ca: CaOption = None) -> None:
        print_rollout(ApiClient(server, token, ca).call("POST",
                                                    f"/api/v1/rollouts/{rollout_id}/{action}"))

    command.__doc__ = help_text
    rollout_app.command(action)(command)


_action("pause", "Stop offering the release to more nodes (nodes mid-update finish).")
_action("resume", "Offer the release again after a pause.")
_action("abort", "End the rollout for good; no further node is offered the release.")
_action("advance", "Move to the next wave now, without waiting for the success threshold.")


@rollout_app.command("releases")
def releases(server: ServerOption = None, token: TokenOption = None,
                ca: CaOption = None) -> None:
    """List the releases the server holds."""
    table = Table("id", "version", "sequence", "kind", "boards", "key", "size", "uploaded")
    for r in ApiClient(server, token, ca).call("GET", "/api/v1/releases"):
        table.add_row(str(r["id"]), r["version"], str(r["sequence"]), r["kind"],
                      ",".join(r["boards"]), r["key_id"], f"{r['bundle_size']:,}",
                      r["created_at"][:19])
    console.print(table)
