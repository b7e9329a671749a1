"""The `unix` backend: the emulated lamppost (MicroPython unix port plus the world's models)."""

from __future__ import annotations

from hil_tests.backends.base import Board, BoardUnavailable


class UnixLamppostBoard(Board):
    """Placeholder: the emulated lamppost (tools/emulator, firmware/boards/emulated.py) provides
    this backend and is selected the same way (`--hil-board unix`); the fleet scenarios wire it
    in. It is a whole lamppost, not a bare REPL, so the REPL scenarios do not run on it.
    """

    name = "unix"
    kind = "lamppost"

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return (f"{cls.name}: the emulated lamppost backend is not wired into the HIL harness yet "
                "(see hil_tests/backends/unix.py)")

    @classmethod
    def open(cls) -> UnixLamppostBoard:
        raise BoardUnavailable(cls.unavailable_reason() or cls.name)

    def exec(self, code: str, timeout: float = 20.0) -> str:
        raise NotImplementedError

    def load_module(self, name_or_path):  # type: ignore[no-untyped-def]
        raise NotImplementedError

    def mem_free(self) -> int:
        raise NotImplementedError

    def reset(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass
