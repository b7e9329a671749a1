"""The `lamplighter` command: one entry point with a sub-command group for each kind of user."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="lamplighter",
    help="Firmware and fleet manager for smart lampposts.",
    no_args_is_help=True,
    add_completion=False,
)

device_app = typer.Typer(help="Technician tools for one node: flash, provision, emulate, monitor.",
                         no_args_is_help=True)
app.add_typer(device_app, name="device")


def _register_commands() -> None:
    """Import the modules that attach their commands to the groups above."""
    from tools import cli_device, cli_device_tech  # noqa: F401
    from tools.cli_server import server_app

    app.add_typer(server_app, name="server")
    from tools.cli_release import release_app
    from tools.cli_release_server import distrust, trust, upload
    from tools.cli_rollout import rollout_app

    release_app.command("upload")(upload)
    release_app.command("trust")(trust)
    release_app.command("distrust")(distrust)
    app.add_typer(release_app, name="release")
    from tools.cli_sim import demo, sim

    app.command("sim")(sim)
    app.command("demo")(demo)

    app.add_typer(rollout_app, name="rollout")


_register_commands()

if __name__ == "__main__":
    app()
