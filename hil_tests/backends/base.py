"""What every HIL board backend offers: run code, load a module, free heap, reset, close."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
FIRMWARE_LIB = REPO_ROOT / "firmware" / "lib"


class BoardUnavailable(Exception):
    """The backend cannot run here; the message says why (it becomes the skip reason)."""


class DeviceError(Exception):
    """Code sent to the board raised; the message carries the board's traceback."""


class Board(ABC):
    """One board under test, already booted and at a prompt."""

    name: str = "?"
    kind: str = "repl"  # "repl": a bare MicroPython prompt; "lamppost": a whole emulated node

    @classmethod
    @abstractmethod
    def unavailable_reason(cls) -> str | None:
        """Why this backend cannot run on this machine, or None when it can."""

    @classmethod
    @abstractmethod
    def open(cls) -> Board:
        """Boot (or connect to) the board; raise BoardUnavailable if it cannot be reached."""

    @abstractmethod
    def exec(self, code: str, timeout: float = 20.0) -> str:
        """Run `code` on the board and return what it printed; raise DeviceError if it raised."""

    def exec_checked(self, code: str, timeout: float = 20.0) -> str:
        """Like exec, for code that must arrive intact (definitions, settings): a backend
        whose link can lose bytes confirms every byte before running it."""
        return self.exec(code, timeout)

    @abstractmethod
    def load_module(self, name_or_path: str | Path) -> list[str]:
        """Define a module's top-level names on the board; return the names defined."""

    @abstractmethod
    def mem_free(self) -> int:
        """Bytes of heap free on the board after a garbage collection."""

    @abstractmethod
    def reset(self) -> None:
        """Soft-reset the board: a fresh interpreter with nothing loaded."""

    @abstractmethod
    def close(self) -> None:
        """Disconnect and stop anything the backend started."""


def module_path(name_or_path: str | Path) -> Path:
    """`filters` -> firmware/lib/algorithms/filters.py (an algorithm module by its name),
    `drivers.pir` -> firmware/lib/drivers/pir.py; a path is returned as it is."""
    text = str(name_or_path)
    if text.endswith(".py") or "/" in text:
        path = Path(text)
        return path if path.is_absolute() else REPO_ROOT / path
    algorithm = FIRMWARE_LIB / "algorithms" / (text + ".py")
    if "." not in text and algorithm.exists():
        return algorithm
    return FIRMWARE_LIB / (text.replace(".", "/") + ".py")
