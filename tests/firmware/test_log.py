"""Structured log on MicroPython: line format, level filter, bounded ring of recent lines."""

from __future__ import annotations

from tests.rigs.micropython import run_micropython

# A stream that records what was written, and a value that counts how often it is formatted.
PRELUDE = """
import json
from core.log import Log
class Lines:
    def __init__(self):
        self.lines = []
    def write(self, text):
        self.lines.append(text)
class Costly:
    formatted = 0
    def __str__(self):
        Costly.formatted += 1
        return "costly"
ticks = [0]
def clock():
    ticks[0] += 10
    return ticks[0]
stream = Lines()
"""


def test_each_event_is_one_line_with_time_level_event_and_fields(mpy):
    code = (
        PRELUDE
        + """
log = Log(clock_ms=clock, stream=stream)
log.info("lamp_level", level=30, ramp_ms=10000)
log.warn("sensor_fault", sensor="bme280", reason="wrong chip id 0x00")
log.error("queue", dropped=3, temp=21.456789)
print(json.dumps(stream.lines))
"""
    )
    lines = mpy(code)[0]
    assert lines == [
        "10 INFO lamp_level level=30 ramp_ms=10000\n",
        '20 WARN sensor_fault reason="wrong chip id 0x00" sensor=bme280\n',
        "30 ERROR queue dropped=3 temp=21.46\n",
    ]


def test_events_below_the_level_are_neither_written_nor_formatted(mpy):
    code = (
        PRELUDE
        + """
log = Log(clock_ms=clock, level="warn", stream=stream)
log.debug("noise", value=Costly())
log.info("noise", value=Costly())
log.warn("kept", value=Costly())
log.set_level("debug")
log.debug("now_kept", value=Costly())
print(json.dumps([stream.lines, Costly.formatted, ticks[0]]))
"""
    )
    lines, formatted, clock_reads = mpy(code)[0]
    assert lines == ["10 WARN kept value=costly\n", "20 DEBUG now_kept value=costly\n"]
    assert formatted == 2  # the two dropped events never built their text
    assert clock_reads == 20  # nor read the clock


def test_the_ring_keeps_only_the_newest_lines_oldest_first(mpy):
    code = (
        PRELUDE
        + """
log = Log(clock_ms=clock, ring=4, stream=stream)
first = log.recent()
for i in range(10):
    log.info("tick", n=i)
recent = log.recent()
log.clear_recent()
log.info("after_upload")
print(json.dumps([first, recent, log.recent(), len(stream.lines)]))
"""
    )
    first, recent, after, written = mpy(code)[0]
    assert first == []
    assert recent == [f"{10 * (n + 1)} INFO tick n={n}" for n in range(6, 10)]
    assert after == ["110 INFO after_upload"]
    assert written == 11  # the console still got every line


def test_default_stream_is_the_console(tmp_path):
    code = "from core.log import Log\nLog(clock_ms=lambda: 7).info('boot', app='lamplighter')\n"
    proc = run_micropython(code, cwd=tmp_path)
    assert proc.stdout == "7 INFO boot app=lamplighter\n"
