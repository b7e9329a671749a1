"""`lamplighter device …`: commands a technician runs against one node."""

from __future__ import annotations

import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from tools.cli import device_app

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


def _lamp_bar(level: float, width: int = 30) -> Text:
    filled = int(round(level / 100 * width))
    bar = Text("█" * filled, style="yellow") + Text("░" * (width - filled), style="grey37")
    return bar + Text(f" {level:5.1f} %", style="bold")


def _view(launcher, log: deque[str], hours: float) -> Group:
    from tools.emulator.world import LAMP_RATED_W

    world = launcher.world
    s = world.scenario
    end_ms = world.end_ms if world.end_ms is not None else world.now_ms
    now_ms = min(world.now_ms, end_ms)
    t = now_ms / 1000.0
    hod = s.hour_of_day(t)
    records = world.records
    level = records.lamp_level_at(now_ms)
    moving, still = s.radar_targets(t)
    people = "nobody" if moving is None and still is None else ", ".join(
        f"{label} at {cm / 100:.1f} m" for label, cm in (("walking", moving), ("standing", still))
        if cm is not None)
    faults = [f"{f.sensor}:{f.kind}" for f in s.faults if f.start_s <= t < f.end_s]
    table = Table.grid(padding=(0, 2))
    table.add_column(style="cyan")
    table.add_column()
    table.add_row("street time", f"{int(hod):02d}:{int(hod * 60) % 60:02d} UTC  "
                  f"({t / 3600:.2f} of {hours:g} h, node {'on' if launcher.running() else 'off'})")
    table.add_row("lamp", _lamp_bar(level))
    table.add_row("ambient light", f"{s.lux(t):,.1f} lx   {s.temperature_c(t):.1f} °C   "
                  f"{s.humidity_pct(t):.0f} %RH   PM2.5 {s.pm25(t):.1f} µg/m³")
    table.add_row("street", people)
    table.add_row("faults injected", ", ".join(faults) or "none")
    table.add_row("energy so far", f"{records.energy_wh(0, now_ms):.1f} Wh "
                  f"(always on: {LAMP_RATED_W * now_ms / 3.6e6:.1f} Wh)")
    table.add_row("telemetry", f"{len(records.telemetry)} records received, "
                  f"{len(records.checkins)} check-ins, {len(records.boots)} boot(s)")
    lines = Text("\n".join(log) if log else "(waiting for the node…)", overflow="ellipsis",
                 no_wrap=True)
    return Group(Panel(table, title="emulated lamppost", border_style="blue"),
                 Panel(lines, title="node log", border_style="grey50"))


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
    from tools.emulator.launcher import Launcher
    from tools.emulator.scenario import DEFAULT_START_EPOCH, WEATHER, Episode, Scenario
    from tools.emulator.world import LAMP_RATED_W

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
    launcher = Launcher(flash_dir, scenario, speed=speed, end_ms=int(hours * 3600 * 1000),
                        on_line=log.append)
    from rich.live import Live

    try:
        with launcher, Live(_view(launcher, log, hours), console=console,
                            refresh_per_second=4) as live:
            while not launcher.world.halted.is_set():
                time.sleep(0.25)
                live.update(_view(launcher, log, hours))
            launcher.wait_done(timeout=10)
            live.update(_view(launcher, log, hours))
    except KeyboardInterrupt:
        console.print("[yellow]stopped[/]")
    finally:
        if tmp is not None:
            tmp.cleanup()
    rec = launcher.world.records
    ran_ms = min(launcher.world.now_ms, int(hours * 3600 * 1000))
    console.print(f"\nran {ran_ms / 3.6e6:.2f} virtual hours: lamp used "
                  f"{rec.energy_wh(0, ran_ms):.1f} Wh (always on: "
                  f"{LAMP_RATED_W * ran_ms / 3.6e6:.1f} Wh), "
                  f"{len(rec.telemetry)} telemetry records reached the world, "
                  f"{len(rec.boots)} boot(s).")
