"""Fixtures for the tool tests."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest
from rich.console import Console


@pytest.fixture
def wide_console() -> Iterator[None]:
    """Every rich Console of the CLI 250 columns wide for the test: a table's cells are then
    printed whole, whatever width the console took when its module was first imported (a
    Console reads COLUMNS once, when it is made)."""
    consoles = {id(c): c for name, module in list(sys.modules.items())
                if name.startswith("tools.cli") and module is not None
                for c in vars(module).values() if isinstance(c, Console)}
    saved = {key: c._width for key, c in consoles.items()}
    for c in consoles.values():
        c.width = 250
    try:
        yield
    finally:
        for key, c in consoles.items():
            c._width = saved[key]
