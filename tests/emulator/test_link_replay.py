"""The link trace of bench/_link_replay.py: host round trip, slice ends, and the replay board
(bench/device/emulated_replay.py) reading a trace the host wrote."""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import pytest

from bench._link_replay import Call, read_trace, slice_ends, write_trace
from tests.rigs.micropython import run_micropython
from tools.emulator import protocol as p
from tools.firmware_tree import FIRMWARE_DIR

DEVICE = Path(__file__).resolve().parents[2] / "bench" / "device"

HELLO = Call(p.OP_HELLO, 0, p.STATUS_OK, 1000,
             struct.pack("<QI", 1000, 1_700_000_000) + b"power_on")
CALLS = [
    HELLO,
    Call(p.OP_I2C_READ, 3, p.STATUS_OK, 1000, b"\x60"),
    Call(p.OP_SLEEP, 4, p.STATUS_OK, 3_600_500, b""),
    Call(p.OP_I2C_READ, 3, p.STATUS_NODEV, 3_600_500, b""),
    Call(p.OP_SLEEP, 4, p.STATUS_OK, 7_300_000, b""),
    Call(p.OP_SLEEP, 4, p.STATUS_HALT, 7_400_000, b""),
]


def _trace(tmp_path: Path, calls: list[Call]) -> Path:
    buf = io.BytesIO()
    write_trace(buf, calls)
    path = tmp_path / "link.trace"
    path.write_bytes(buf.getvalue())
    return path


def test_a_trace_reads_back_as_written(tmp_path):
    assert list(read_trace(_trace(tmp_path, CALLS))) == CALLS


def test_a_cut_trace_or_another_file_is_refused(tmp_path):
    path = _trace(tmp_path, CALLS)
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(ValueError, match="cut short"):
        list(read_trace(path))
    path.write_bytes(b"not a trace at all")
    with pytest.raises(ValueError, match="not a link trace"):
        list(read_trace(path))


def test_slices_end_where_a_recorded_sleep_ended_at_or_past_each_hour(tmp_path):
    # one end per hour crossed; an hour that a long sleep skipped gets none of its own
    assert slice_ends(_trace(tmp_path, CALLS), 3_600_000) == [3_600_500, 7_300_000]


REPLAY = """
import json, sys
sys.path[:0] = [DEVICE, BOARDS]
import emulated_replay
board = emulated_replay.Board(trace="link.trace", flash_dir="flash")
print(json.dumps([board.reset_cause(), board.epoch_s(), board.ticks_ms()]))
print(json.dumps(list(board.i2c.readfrom_mem(0x76, 0xD0, 1))))
board.sleep_ms(10)
print(json.dumps([board.ticks_ms()]))
try:
    board.feed_watchdog()  # the recorded node read I2C here: the replay stops
except OSError as e:
    print(json.dumps(["diverged", e.args[0]]))
"""


def test_the_replay_board_plays_the_hosts_trace_and_stops_where_the_node_differs(tmp_path):
    _trace(tmp_path, CALLS)
    code = (REPLAY.replace("BOARDS", repr(str(FIRMWARE_DIR / "boards")))
            .replace("DEVICE", repr(str(DEVICE))))
    proc = run_micropython(code, cwd=tmp_path)
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("[")]
    # the clock is the world's as recorded: epoch = start + 1 s, ticks since the hello
    assert lines == [["power_on", 1_700_000_001, 0], [0x60], [3_599_500], ["diverged", 5]]
    assert "replay_diverged call=3" in proc.stdout
