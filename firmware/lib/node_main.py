"""The entry point of stable roots older than lib/'s packages: their main.py imports node_main."""

from core.node_main import main  # noqa: F401
