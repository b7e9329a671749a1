"""The harness itself, on the host: source splitting, board selection, batch checks, tolerances."""

from __future__ import annotations

import pytest

from hil_tests import device_drivers as drv
from hil_tests.algorithm_scenarios import batch_args
from hil_tests.backends import BOARDS_ENV, selected_boards
from hil_tests.backends.esp32_qemu import Esp32QemuBoard
from hil_tests.backends.serial import PORT_ENV, SerialBoard
from hil_tests.backends.source_split import split_definitions
from hil_tests.comparison import Comparison, parse_float
from hil_tests.host_reference import HostRunner

MODULE = '''"""Docstring that costs heap on a board."""

from micropython import const  # a trailing comment

LIMIT = const(3)  # another
NAME = "a # in a string stays"


# a comment block
@staticmethod
def helper(x):
    # inside
    return x + LIMIT


class Thing:
    # described here
    def go(self):
        return "#"
'''


def test_split_sends_each_definition_alone_without_comments_or_docstring() -> None:
    chunks = split_definitions(MODULE)
    assert [c.names for c in chunks] == [("const", "LIMIT", "NAME"), ("helper",), ("Thing",)]
    assert "Docstring" not in "".join(c.code for c in chunks)
    assert all("# a" not in c.code and "# inside" not in c.code for c in chunks)
    assert '"a # in a string stays"' in chunks[0].code
    assert chunks[1].code.startswith("@staticmethod\ndef helper")
    namespace: dict[str, object] = {}
    for chunk in chunks[1:]:  # each chunk compiles on its own (const needs micropython)
        exec(compile(chunk.code, "<chunk>", "exec"), {"LIMIT": 3}, namespace)
    assert set(namespace) == {"helper", "Thing"}


def test_board_selection_option_then_environment_then_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(BOARDS_ENV, raising=False)
    assert selected_boards(None) == ["qemu-microbit", "unix"]
    monkeypatch.setenv(BOARDS_ENV, "serial, esp32-qemu")
    assert selected_boards(None) == ["serial", "esp32-qemu"]
    assert selected_boards(["qemu-microbit", "serial,qemu-microbit"]) == ["qemu-microbit", "serial"]
    assert set(selected_boards(["all"])) == {"qemu-microbit", "unix", "esp32-qemu", "serial"}
    with pytest.raises(ValueError, match="unknown HIL board 'stm32'.*known: qemu-microbit"):
        selected_boards(["stm32"])


def test_absent_backends_say_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    assert "qemu-system-xtensa not on PATH" in (Esp32QemuBoard.unavailable_reason() or "")
    monkeypatch.delenv(PORT_ENV, raising=False)
    assert f"{PORT_ENV} is not set" in (SerialBoard.unavailable_reason() or "")
    monkeypatch.setenv(PORT_ENV, "/dev/no-such-board")
    assert "does not exist" in (SerialBoard.unavailable_reason() or "")


def test_batch_check_accepts_the_batch_and_rejects_a_garbled_copy() -> None:
    host = HostRunner()
    host.exec(drv.BATCH_CHECK)
    batch = [0, 10000, 4608, None, 4612, -3, 4599]
    args = batch_args(batch)
    host.exec(f"_ok({args})")
    # two numbers run together (the separator lost on the wire): still valid Python
    garbled = args.replace("4612, -3", "4612-3", 1)
    with pytest.raises(ValueError, match="garbled batch"):
        host.exec(f"_ok({garbled})")
    # one digit lost
    with pytest.raises(ValueError, match="garbled batch"):
        host.exec(f"_ok({args.replace('4599', '459', 1)})")


def test_float_tokens_round_trip_and_tolerance_flags_real_differences() -> None:
    host = HostRunner()
    host.exec(drv.IMPORT_STRUCT)
    host.exec(drv.FLOAT_CODEC)
    token = host.exec("print(_f(17.123456789))").strip()
    assert parse_float(token) == 17.123456789
    assert parse_float(host.exec("print(_f(None))").strip()) is None
    result = Comparison()
    result.value("a", "x", 100.0 * (1 + 5e-6), 100.0)  # float32-sized difference: fine
    assert not result.mismatches
    result.value("b", "x", 100.01, 100.0)  # a real difference
    result.decision("c", "reported", "1", "0")
    assert len(result.mismatches) == 2
