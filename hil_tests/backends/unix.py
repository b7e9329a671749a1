"""The `unix` backend: emulated lampposts (MicroPython unix port plus the world's models)."""

from __future__ import annotations

from hil_tests.backends.base import Board, BoardUnavailable


class UnixLamppostBoard(Board):
    """A whole emulated lamppost rather than a bare REPL: the fleet scenarios
    (hil_tests/test_fleet_scenarios.py) boot these through tests.rigs.hil_rig.Rig, each a real
    MicroPython process started from its A/B slot, so the REPL scenarios do not run on it.
    """

    name = "unix"
    kind = "lamppost"

    @classmethod
    def unavailable_reason(cls) -> str | None:
        from tools.emulator.micropython import micropython_executable

        try:
            micropython_executable()
        except RuntimeError as exc:
            return f"{cls.name}: {exc}"
        return None

    @classmethod
    def open(cls) -> UnixLamppostBoard:
        raise BoardUnavailable(f"{cls.name}: lampposts are started by tests.rigs.hil_rig.Rig")

    def exec(self, code: str, timeout: float = 20.0) -> str:
        raise NotImplementedError("an emulated lamppost is driven through its world and server")

    def load_module(self, name_or_path):  # type: ignore[no-untyped-def]
        raise NotImplementedError("an emulated lamppost is driven through its world and server")
