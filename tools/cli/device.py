"""`lamplighter device …`: list and show nodes; flash, provision, self-test, monitor, factory
image, emulate, keys."""

from __future__ import annotations

import json
import tempfile
from collections import deque
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn
from rich.table import Table

from tools.cli.api_client import (
    ApiClient,
    CaOption,
    ServerOption,
    SinceOption,
    TokenOption,
    UntilOption,
)

device_app = typer.Typer(help="The fleet's nodes: list and show them (operators), and the "
                              "technician's tools for one node: flash, provision, emulate, "
                              "monitor, keys.",
                         no_args_is_help=True)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

PORT_OPTION = typer.Option(
    "--port", "-p", help="Serial port of the node: /dev/ttyUSB0, /dev/ttyACM0, COM3, or an "
                         "emulated node's /dev/pts/N (`lamplighter device console`).")


FLEET_CA_OPTION = typer.Option(
    "--ca", envvar="LAMPLIGHTER_CA", dir_okay=False,
    help="The fleet CA certificate (PEM or DER): pinned on the node as /fleet_ca.der, which "
         "it checks the server's certificate against, and checked by this tool too (env "
         "LAMPLIGHTER_CA; default DATA_DIR/tls/ca.pem, made by `lamplighter server init-tls`). "
         "An https:// server without one is refused.")
INSECURE_OPTION = typer.Option(
    "--insecure", help="Allow a plain http:// --server (a lab or test server only): the node "
                       "then talks to it unencrypted. Prints a warning and marks the node's "
                       "identity \"insecure_http\": true; without it an http:// server is "
                       "refused.")


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}")
    return typer.Exit(code)


def _fleet_link(server: str | None, token: str | None, ca: Path | None,
                insecure: bool) -> tuple[ApiClient, bytes | None]:
    """The API client and the fleet CA (DER) to pin, once the server URL and CA pass
    provisioning.check_link; prints the warning for an allowed http:// server."""
    import atexit
    import os
    import ssl

    from tools.technician.provisioning import (
        INSECURE_WARNING,
        ProvisionError,
        check_link,
        default_fleet_ca,
        load_fleet_ca,
    )

    ca_path = ca or default_fleet_ca()
    pem = ca_path
    try:
        ca_der = load_fleet_ca(ca_path) if ca_path else None
    except ProvisionError as exc:
        raise _fail(str(exc)) from None
    if ca_path is not None and b"-----BEGIN" not in ca_path.read_bytes():
        # a DER CA: this tool's own TLS check takes PEM
        fd, name = tempfile.mkstemp(suffix=".pem")
        with os.fdopen(fd, "w") as f:
            f.write(ssl.DER_cert_to_PEM_cert(ca_der))
        atexit.register(os.unlink, name)
        pem = Path(name)
    api = ApiClient(server, token, ca=pem)
    try:
        if ca_der is None and api.ca is not None:
            ca_der = load_fleet_ca(api.ca)
        link = check_link(api.server, ca_der, insecure)
    except ProvisionError as exc:
        raise _fail(str(exc)) from None
    if link.get("insecure_http"):
        err.print(f"[bold red]{INSECURE_WARNING.format(server=api.server)}[/bold red]")
    return api, ca_der


WIFI_OPTION = typer.Option(
    "--wifi", dir_okay=False,
    help="File with the street's Wi-Fi network, written to the node as /wifi.json: JSON "
         "{\"ssid\": \"<name>\", \"password\": \"<passphrase>\"} or two lines ssid=<name> and "
         "password=<passphrase> (empty passphrase: an open network). Without it, an ESP32's "
         "network is asked on the terminal (the passphrase hidden, twice). The passphrase is "
         "never taken on the command line, and never shown.")
NO_WIFI_OPTION = typer.Option(
    "--no-wifi", help="Write no wifi.json: a bench node that deliberately has no Wi-Fi, or an "
                      "image whose network is written later. An ESP32 so made cannot reach "
                      "the server until it has one.")


def _wifi_from_file(path: Path) -> bytes:
    """The wifi.json bytes from --wifi FILE; says which network (never the passphrase)."""
    from tools.technician import wifi as wifi_mod

    creds = wifi_mod.read_file(path)  # WifiError (a ValueError) names the format
    if wifi_mod.readable_by_others(path):
        err.print(f"[yellow]note:[/yellow] {path} holds a Wi-Fi passphrase and other users can "
                  f"read it: chmod 600 {path}")
    return _chosen(creds)


def _chosen(creds: Any) -> bytes:
    from tools.technician.wifi import OPEN_WARNING

    out.print(f"wifi.json: {creds.describe()}")
    if creds.open:
        err.print(f"[bold red]{OPEN_WARNING.format(ssid=creds.ssid)}[/bold red]")
    return creds.wifi_json()


def _wifi_asked(target: str) -> bytes:
    """Ask on the terminal, or fail naming --wifi FILE and --no-wifi when there is none."""
    from tools.technician import wifi as wifi_mod

    if not wifi_mod.stdin_is_terminal():
        raise wifi_mod.WifiError(wifi_mod.no_credentials_message(target))
    err.print(f"{target} joins the street's Wi-Fi: give its network (or rerun with --wifi FILE)")
    return _chosen(wifi_mod.ask(say=lambda m: err.print(f"[red]{m}[/red]")))


PINS_OPTION = typer.Option(
    "--pins", envvar="LAMPLIGHTER_FIRMWARE_PINS", dir_okay=False,
    help="The depot's firmware pins file (TOML: firmware entries, each a file name and its "
         "sha256): a firmware file whose SHA-256 is not in it is refused. Default: "
         "$LAMPLIGHTER_FIRMWARE_PINS, else ./lamplighter-firmware.toml when it exists; with "
         "no pins file only the MicroPython release is checked.")


def _pins_file(pins: Path | None) -> Path | None:
    """--pins, or the default pins file when it exists (tools.technician.firmware.find_pins)."""
    from tools.technician.firmware import find_pins

    found = find_pins(pins)
    if found is not None and pins is None:
        out.print(f"firmware pins: {found}")
    return found


@device_app.command("flash")
def flash_cmd(
    port: Annotated[str, PORT_OPTION],
    firmware: Annotated[Path, typer.Option(
        help="MicroPython firmware .bin (ESP32_GENERIC-v1.24.1.bin from "
             "micropython.org/download/ESP32_GENERIC/), a factory image, or an app-only "
             ".app-bin (written at 0x10000, nothing erased).")],
    chip: Annotated[str, typer.Option(help="auto, or the chip you expect: esp32, esp32s3, "
                                           "esp32c3, ... (refuses a board that is not)")] = "auto",
    baud: Annotated[int, typer.Option(help="Baud rate while writing (115200 if flaky).")] = 460800,
    no_erase: Annotated[bool, typer.Option(
        "--no-erase", help="Keep the rest of the flash (the filesystem survives).")] = False,
    pins: Annotated[Path | None, PINS_OPTION] = None,
) -> None:
    """Write a firmware image: check it, detect the chip, refuse a wrong image, erase, write,
    verify.

    Before the port is opened, the MicroPython version is read from the image's ESP-IDF app
    descriptor: only a supported release is written (v1.23.0, v1.24.0, v1.24.1; v1.25.0 as
    a ROMFS build only; see docs/technician.md), and with a pins file only a pinned file. It
    says where the node will run its code from: flash, when the firmware has a `romfs`
    partition and is built with ROMFS, else its files.
    """
    from tools.technician.flashing import FlashError, flash

    try:
        image = flash(port, firmware, chip=chip, baud=baud, erase=not no_erase,
                      say=lambda m: out.print(m), pins=_pins_file(pins))
    except FlashError as exc:
        raise _fail(str(exc)) from None
    out.print(f"[green]flashed[/green] {firmware} ({image.size} bytes, {image.chip.upper()}); "
              "the board has been reset")


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                    console=out, transient=False)


def _print_selftest(result: dict[str, Any]) -> bool:
    """Print the self-test; True when every sensor answered."""
    if "error" in result:
        err.print(f"[red]self-test could not start:[/red] {result['error']}")
        return False
    table = Table(title=f"self-test on {result.get('board')} (reset cause: "
                        f"{result.get('reset_cause')}, free heap {result.get('mem_free')} B)")
    table.add_column("sensor")
    table.add_column("state")
    table.add_column("reading")
    all_ok = True
    for name, reading in result.get("sensors", {}).items():
        ok = bool(reading.get("ok"))
        all_ok &= ok
        values = ", ".join(f"{k}={round(v, 2) if isinstance(v, float) else v}"
                           for k, v in sorted(reading.items())
                           if k not in ("ok", "fault") and v is not None)
        state = "[green]ok[/green]" if ok else f"[red]fault[/red] {reading.get('fault') or ''}"
        table.add_row(name, state, values)
    out.print(table)
    for reason in result.get("config_errors") or []:
        err.print(f"[yellow]config:[/yellow] {reason}")
    return all_ok


@device_app.command("provision")
def provision_cmd(
    port: Annotated[str, PORT_OPTION],
    pole: Annotated[str, typer.Option(help="Pole id painted on the lamppost, e.g. P-0412.")],
    district: Annotated[str, typer.Option(help="District name.")] = "",
    group: Annotated[str, typer.Option(help="Rollout group.")] = "default",
    lat: Annotated[float | None, typer.Option(help="Latitude of the pole.")] = None,
    lon: Annotated[float | None, typer.Option(help="Longitude of the pole.")] = None,
    tags: Annotated[list[str] | None, typer.Option("--tag", help="Tag (repeatable).")] = None,
    server: ServerOption = None,
    token: TokenOption = None,
    release_keys: Annotated[Path | None, typer.Option(
        help="Release key ring (JSON from `lamplighter release`) or a public key file the "
             "node pins to verify updates.")] = None,
    app: Annotated[Path | None, typer.Option(
        help="Firmware app directory (default: this checkout's firmware/).")] = None,
    config: Annotated[Path | None, typer.Option(help="Initial node config JSON.")] = None,
    clean: Annotated[bool, typer.Option(
        "--clean", help="Wipe the node's filesystem first (a half-provisioned or "
                        "other pole's node).")] = False,
    no_selftest: Annotated[bool, typer.Option("--no-selftest")] = False,
    baud: Annotated[int, typer.Option(help="Serial baud rate.")] = 115200,
    ca: Annotated[Path | None, FLEET_CA_OPTION] = None,
    insecure: Annotated[bool, INSECURE_OPTION] = False,
    wifi: Annotated[Path | None, WIFI_OPTION] = None,
    no_wifi: Annotated[bool, NO_WIFI_OPTION] = False,
) -> None:
    """Register the node and write its identity, config, release keys, fleet CA, Wi-Fi and
    app; verify; self-test.

    The node talks to the server over https, checking its certificate against the fleet CA
    pinned here (--ca, default DATA_DIR/tls/ca.pem). An ESP32 gets the street's Wi-Fi as
    /wifi.json: from --wifi FILE, else asked on the terminal (with no terminal it is refused:
    give --wifi FILE, or --no-wifi); an emulated node gets one only with --wifi. Re-running on
    the same node is safe: the registration is reused and files that match are not
    rewritten. A node cut off half-way is finished (or wiped with --clean).
    """
    from ota.errors import OtaError
    from tools.technician.provisioning import (
        NodeLink,
        ProvisionError,
        Site,
        app_files,
        load_key_ring,
        provision,
    )

    if wifi is not None and no_wifi:
        raise _fail("--wifi and --no-wifi: give one of them")
    api, ca_der = _fleet_link(server, token, ca, insecure)
    site = Site(pole, district, group, lat, lon, tags or [])
    try:
        ring = load_key_ring(release_keys) if release_keys else None
        wifi_json = _wifi_from_file(wifi) if wifi is not None else None
        if ring is None:
            err.print("[yellow]warning:[/yellow] no --release-keys: the node will refuse "
                      "every update until a key ring is provisioned")
        cfg = json.loads(config.read_text()) if config else None
        link = NodeLink(port, baud)
    except (ProvisionError, OSError, ValueError) as exc:
        raise _fail(str(exc)) from None

    def files(board: str) -> dict[str, bytes]:
        # the node's board picks its app: an ESP32 gets no emulated-board files
        return app_files(app, board=board) if app else app_files(board=board)

    def wifi_for(board: str) -> bytes | None:
        # read with the node's state, before any registration: only an ESP32 must have one
        if wifi_json is not None or no_wifi:
            return wifi_json
        if board == "emulated":
            out.print("emulated node: no wifi.json (it uses this machine's network; --wifi FILE "
                      "writes one anyway)")
            return None
        return _wifi_asked(f"this node (board {board})")

    def register(body: dict[str, Any]) -> dict[str, Any]:
        return api.call("POST", "/api/v1/devices", json=body)

    progress = _progress()
    task = progress.add_task("writing", total=None)

    def on_file(path: str, done: int, total: int) -> None:
        if not progress.live.is_started:  # shown from the first file: a Wi-Fi prompt comes before
            progress.start()
        progress.update(task, completed=done, total=total, description=f"{path:<36.36}")

    try:
        result = provision(link, site, api.server, register, files, key_ring=ring,
                           config=cfg, clean=clean, run_selftest=not no_selftest,
                           on_file=on_file, say=lambda m: progress.console.print(m),
                           ca_der=ca_der, insecure_http=insecure, wifi=wifi_for)
    except (ProvisionError, OtaError, OSError, ValueError) as exc:
        raise _fail(str(exc)) from None
    finally:
        progress.stop()
        link.close()
    out.print(f"[green]provisioned[/green] pole {pole} as device {result.identity['device_id']}: "
              f"{len(result.written)} file(s) written, {len(result.skipped)} already in place, "
              "all read back and verified (SHA-256)")
    if result.selftest is not None and not _print_selftest(result.selftest):
        raise typer.Exit(4)


@device_app.command("selftest")
def selftest_cmd(
    port: Annotated[str, PORT_OPTION],
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw JSON.")] = False,
    baud: Annotated[int, typer.Option(help="Serial baud rate.")] = 115200,
) -> None:
    """Import the board, read each sensor once and print the readings (exit 4 on a fault)."""
    from tools.technician.provisioning import NodeLink, ProvisionError

    try:
        link = NodeLink(port, baud)
        try:
            result = link.selftest()
        finally:
            link.close()
    except ProvisionError as exc:
        raise _fail(str(exc)) from None
    if as_json:
        out.print_json(data=result)
        ok = "error" not in result and all(r.get("ok") for r in result["sensors"].values())
    else:
        ok = _print_selftest(result)
    if not ok:
        raise typer.Exit(4)


@device_app.command("monitor")
def monitor_cmd(
    port: Annotated[str, PORT_OPTION],
    baud: Annotated[int, typer.Option(help="Serial baud rate.")] = 115200,
    reset: Annotated[bool, typer.Option("--reset", help="Reset the board first to see its "
                                                        "boot.")] = False,
    lines: Annotated[int, typer.Option(help="Stop after this many lines (0: run until "
                                            "Ctrl-C).")] = 0,
) -> None:
    """Show the node's log with levels coloured and reset reasons decoded (Ctrl-C to stop)."""
    from tools.technician.flashing import port_problem
    from tools.technician.monitor import render, serial_lines

    problem = port_problem(port)
    if problem:
        raise _fail(problem)
    shown = 0
    try:
        for line in serial_lines(port, baud, reset=reset,
                                 say=lambda note: err.print(f"[yellow]{note}[/yellow]")):
            out.print(render(line))
            shown += 1
            if lines and shown >= lines:
                break
    except KeyboardInterrupt:
        pass


@device_app.command("factory-image")
def factory_image_cmd(
    firmware: Annotated[Path, typer.Option(
        help="MicroPython ESP32_GENERIC firmware .bin, a supported release "
             "(ESP32_GENERIC-v1.24.1.bin from micropython.org/download/ESP32_GENERIC/).")],
    out_path: Annotated[Path, typer.Option(
        "--out", help="Image file (one node) or directory (--batch).")],
    pole: Annotated[str | None, typer.Option(help="Pole id of the one node.")] = None,
    batch: Annotated[int, typer.Option(help="Build N images (poles from --csv).", min=0)] = 0,
    csv_path: Annotated[Path | None, typer.Option(
        "--csv", help="With --batch: a CSV with a pole_id column (and optional district, "
                      "group, lat, lon); the depot sheet is written next to the images.")] = None,
    district: Annotated[str, typer.Option(help="District (one node).")] = "",
    group: Annotated[str, typer.Option(help="Rollout group (one node).")] = "default",
    server: ServerOption = None,
    token: TokenOption = None,
    release_keys: Annotated[Path | None, typer.Option(help="Release key ring to pin.")] = None,
    app: Annotated[Path | None, typer.Option(help="Firmware app directory.")] = None,
    ca: Annotated[Path | None, FLEET_CA_OPTION] = None,
    insecure: Annotated[bool, INSECURE_OPTION] = False,
    pins: Annotated[Path | None, PINS_OPTION] = None,
    wifi: Annotated[Path | None, WIFI_OPTION] = None,
    no_wifi: Annotated[bool, NO_WIFI_OPTION] = False,
) -> None:
    """Firmware + littlefs filesystem (app, fleet CA, Wi-Fi, enrollment code) in one flashable
    file per node.

    Each node is registered as an enrollment: the image holds a one-time code, not a secret,
    and the fleet CA (--ca, default DATA_DIR/tls/ca.pem) it checks the server against; the
    node redeems the code over https on first boot. Every image of a batch holds the same
    Wi-Fi network as /wifi.json: from --wifi FILE, else asked on the terminal (with no
    terminal it is refused: give --wifi FILE, or --no-wifi). The firmware is checked first,
    before the Wi-Fi is asked for or anything is registered: its MicroPython version, read
    from the image's ESP-IDF app descriptor, must be a supported release (v1.23.0, v1.24.0,
    v1.24.1; v1.25.0 as a ROMFS build only) and, with a pins file, the file itself must be
    pinned. A firmware with a `romfs` partition, built with ROMFS, also gets the app's code
    image there, so the node runs its code from flash from its first boot; without one the
    node runs it from its files (the tool says which).
    """
    import csv

    from ota.errors import OtaError
    from tools.technician.factory_image import (
        FactoryImageError,
        build_images,
        check_firmware,
        write_depot_csv,
    )
    from tools.technician.firmware import code_on_flash, describe
    from tools.technician.provisioning import ProvisionError, Site, load_key_ring

    if wifi is not None and no_wifi:
        raise _fail("--wifi and --no-wifi: give one of them")
    pins_path = _pins_file(pins)
    try:  # a firmware that cannot be used is said before the Wi-Fi is asked for
        check_firmware(firmware.read_bytes(), str(firmware), pins_path)
    except OSError as exc:
        raise _fail(f"cannot read {firmware}: {exc.strerror}") from None
    except FactoryImageError as exc:
        raise _fail(str(exc)) from None

    if batch:
        if csv_path is None:
            raise _fail("--batch needs --csv with the pole ids")
        with open(csv_path, newline="") as f:
            rows = list(csv.DictReader(f))
        if len(rows) < batch:
            raise _fail(f"{csv_path} lists {len(rows)} poles, fewer than --batch {batch}")
        sites = [Site(r["pole_id"], r.get("district", ""), r.get("group") or "default",
                      float(r["lat"]) if r.get("lat") else None,
                      float(r["lon"]) if r.get("lon") else None) for r in rows[:batch]]
    elif pole:
        sites = [Site(pole, district, group)]
    else:
        raise _fail("give --pole (one image) or --batch N --csv FILE")
    api, ca_der = _fleet_link(server, token, ca, insecure)
    try:
        ring = load_key_ring(release_keys) if release_keys else None
        if wifi is not None:
            wifi_json = _wifi_from_file(wifi)
        elif no_wifi:
            wifi_json = None
            err.print("[yellow]--no-wifi:[/yellow] the images hold no wifi.json: a node cannot "
                      "redeem its enrollment until one is written on it")
        else:
            wifi_json = _wifi_asked("a factory image (ESP32)")
    except (ProvisionError, ValueError) as exc:  # WifiError is a ValueError
        raise _fail(str(exc)) from None

    def register(devices: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return api.call("POST", "/api/v1/devices/batch",
                        json={"devices": devices, "enrollment": True})

    try:
        images = build_images(firmware, sites, out_path, api.server, register, key_ring=ring,
                              app_dir=app,
                              on_image=lambda i: out.print(f"{i.pole_id}: {i.path}"),
                              ca_der=ca_der, insecure_http=insecure, pins=pins_path,
                              on_firmware=lambda f: out.print(
                                  f"{firmware}: {describe(f)}\ncode: {code_on_flash(f)}"),
                              wifi=wifi_json)
    except (FactoryImageError, ProvisionError, OtaError) as exc:  # OtaError: a board manifest
        raise _fail(str(exc)) from None
    if batch:
        sheet = out_path / "depot.csv"
        write_depot_csv(images, sheet)
        out.print(f"[green]{len(images)} images[/green] in {out_path}; depot sheet {sheet}")
    else:
        out.print(f"[green]image ready:[/green] {out_path}: flash it with "
                  f"`lamplighter device flash --port PORT --firmware {out_path}`")


@device_app.command("console")
def console_cmd(
    flash_dir: Annotated[Path, typer.Option(help="The emulated node's flash directory.")],
    no_world: Annotated[bool, typer.Option("--no-world", help="Without sensors.")] = False,
) -> None:
    """An emulated lamppost's REPL on a pty: prints /dev/pts/N for mpremote and these commands."""
    import signal

    from tools.emulator.serial_repl import serve

    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    serve(flash_dir, with_world=not no_world)


FAULT_HELP = (
    "Inject a sensor fault: SENSOR:KIND:START_MIN[:END_MIN] (minutes after the start). "
    "Sensors: bme280, veml7700, pms5003, ld2410, pir. Kinds: missing, wrong_id, stuck, "
    "garbage, bad_checksum, silent. Repeat for several faults."
)


def _parse_fault(text: str):
    from tools.emulator.scenario import Fault

    parts = text.split(":")
    if len(parts) not in (3, 4):
        raise typer.BadParameter(f"{text!r}: expected SENSOR:KIND:START_MIN[:END_MIN]")
    try:
        start = float(parts[2]) * 60
        end = float(parts[3]) * 60 if len(parts) == 4 else float("inf")
        return Fault(parts[0], parts[1], start, end)
    except ValueError as e:
        raise typer.BadParameter(f"{text!r}: {e}") from e


@device_app.command("emulate")
def emulate(
    hours: Annotated[float, typer.Option(help="Virtual hours to run, then stop.", min=0.01)] = 1.0,
    speed: Annotated[float, typer.Option(
        help="Times faster than real time (600: an hour in 6 s). 0: as fast as possible.",
        min=0.0)] = 60.0,
    flash_dir: Annotated[Path | None, typer.Option(
        help="Directory that holds the node's flash (config, telemetry queue). Reuse it to "
             "resume a node; default: a fresh temporary directory.")] = None,
    start_hour: Annotated[float, typer.Option(
        help="Time of day (UTC) when the run starts, e.g. 16.5 for dusk.", min=0, max=24)] = 16.0,
    weather: Annotated[str, typer.Option(help="clear, overcast or rain.")] = "overcast",
    footfall: Annotated[float, typer.Option(
        help="Scale of the pedestrian traffic (1 = a typical street, 0 = nobody).",
        min=0.0)] = 1.0,
    pollution: Annotated[float, typer.Option(
        help="Peak PM2.5 (µg/m³) of a pollution episode in the middle of the run; 0: none.",
        min=0.0)] = 0.0,
    fault: Annotated[list[str] | None, typer.Option(help=FAULT_HELP)] = None,
    seed: Annotated[int, typer.Option(help="Seed of the pedestrians and sensor noise.")] = 1,
    log_lines: Annotated[int, typer.Option(help="Node log lines to show.", min=1)] = 14,
) -> None:
    """Run one emulated lamppost: the real firmware on MicroPython against a simulated street.

    Shows the lamp level, the street's conditions and the node's log while it runs.
    """
    from tools.emulator.dashboard import summary, watch
    from tools.emulator.launcher import Launcher
    from tools.emulator.scenario import DEFAULT_START_EPOCH, WEATHER, Episode, Scenario

    if weather not in WEATHER:
        raise typer.BadParameter(f"choose from {', '.join(WEATHER)}", param_hint="--weather")
    faults = [_parse_fault(f) for f in fault or []]
    start_epoch = DEFAULT_START_EPOCH - 12 * 3600 + int(start_hour * 3600)
    episodes = [Episode(hours / 2, max(hours / 6, 0.1), pollution)] if pollution > 0 else []
    scenario = Scenario(start_epoch=start_epoch, seed=seed, weather=weather,
                        footfall_scale=footfall, faults=faults, episodes=episodes)
    console = Console()
    log: deque[str] = deque(maxlen=log_lines)
    tmp = None
    if flash_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="lamplighter-node-")
        flash_dir = Path(tmp.name) / "flash"
    from tools.emulator.launcher import own_release

    kept = own_release(flash_dir)
    if kept is not None:
        console.print(f"running the node's own release {kept} from {flash_dir} (provisioned "
                      "or updated); this checkout's firmware is not installed over it")
    launcher = Launcher(flash_dir, scenario, speed=speed, end_ms=int(hours * 3600 * 1000),
                        on_line=log.append)
    try:
        watch(launcher, log, hours, console)
    finally:
        if tmp is not None:
            tmp.cleanup()
    console.print("\n" + summary(launcher, hours))


DeviceIdArgument = Annotated[str, typer.Argument(help="The node's device id (ll-…).")]


@device_app.command("rotate-key")
def rotate_key_cmd(device_id: DeviceIdArgument, server: ServerOption = None,
                   token: TokenOption = None, ca: CaOption = None) -> None:
    """Rotate a node's device key over the air, no visit needed.

    The next key goes to the node hidden in its next check-in reply; the node stores it and
    signs with it from its next request, which retires the old key. Until then both work, so
    a lost reply or a power cut on the way strands nothing. One rotation at a time.
    """
    started = ApiClient(server, token, ca).call("POST", f"/api/v1/devices/{device_id}/rotate-key")
    out.print(f"{device_id}: rotation to key version {started['next_key_version']} started "
              f"(version {started['key_version']} stays valid until the node signs with the "
              "next; `GET /api/v1/devices/{id}` shows key_version once it has)")


@device_app.command("retire-key")
def retire_key_cmd(device_id: DeviceIdArgument, server: ServerOption = None,
                   token: TokenOption = None, ca: CaOption = None,
                   yes: Annotated[bool, typer.Option(
                       "--yes", help="Do not ask for confirmation.")] = False) -> None:
    """Retire a node's key NOW (a compromised or stolen node): its current key, and any
    rotation in flight, are refused from this moment. The node is cut off until a technician
    writes the new secret this prints (once) into the node's identity.json."""
    if not yes and not typer.confirm(
            f"{device_id} will be refused from now on until it is provisioned again. Retire "
            "its key?", default=False):
        raise typer.Exit(1)
    creds = ApiClient(server, token, ca).call("POST", f"/api/v1/devices/{device_id}/retire-key")
    err.print(f"{device_id} is refused from now on, until its identity.json holds the secret "
              "below (shown once; keep it out of logs)")
    out.print(json.dumps({"device_id": creds["device_id"], "secret": creds["secret"],
                          "key_version": creds["key_version"]}))


# -- reading the fleet: list and show ---------------------------------------------------------

def _ago(when: str | None) -> str:
    """'2026-11-30 04:12:09 (3 min ago)' from an ISO time; 'never' for None."""
    from datetime import UTC, datetime

    if not when:
        return "never"
    moment = datetime.fromisoformat(when.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    seconds = max(0, int((datetime.now(UTC) - moment).total_seconds()))
    if seconds < 120:
        since = f"{seconds} s"
    elif seconds < 7200:
        since = f"{seconds // 60} min"
    elif seconds < 172800:
        since = f"{seconds // 3600} h"
    else:
        since = f"{seconds // 86400} days"
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S} ({since} ago)"


def _state(node: dict[str, Any]) -> str:
    if node["status"] != "active":
        return f"[dim]{node['status']}[/dim]"
    return "[green]online[/green]" if node["online"] else "[yellow]offline[/yellow]"


@device_app.command("list")
def list_cmd(
    group: Annotated[str | None, typer.Option(help="Only nodes of this group.")] = None,
    district: Annotated[str | None, typer.Option(help="Only nodes of this district.")] = None,
    tag: Annotated[str | None, typer.Option(help="Only nodes with this tag.")] = None,
    status: Annotated[str | None, typer.Option(
        help="Only active or only decommissioned nodes.")] = None,
    online: Annotated[bool | None, typer.Option(
        "--online/--offline", help="Only nodes heard from within LAMPLIGHTER_OFFLINE_AFTER_S "
        "(--online), or only those silent longer, never heard from, or retired (--offline).",
        show_default=False)] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000, help="At most this many.")] = 1000,
    offset: Annotated[int, typer.Option(min=0, help="Skip this many first.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the server's JSON.")] = False,
    server: ServerOption = None, token: TokenOption = None, ca: CaOption = None,
) -> None:
    """The fleet's nodes as a table (GET /api/v1/devices; a reader token is enough)."""
    if status is not None and status not in ("active", "decommissioned"):
        raise typer.BadParameter("active or decommissioned", param_hint="--status")
    params = {"group": group, "district": district, "tag": tag, "status": status,
              "online": None if online is None else str(online).lower(), "limit": limit,
              "offset": offset}
    nodes = ApiClient(server, token, ca).call(
        "GET", "/api/v1/devices", params={k: v for k, v in params.items() if v is not None})
    if as_json:
        out.print_json(data=nodes)
        return
    if not nodes:
        out.print("no nodes match")
        return
    table = Table("device", "pole", "group", "district", "board", "state", "last check-in",
                  "firmware", "config v.", "key v.")
    for n in nodes:
        table.add_row(n["device_id"], escape(n["pole_id"]), escape(n["group"]),
                      escape(n["district"]), escape(n["board"]), _state(n),
                      _ago(n["last_seen"]), escape(n["fw_version"] or ""),
                      str(n["applied_config_version"]), str(n["key_version"]))
    out.print(table)
    if len(nodes) == limit:
        out.print(f"{len(nodes)} nodes shown: there may be more (--offset {offset + limit})")
    else:
        out.print(f"{len(nodes)} node(s)")


@device_app.command("show")
def show_cmd(device_id: DeviceIdArgument,
             as_json: Annotated[bool, typer.Option("--json", help="Print the server's JSON.")
                                ] = False,
             server: ServerOption = None, token: TokenOption = None,
             ca: CaOption = None) -> None:
    """One node: status, last check-in, firmware, applied configuration version, key
    version, release key set and what it last reported (GET /api/v1/devices/ID)."""
    n = ApiClient(server, token, ca).call("GET", f"/api/v1/devices/{device_id}")
    if as_json:
        out.print_json(data=n)
        return
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    location = "" if n["lat"] is None else f"{n['lat']}, {n['lon']}"
    keyset = "none reported" if n["keyset"] is None else f"serial {n['keyset']}"
    rows: list[tuple[str, str]] = [
        ("device", n["device_id"]), ("pole", escape(n["pole_id"])),
        ("group", escape(n["group"])), ("district", escape(n["district"])),
        ("board", escape(n["board"])), ("tags", escape(", ".join(n["tags"]))),
        ("location", location), ("status", _state(n)),
        ("last check-in", _ago(n["last_seen"])), ("firmware", escape(n["fw_version"] or "")),
        ("config version", f"{n['applied_config_version']} applied"),
        ("key version", str(n["key_version"])), ("release keys", keyset)]
    if n.get("keyset_error"):
        rows.append(("key set refused", f"[red]{escape(n['keyset_error'])}[/red]"))
    for name, value in rows:
        table.add_row(name, value)
    out.print(table)
    status = n["last_status"] or {}
    if status:
        out.print("[bold]last reported[/bold]")
        reported = Table(show_header=False, box=None, pad_edge=False)
        reported.add_column(style="dim")
        reported.add_column()
        for key in sorted(status):
            value = status[key]
            text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
            reported.add_row(f"  {escape(key)}", escape(text))
        out.print(reported)
    else:
        out.print("last reported: nothing yet")
    out.print(f"commands: `lamplighter command list {n['device_id']}`")


@device_app.command("events")
def events_cmd(
    device_id: DeviceIdArgument,
    kind: Annotated[str | None, typer.Option(
        help="Only this kind: registered, enrollment_issued, key_rotation_started, "
             "key_rotated, key_retired, decommissioned, keyset_error, config_refused, "
             "telemetry_conflict.")] = None,
    since: SinceOption = None,
    until: UntilOption = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="At most this many.")] = 50,
    cursor: Annotated[int | None, typer.Option(
        min=1, help="Older events: the cursor the previous page printed.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the server's JSON.")] = False,
    server: ServerOption = None, token: TokenOption = None, ca: CaOption = None,
) -> None:
    """What happened to a node, newest first: registered, key rotations, a key statement or
    configuration it refused (with its reason), telemetry conflicts, decommissioned
    (GET /api/v1/devices/ID/events; a reader token is enough)."""
    from tools.cli.audit import _when

    params: dict[str, Any] = {"kind": kind, "since": _when(since, "--since"),
                              "until": _when(until, "--until"), "limit": limit,
                              "cursor": cursor}
    page = ApiClient(server, token, ca).call(
        "GET", f"/api/v1/devices/{device_id}/events",
        params={k: v for k, v in params.items() if v is not None})
    if as_json:
        out.print_json(data=page)
        return
    if not page["events"]:
        out.print("no events match")
        return
    table = Table("time (UTC)", "kind", "detail")
    for e in page["events"]:
        detail = json.dumps(e["detail"], separators=(",", ":")) if e["detail"] else ""
        style = "red" if e["kind"] in ("config_refused", "keyset_error",
                                       "telemetry_conflict") else ""
        kind_text = f"[{style}]{e['kind']}[/{style}]" if style else e["kind"]
        table.add_row(e["at"][:19].replace("T", " "), kind_text, escape(detail))
    out.print(table)
    if page["next_cursor"] is not None:
        out.print(f"older events: add --cursor {page['next_cursor']}")
