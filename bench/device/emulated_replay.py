"""Replay board: the emulated board fed from a recorded trace of its link instead of a world.

MicroPython code, not a board of any device's slot: the bench compiles it into a flash it
replays, beside the slot's boards, to run the node where there are no sockets (MicroPython's
WebAssembly port, 32-bit). The host records a node's link to its world
(bench/_link_replay.py); this board builds the same link, buses and pins as
boards/emulated.py, but its link reads the world's replies from the trace. Each request's
op and length are checked against the trace: the replayed node must make the requests the
recorded one made, else it stops (OSError); only a check-in or telemetry post may differ in
length (its status carries heap figures). The last reply of a recorded run is the world's
halt, so the node exits as it did there.
"""

import sys

from micropython import const

# emulated.py imports socket at the top and uses it only to connect: a port without sockets
# gets a stand-in for that import, dropped again once emulated is loaded
_NO_SOCKET = "socket" not in sys.modules
if _NO_SOCKET:
    try:
        import socket  # noqa: F401
        _NO_SOCKET = False
    except ImportError:
        sys.modules["socket"] = sys
import emulated  # noqa: E402
if _NO_SOCKET:
    del sys.modules["socket"]

_MAGIC = b"LLTRACE1"  # bench/_link_replay.TRACE_MAGIC
_EIO = 5
_OP_CHECKIN = const(0x43)  # emulated.py's
_OP_TELEMETRY = const(0x54)
MEASURE_RAW = False  # as the recorded run's node: its driver sets it before the board is built


class TraceLink:
    """The socket a WorldLink reads and writes, played from a trace file."""

    def __init__(self, path):
        self.f = open(path, "rb")
        if self.f.read(len(_MAGIC)) != _MAGIC:
            raise OSError(_EIO)
        self.head = bytearray(3)
        self.calls = 0
        self.uplink_lengths = 0  # check-ins or telemetry posts of another length than recorded

    def write(self, data):
        """A request: its op and length must be the recorded ones."""
        head = self.head
        if self.f.readinto(head) != 3:
            raise OSError(_EIO)  # the trace is over
        if data[0] != head[0]:
            print("0 ERROR replay_diverged call=%d op=%d recorded_op=%d"
                  % (self.calls, data[0], head[0]))
            raise OSError(_EIO)
        if data[1] != head[1] or data[2] != head[2]:
            if data[0] != _OP_CHECKIN and data[0] != _OP_TELEMETRY:
                print("0 ERROR replay_diverged call=%d op=%d length=%d recorded=%d"
                      % (self.calls, data[0], data[1] | data[2] << 8, head[1] | head[2] << 8))
                raise OSError(_EIO)
            # a check-in's status carries the node's heap figures (another port, other
            # numbers), so its length may differ; the world's reply does not depend on it
            self.uplink_lengths += 1
        self.calls += 1
        return len(data)

    def readinto(self, buf):
        """The recorded reply, in the pieces the link asks for."""
        return self.f.readinto(buf)


LAST_LINK = None  # the replayed link, for the driver's closing line


def _trace_link(trace):
    def open_link(port):
        global LAST_LINK
        LAST_LINK = TraceLink(trace)
        return LAST_LINK
    return open_link


class _Env:
    """os for emulated._connect: what a recorded run's environment said (no getenv here)."""

    def __init__(self, os_module, env):
        self.os = os_module
        self.env = env

    def getenv(self, name):
        return self.env.get(name)

    def mkdir(self, path):
        self.os.mkdir(path)


class Board(emulated.Board):
    """The emulated board on a replayed link (same buses, pins, clock and uplink)."""

    name = "emulated"

    def __init__(self, trace="link.trace", flash_dir="."):
        import os

        env = {"LAMPLIGHTER_MEASURE_RAW": "1" if MEASURE_RAW else "0"}
        emulated.os = _Env(os, env)
        emulated._open_socket = _trace_link(trace)
        try:
            emulated._connect(self, 1, flash_dir)
        finally:
            emulated.os = os

