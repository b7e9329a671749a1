"""The `lamplighter` command: one entry point with a sub-command group for each kind of user."""

from __future__ import annotations

import typer

from tools.cli.audit import audit_app
from tools.cli.command import command_app
from tools.cli.config import config_app
from tools.cli.device import device_app
from tools.cli.release import release_app
from tools.cli.rollout import rollout_app
from tools.cli.server import server_app
from tools.cli.sim import demo, sim

app = typer.Typer(
    name="lamplighter",
    help="Firmware and fleet manager for smart lampposts.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(server_app, name="server")
app.add_typer(device_app, name="device")
app.add_typer(config_app, name="config")
app.add_typer(command_app, name="command")
app.add_typer(release_app, name="release")
app.add_typer(rollout_app, name="rollout")
app.add_typer(audit_app, name="audit")
app.command("sim")(sim)
app.command("demo")(demo)

if __name__ == "__main__":
    app()
