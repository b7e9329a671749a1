"""HIL fixtures: the --hil-board option, one booted board per backend and session, hil_record."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from hil_tests.backends import BACKENDS, BOARDS_ENV, DEFAULT_BOARDS, Board, BoardUnavailable
from hil_tests.backends import selected_boards as _selected
from hil_tests.results_table import HilResultsTable

# fixture name -> the kind of backend it is parametrized over
BOARD_FIXTURES = {"board": "repl"}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("hil", "hardware-in-the-loop boards")
    group.addoption(
        "--hil-board", action="append", default=None, metavar="NAMES",
        help=f"board backends to run on, comma separated or repeated: {', '.join(BACKENDS)}, "
             f"or all (default: ${BOARDS_ENV} or {DEFAULT_BOARDS})",
    )


def selected_boards(config: pytest.Config) -> list[str]:
    try:
        return _selected(config.getoption("--hil-board"))
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from exc


def pytest_configure(config: pytest.Config) -> None:
    if not config.pluginmanager.has_plugin("hil-results-table"):
        config.pluginmanager.register(HilResultsTable(config), "hil-results-table")


def pytest_report_header(config: pytest.Config) -> list[str]:
    lines = []
    for name in selected_boards(config):
        reason = BACKENDS[name].unavailable_reason()
        state = "available" if reason is None else f"skipped: {reason}"
        lines.append(f"hil board {name}: {state}")
    return lines


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    for fixture, kind in BOARD_FIXTURES.items():
        if fixture in metafunc.fixturenames:
            names = [n for n in selected_boards(metafunc.config) if BACKENDS[n].kind == kind]
            if not names:
                names = ["none"]
            metafunc.parametrize(fixture, names, indirect=True, scope="session")


@pytest.fixture(scope="session")
def board(request: pytest.FixtureRequest) -> Iterator[Board]:
    """A booted board of the selected backend, shared by the whole session (one boot)."""
    name = request.param
    if name == "none":
        pytest.skip(f"no REPL board selected (--hil-board / ${BOARDS_ENV})")
    backend = BACKENDS[name]
    reason = backend.unavailable_reason()
    if reason:
        pytest.skip(reason)
    try:
        opened = backend.open()
    except BoardUnavailable as exc:
        pytest.skip(str(exc))
    yield opened
    opened.close()


@pytest.fixture
def hil_record(request: pytest.FixtureRequest) -> Callable[[str, Any], None]:
    """hil_record(name, value): a figure for the results table (and junit user properties)."""

    def record(name: str, value: Any) -> None:
        request.node.user_properties.append((name, value))

    return record
