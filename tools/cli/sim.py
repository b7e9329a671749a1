"""`lamplighter sim` and `lamplighter demo`: emulated lampposts against a live fleet server."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import httpx
import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from tools.cli.api_client import (
    DEFAULT_SERVER,
    CaOption,
    ServerOption,
    TokenOption,
    certificate_refused,
    resolve_ca,
    ssl_context_for,
    tls_refusal_message,
)

if TYPE_CHECKING:
    from tools.emulator.fleet_process import FleetServer
    from tools.emulator.sim import Verify

console = Console()
err = Console(stderr=True, soft_wrap=True)


def _fleet_table(server: str, token: str, poles: list[str], verify: Verify = True) -> Table:
    table = Table("pole", "node", "state", "firmware", "lamp", "queue", "faults", "last seen",
                  title=f"emulated lampposts → {server}")
    try:
        resp = httpx.get(f"{server}/api/v1/devices?limit=10000", verify=verify,
                         headers={"Authorization": f"Bearer {token}"}, timeout=5)
        nodes = {n["pole_id"]: n for n in resp.json()} if resp.status_code == 200 else {}
    except httpx.HTTPError:
        nodes = {}
    for pole in poles:
        n = nodes.get(pole)
        if n is None:
            table.add_row(pole, "", "[yellow]unknown[/yellow]", "", "", "", "", "")
            continue
        status = n["last_status"]
        faults = ", ".join(f"{k}:{v}" for k, v in (status.get("sensor_faults") or {}).items()
                           if v)
        state = "[green]online[/green]" if n["online"] else "[yellow]waiting[/yellow]"
        lamp = status.get("lamp_level_pct")
        table.add_row(pole, n["device_id"], state, n["fw_version"],
                      "" if lamp is None else f"{lamp:.0f} %", str(status.get("queue_len", "")),
                      faults, (n["last_seen"] or "")[11:19])
    return table


def run_sim(server: str, token: str, nodes: int, root: Path, speed: float, prefix: str,
            checkin_interval_s: int, duration_s: float | None,
            release_keys: list[Path] | None = None, *, verify: Verify = True,
            ca_der: bytes | None = None, insecure_http: bool = False) -> None:
    """Boot the fleet and show it until Ctrl-C (or `duration_s`).

    `verify` is what the server's certificate must chain to; `ca_der` the CA the lampposts pin;
    `insecure_http` lets them talk to a plain http:// server.
    """
    from ota.errors import OtaError
    from tools.emulator.sim import release_key_set, start_fleet

    try:
        keys = release_key_set(release_keys) if release_keys else None
    except OtaError as exc:
        err.print(f"[red]cannot read a release key:[/red] {exc}")
        raise typer.Exit(2) from None
    if keys is None:
        err.print("[yellow]no --release-key: the lampposts will refuse every release "
                  "(unknown_key)[/yellow]")
    console.print(f"booting {nodes} emulated lamppost(s) (MicroPython unix port) in {root} …")
    try:
        fleet = start_fleet(server, token, nodes, root, prefix=prefix, speed=speed,
                            checkin_interval_s=checkin_interval_s, keys=keys, verify=verify,
                            ca_der=ca_der, insecure_http=insecure_http)
    except (httpx.HTTPError, RuntimeError) as exc:
        err.print(f"[red]cannot start the fleet:[/red] {exc}")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:  # stopped while booting: start_fleet powered off what it started
        console.print("emulated lampposts powered off")
        return
    poles = [n.pole_id for n in fleet.nodes]
    started = time.monotonic()
    try:
        with Live(_fleet_table(server, token, poles, verify), console=console,
                  refresh_per_second=1) as live:
            while duration_s is None or time.monotonic() - started < duration_s:
                time.sleep(2)
                live.update(_fleet_table(server, token, poles, verify))
    except KeyboardInterrupt:
        pass
    finally:
        fleet.stop()
        console.print("emulated lampposts powered off")


def sim(
    nodes: Annotated[int, typer.Option(
        "--nodes", "-n", min=1, max=200, help="How many lampposts.")] = 3,
    server: ServerOption = None,
    token: TokenOption = None,
    ca: CaOption = None,
    root: Annotated[Path, typer.Option(
        help="Where each node's flash directory lives.")] = Path("var/sim"),
    speed: Annotated[float, typer.Option(min=0.1, max=1000,
                                help="Virtual time per real second (1 = real time).")] = 1.0,
    prefix: Annotated[str, typer.Option(help="Pole id prefix: SIM-0001, SIM-0002, …")] = "SIM",
    checkin_interval_s: Annotated[int, typer.Option(min=10, help="Nodes' check-in interval.")] = 30,
    duration_s: Annotated[float | None, typer.Option(help="Stop after this many seconds.")] = None,
    release_key: Annotated[list[Path] | None, typer.Option(
        "--release-key", help="Release public key (PEM, raw or hex) the lampposts trust; "
        "repeat for several. Pinned when a lamppost's flash has no key set yet.")] = None,
) -> None:
    """Start N emulated lampposts (real MicroPython processes) reporting to a fleet server.

    Each node is registered once (with an operator or technician token) and keeps its identity
    and its release key set in its flash directory, so a second run reuses the same nodes.
    Against an https server the lampposts pin the CA of --ca (default ./var/tls/ca.pem).
    """
    if not token:
        err.print("[red]no API token:[/red] pass --token or set LAMPLIGHTER_TOKEN")
        raise typer.Exit(2)
    url = (server or DEFAULT_SERVER).rstrip("/")
    ca_path = resolve_ca(ca)
    verify = ssl_context_for(ca_path)
    ca_der = None
    if url.startswith("https://"):
        if ca_path is None:
            err.print("[red]the lampposts need the CA that signed the server's certificate "
                      "to pin:[/red] pass --ca (or LAMPLIGHTER_CA); on the server's host it is "
                      "<data dir>/tls/ca.pem")
            raise typer.Exit(2)
        from fleet.core.tls import ca_der_of

        try:
            ca_der = ca_der_of(ca_path.read_bytes())
        except ValueError as exc:
            err.print(f"[red]cannot read the CA certificate {ca_path}:[/red] {exc}")
            raise typer.Exit(2) from None
        _check_server_certificate(url, verify, ca_path)
    else:
        err.print(f"[yellow]warning: {url} is plain HTTP; the emulated lampposts are told to "
                  "accept it (a node in the street refuses a server without TLS)[/yellow]")
    from tools.cli.lifecycle import stop_children_on_signals

    with stop_children_on_signals():  # SIGTERM powers the lampposts off, as Ctrl-C does
        try:
            run_sim(url, token, nodes, root, speed, prefix, checkin_interval_s, duration_s,
                    release_key, verify=verify, ca_der=ca_der,
                    insecure_http=not url.startswith("https://"))
        except KeyboardInterrupt:  # while they were booting: those started are stopped
            pass


def _check_server_certificate(url: str, verify: Verify, ca: Path | None) -> None:
    """Exit with a message when the server's certificate does not chain to `ca`."""
    try:
        httpx.get(f"{url}/api/v1/healthz", verify=verify, timeout=10)
    except httpx.HTTPError as exc:
        reason = certificate_refused(exc)
        if reason is not None:
            err.print(tls_refusal_message(url, ca, reason))
            raise typer.Exit(3) from None


def demo(
    nodes: Annotated[int, typer.Option(
        "--nodes", "-n", min=0, max=50, help="Emulated lampposts.")] = 3,
    port: Annotated[int, typer.Option(help="Port of the fleet server.")] = 8000,
    duration_s: Annotated[float | None, typer.Option(help="Stop after this many seconds.")] = None,
    release_key: Annotated[Path | None, typer.Option(
        help="Release public key the server and the lampposts trust (default: the "
        "demo's own key, made on first run in <data dir>/keys/demo-release.pem).")] = None,
) -> None:
    """The fleet server on its embedded SQLite (./var) with emulated lampposts reporting to it.

    The server speaks HTTPS with the CA and certificate in ./var/tls (made on the first run);
    the lampposts pin that CA.

    The server and the lampposts trust one release key: sign a release with it (or rotate from
    it to your own, `lamplighter release rotate`) and roll it out to group `sim`.
    """
    from tools.cli.lifecycle import require_free_port, stop_children_on_signals

    require_free_port("127.0.0.1", port)
    with stop_children_on_signals():
        try:
            _demo(nodes, port, duration_s, release_key)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM before the lampposts ran: all stopped
            pass


def _demo(nodes: int, port: int, duration_s: float | None, release_key: Path | None) -> None:
    from alembic.util.exc import CommandError
    from sqlalchemy.exc import SQLAlchemyError

    from tools.emulator.fleet_process import start_fleet_server
    from tools.emulator.sim import demo_release_key

    data_dir = Path(os.environ.get("LAMPLIGHTER_DATA_DIR", "var"))
    private = None
    if release_key is None:
        private, release_key = demo_release_key(data_dir)
    console.print(f"starting the fleet server on https://127.0.0.1:{port} (data in {data_dir})")
    try:
        # the demo's lampposts check in every 30 s, so a rollout is seen through in minutes
        server = start_fleet_server(data_dir, port=port, extra_env={
            "LAMPLIGHTER_CHECKIN_INTERVAL_S": os.environ.get("LAMPLIGHTER_CHECKIN_INTERVAL_S",
                                                             "30")})
    except RuntimeError as exc:
        err.print(f"[red]the fleet server did not start:[/red] {exc}")
        raise typer.Exit(1) from None
    except (CommandError, SQLAlchemyError) as exc:  # migrating its database failed
        newer = ("; a newer version of Lamplighter migrated it: run that version, or move "
                 f"{data_dir} aside") if "Can't locate revision" in str(exc) else ""
        err.print(f"[red]cannot migrate the demo's database in {data_dir}:[/red] "
                  f"{getattr(exc, 'orig', None) or exc}{newer}")
        raise typer.Exit(2) from None
    try:
        _demo_with(server, data_dir, nodes, duration_s, release_key, private)
    finally:
        server.stop()
        console.print("fleet server stopped")


def _demo_with(server: FleetServer, data_dir: Path, nodes: int, duration_s: float | None,
               release_key: Path, private: Path | None) -> None:
    from tools.emulator.sim import trust_on_server

    assert server.tls is not None
    console.print(f"dashboard: {server.url}/dashboard   API docs: {server.url}/docs")
    console.print(f"the server's CA: {server.tls.ca_cert} (the CLI trusts it when run from "
                  f"here, or with --ca / LAMPLIGHTER_CA; browsers warn until you import it)",
                  soft_wrap=True)
    console.print(f"operator token (for the dashboard and the CLI): {server.operator_token}")
    try:
        kid = trust_on_server(server.url, server.operator_token, release_key, "demo release key",
                              verify=server.ssl_context)
    except (RuntimeError, httpx.HTTPError, OSError) as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    signing = f"; sign with {private}" if private else ""
    console.print(f"release key {kid} ({release_key}): trusted by the server and the "
                  f"lampposts{signing}")
    try:
        if nodes:
            run_sim(server.url, server.operator_token, nodes, data_dir / "sim", 1.0, "DEMO", 30,
                    duration_s, [release_key], verify=server.ssl_context, ca_der=server.ca_der)
        else:
            while duration_s is None or duration_s > 0:
                time.sleep(1)
                duration_s = None if duration_s is None else duration_s - 1
    except KeyboardInterrupt:
        pass
