"""Record an emulated node's link to its world, to replay it where there are no sockets.

A node on the emulated board (firmware/boards/emulated.py) gets everything from its world
through one request/response link: sensor bytes, UART frames, pin levels, the virtual clock,
check-in and telemetry replies. `RecordingProxy` sits between a node and its world and writes
that traffic to a trace file; the replay board (bench/device/emulated_replay.py) then feeds
the same node code from the trace, with no world and no socket, e.g. on MicroPython's
WebAssembly port (bench/_wasm32.py). The node's run is deterministic given its replies, so the
replayed node makes the same requests; the replay board checks each request's op and length
against the trace and stops at the first difference.

Trace file: TRACE_MAGIC, then one record per call of the link:
    op u8 | request payload length u16 LE            (what the node sent, without its payload)
    status u8 | virtual ms u64 LE | reply length u16 LE | reply payload   (the world's reply)
The reply part is the world's reply byte for byte, so the replay board reads it straight into
its link's frame buffer.
"""

from __future__ import annotations

import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from bench._wasm32 import TOP_LEVEL
from tools.emulator import protocol as p

TRACE_MAGIC = b"LLTRACE1"  # the replay board checks the same 8 bytes
REPLAY_BOARD = "emulated_replay"  # bench/device/<this>.py, MicroPython code the bench adds
# beside the slot's boards of a flash it replays (no device's slot holds it)


@dataclass(frozen=True)
class Call:
    """One request/response of the link, as the trace holds it."""

    op: int
    request_len: int
    status: int
    now_ms: int
    reply: bytes

    def encode(self) -> bytes:
        return (p.REQUEST_HEADER.pack(self.op, self.request_len)
                + p.RESPONSE_HEADER.pack(self.status, self.now_ms, len(self.reply)) + self.reply)


def write_trace(out: BinaryIO, calls: list[Call]) -> None:
    """Write a whole trace (magic and calls) to `out`."""
    out.write(TRACE_MAGIC)
    for call in calls:
        out.write(call.encode())


def read_trace(path: Path) -> Iterator[Call]:
    """The calls of a trace file, in order; ValueError if it is not one or is cut short."""
    with open(path, "rb") as f:
        if f.read(len(TRACE_MAGIC)) != TRACE_MAGIC:
            raise ValueError(f"{path} is not a link trace")
        req_size, resp_size = p.REQUEST_HEADER.size, p.RESPONSE_HEADER.size
        while True:
            head = f.read(req_size + resp_size)
            if not head:
                return
            if len(head) < req_size + resp_size:
                raise ValueError(f"{path}: a record is cut short")
            op, request_len = p.REQUEST_HEADER.unpack_from(head, 0)
            status, now_ms, size = p.RESPONSE_HEADER.unpack_from(head, req_size)
            reply = f.read(size)
            if len(reply) < size:
                raise ValueError(f"{path}: a reply is cut short")
            yield Call(op, request_len, status, now_ms, reply)


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    chunks = []
    while n:
        chunk = sock.recv(n)
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


class RecordingProxy:
    """A TCP relay between one node and its world that records the link to `trace_path`.

    Point the node at `port` instead of the world's (a Launcher: set `launcher.world.port =
    proxy.port` before it starts). One connection is recorded, i.e. one boot; `connections`
    counts them, and a run that rebooted has no single trace to replay.
    """

    def __init__(self, world_port: int, trace_path: Path) -> None:
        self.world_port = world_port
        self.trace_path = Path(trace_path)
        self.connections = 0
        self.calls = 0
        self.error: BaseException | None = None
        self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(2)
        self._server.settimeout(0.2)
        self.port = self._server.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="link-recorder", daemon=True)

    def start(self) -> RecordingProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._server.close()

    def __enter__(self) -> RecordingProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _serve(self) -> None:
        with open(self.trace_path, "wb") as out:
            out.write(TRACE_MAGIC)
            while not self._stop.is_set():
                try:
                    node, _ = self._server.accept()
                except TimeoutError:
                    continue
                except OSError:
                    return
                self.connections += 1
                try:
                    with node, socket.create_connection(("127.0.0.1", self.world_port)) as world:
                        for s in (node, world):
                            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                        self._relay(node, world, out, record=self.connections == 1)
                except OSError as e:
                    self.error = e
            out.flush()

    def _relay(self, node: socket.socket, world: socket.socket, out: BinaryIO,
               record: bool) -> None:
        req_size, resp_size = p.REQUEST_HEADER.size, p.RESPONSE_HEADER.size
        while True:
            head = _recv_exact(node, req_size)
            if head is None:
                return
            _, n = p.REQUEST_HEADER.unpack(head)
            payload = _recv_exact(node, n) if n else b""
            if payload is None:
                return
            world.sendall(head + payload)
            reply_head = _recv_exact(world, resp_size)
            if reply_head is None:
                return
            size = p.RESPONSE_HEADER.unpack(reply_head)[2]
            reply = _recv_exact(world, size) if size else b""
            if reply is None:
                return
            node.sendall(reply_head + reply)
            if record:
                out.write(head + reply_head + reply)
                self.calls += 1


def trace_summary(path: Path) -> dict[str, int]:
    """Calls, bytes and the last virtual ms of a trace (for a bench's report)."""
    calls = last_ms = 0
    for call in read_trace(path):
        calls += 1
        last_ms = call.now_ms
    return {"calls": calls, "bytes": path.stat().st_size, "last_ms": last_ms}


# Runs on the replaying port, in a flash laid out as the recorded node's was at power-up:
# the slot's app from its files (no code image), the replay board beside the slot's boards,
# the trace at the root. The node is built as core.node_main.main builds it, then run in
# slices that end where the recorded node's sleeps ended (so it makes the same requests as
# one unbroken run); after each slice, at the top level, the heap is read after a collection
# (the WebAssembly port collects only there).
REPLAY_SETUP = """
import gc, sys
sys.path[:0] = ["slots/a/lib", "slots/a/boards"]
import emulated_replay
emulated_replay.MEASURE_RAW = MEASURE_RAW_FLAG
from core import node_main
from core.files import read_json
from core.log import Log

board = emulated_replay.Board()
board.app_image_heap = 0
log = Log(clock_ms=board.ticks_ms)
version = read_json("slots/a/app_version.json") or {}
log.info("reset", cause=board.reset_cause(), board=board.name, app="slots/a",
         version=version.get("version", "unknown"))
board.start_watchdog(30000)
node = node_main.build(board, log, version)
ended = None


def run_to(world_ms):
    global ended
    if ended is not None:
        return
    try:
        node.run(None if world_ms is None else world_ms - board._boot_ms)
    except SystemExit as e:
        ended = e.args[0] if e.args else 0
    gc.collect()


def reading():
    link = emulated_replay.LAST_LINK
    print("0 INFO replay_heap ms=%d alloc=%d calls=%d"
          % (board.link.now_ms, gc.mem_alloc(), link.calls))
    if ended is not None:
        print("0 INFO replay_end code=%s calls=%d uplink_lengths=%d"
              % (ended, link.calls, link.uplink_lengths))


gc.collect()
"""
REPLAY_SLICE = "run_to(WORLD_MS)" + TOP_LEVEL + "reading()"


def slice_ends(trace: Path, every_ms: int) -> list[int]:
    """World times at which the replay can stop and read its heap, about every `every_ms`:
    the end of the first recorded sleep at or past each multiple (a sleep ends exactly there,
    so the node's run up to it is the recorded run)."""
    ends: list[int] = []
    boundary = every_ms
    for call in read_trace(trace):
        if call.op == p.OP_SLEEP and call.now_ms >= boundary:
            ends.append(call.now_ms)
            boundary = (call.now_ms // every_ms + 1) * every_ms
    return ends


# With the code on flash: the slot's code image mounted first, as core.node_main.main mounts it
# (the port's ROMFS segment must hold it already: nothing is written there)
REPLAY_MOUNT = """
from core import ondemand
if ondemand.call("core.app_image", "mount", "./slots/a")[0] != "flash":
    raise RuntimeError("the code image is not on the port's ROMFS segment")
del ondemand
"""


def replay_script(trace: Path, measure_raw: bool, every_ms: int = 3_600_000,
                  code_on_flash: bool = False) -> str:
    """The whole replay: setup, then a heap reading after boot and after each slice."""
    setup = REPLAY_SETUP.replace("MEASURE_RAW_FLAG", str(bool(measure_raw)))
    if code_on_flash:
        path_line = 'sys.path[:0] = ["slots/a/lib", "slots/a/boards"]\n'
        setup = setup.replace(path_line, path_line + REPLAY_MOUNT, 1)
    pieces = [setup, "reading()"]
    pieces += [REPLAY_SLICE.replace("WORLD_MS", str(ms)) for ms in slice_ends(trace, every_ms)]
    pieces.append(REPLAY_SLICE.replace("WORLD_MS", "None"))
    return TOP_LEVEL.join(pieces)


def replay_board_source() -> Path:
    return Path(__file__).with_name("device") / f"{REPLAY_BOARD}.py"


def prepare_replay_flash(flash: Path, trace: Path) -> None:
    """Add the replay board (compiled like the slot's) and the trace to a node's flash."""
    from ota.bundle import mpy_cross_compile

    boards = flash / "slots" / "a" / "boards"
    mpy_cross_compile(replay_board_source(), boards / f"{REPLAY_BOARD}.mpy",
                      f"boards/{REPLAY_BOARD}.py")
    (flash / "link.trace").write_bytes(trace.read_bytes())


def replay(flash: Path, port: str, measure_raw: bool, every_ms: int = 3_600_000,
           timeout: float = 600.0, image: bytes | None = None) -> list[tuple[int, int]]:
    """Replay the trace in `flash` (prepare_replay_flash) on `port`: "wasm32" (MicroPython's
    WebAssembly port) or "unix64" (the unix port the emulator runs), the node's code loaded
    from the slot's files, or on "wasm32" with `image` (the slot's ROMFS code image, stamped
    for ./slots/a) from that image, held outside the heap as a device's flash. Returns (world
    ms, heap bytes after a collection) after boot and about every `every_ms`. RuntimeError if
    the node diverged from the recording or did not reach the trace's end.
    """
    if image is not None and port != "wasm32":
        raise ValueError("only the WebAssembly port holds a code image outside its heap")
    code = replay_script(flash / "link.trace", measure_raw, every_ms, image is not None)
    if port == "wasm32":
        from bench._wasm32 import run_wasm

        proc = run_wasm(code, flash, heap_kb=256, timeout=timeout, check=False, romfs=image)
    elif port == "unix64":
        from tests.rigs.micropython import micropython_command
        from tools.emulator.launcher import NODE_HEAP_KB

        proc = subprocess.run([*micropython_command("-c", 2 * NODE_HEAP_KB), code], cwd=flash,
                              capture_output=True, text=True, timeout=timeout, check=False)
    else:
        raise ValueError(f"unknown port {port!r}")
    lines = proc.stdout.splitlines()
    if proc.returncode != 0 or not any(" replay_end " in f"{line} " for line in lines):
        tail = "\n".join(lines[-20:])
        raise RuntimeError(f"the node replayed on {port} did not reach the trace's end\n"
                           f"{tail}\n{proc.stderr[-2000:]}")
    readings: list[tuple[int, int]] = []
    for line in lines:
        if " replay_heap " in line:
            fields = dict(item.split("=", 1) for item in line.split()[3:])
            ms = int(fields["ms"])
            if readings and readings[-1][0] == ms:
                continue  # the closing slice after the halt: the node no longer ran
            readings.append((ms, int(fields["alloc"])))
    return readings
