"""The live view of one emulated lamppost: lamp, street, faults, energy and the node's log."""

from __future__ import annotations

import time
from collections import deque

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text


def _lamp_bar(level: float, width: int = 30) -> Text:
    filled = int(round(level / 100 * width))
    bar = Text("█" * filled, style="yellow") + Text("░" * (width - filled), style="grey37")
    return bar + Text(f" {level:5.1f} %", style="bold")


def view(launcher, log: deque[str], hours: float) -> Group:
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


def watch(launcher, log: deque[str], hours: float, console: Console) -> None:
    """Run the launcher's node under a live view until its world halts (Ctrl-C stops it)."""
    from rich.live import Live

    try:
        with launcher, Live(view(launcher, log, hours), console=console,
                            refresh_per_second=4) as live:
            while not launcher.world.halted.is_set():
                time.sleep(0.25)
                live.update(view(launcher, log, hours))
            launcher.wait_done(timeout=10)
            live.update(view(launcher, log, hours))
    except KeyboardInterrupt:
        console.print("[yellow]stopped[/]")


def summary(launcher, hours: float) -> str:
    """One line on what the run did: virtual hours, energy against always-on, records, boots."""
    from tools.emulator.world import LAMP_RATED_W

    rec = launcher.world.records
    ran_ms = min(launcher.world.now_ms, int(hours * 3600 * 1000))
    return (f"ran {ran_ms / 3.6e6:.2f} virtual hours: lamp used "
            f"{rec.energy_wh(0, ran_ms):.1f} Wh (always on: "
            f"{LAMP_RATED_W * ran_ms / 3.6e6:.1f} Wh), "
            f"{len(rec.telemetry)} telemetry records reached the world, "
            f"{len(rec.boots)} boot(s).")
