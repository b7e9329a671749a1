"""The service scripts a technician's tools run on a node over its REPL (firmware/service/)."""

from __future__ import annotations

from tools.firmware_tree import FIRMWARE_DIR

SERVICE_DIR = FIRMWARE_DIR / "service"


def node_script(name: str, call: str) -> str:
    """The source of firmware/service/<name>.py followed by `call`, ready for the raw REPL."""
    return (SERVICE_DIR / f"{name}.py").read_text() + "\n" + call + "\n"
