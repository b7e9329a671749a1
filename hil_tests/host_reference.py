"""The host reference: CPython runs the same module files and the same driver code."""

from __future__ import annotations

import contextlib
import io
from typing import Any

from hil_tests.algorithm_scenarios import Scenario
from hil_tests.backends.base import module_path


class HostRunner:
    """Executes code in one namespace holding the modules' definitions, as a board does."""

    name = "host"

    def __init__(self) -> None:
        self.namespace: dict[str, Any] = {"__name__": "__hil_host__"}

    def load_module(self, name: str) -> None:
        path = module_path(name)
        exec(compile(path.read_text(), str(path), "exec"), self.namespace)

    def exec(self, code: str) -> str:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, "<driver>", "exec"), self.namespace)
        return out.getvalue()


def run_on_host(scenario: Scenario) -> list[str]:
    """What each of the scenario's runs prints on the host."""
    host = HostRunner()
    for module in scenario.modules:
        host.load_module(module)
    return [host.exec(code) for code in scenario.runs]
