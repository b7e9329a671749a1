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
    """A rollout's state and a table of its waves."""
    colour = {"active": "green", "paused": "yellow", "aborted": "red",
              "completed": "cyan"}.get(r["state"], "white")
    console.print(f"rollout {r['id']} of {r['version']} [{colour}]{r['state']}[/{colour}]"
                  f"{' — ' + r['state_reason'] if r['state_reason'] else ''}; "
                  f"current wave {r['wave']}; target {json.dumps(r['target'])}")
    table = Table("wave", "percent", "planned", "offered", "committed", "failed", "in progress")
    for w in r["waves"]:
        s = w["states"]
        failed = sum(s.get(k, 0) for k in ("failed", "rolled_back", "refused"))
        busy = sum(s.get(k, 0) for k in ("offered", "downloading", "installing", "installed"))
        marker = " ←" if w["wave"] == r["wave"] else ""
        table.add_row(f"{w['wave']}{marker}", f"{w['percent']} %", str(w["planned"]),
                      str(sum(s.values())), str(s.get("committed", 0)), str(failed), str(busy))
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
    server: ServerOption = None, token: TokenOption = None, ca: CaOption = None,
) -> None:
    """Start offering a release to the matching nodes, canary wave first."""
    body: dict[str, Any] = {
        "release_id": release_id, "name": name, "waves": _waves(waves),
        "target": {k: v for k, v in {"group": group, "district": district, "board": board,
                                     "tag": tag, "from_version": from_version}.items() if v},
        "failure_threshold_pct": failure_threshold,
        "success_threshold_pct": success_threshold or None, "allow_downgrade": downgrade}
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
               help="Also list every node's update state.")] = False,
           server: ServerOption = None, token: TokenOption = None,
                ca: CaOption = None) -> None:
    """Show a rollout's waves and counts (or every rollout)."""
    api = ApiClient(server, token, ca)
    if rollout_id is None:
        for r in api.call("GET", "/api/v1/rollouts"):
            print_rollout(r)
        return
    print_rollout(api.call("GET", f"/api/v1/rollouts/{rollout_id}"))
    if nodes:
        table = Table("node", "wave", "state", "detail", "updated")
        hints = set()
        for n in api.call("GET", f"/api/v1/rollouts/{rollout_id}/nodes"):
            table.add_row(n["device_id"], str(n["wave"]), n["state"], n["detail"],
                          n["updated_at"][:19])
            if n["state"] == "refused":
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
