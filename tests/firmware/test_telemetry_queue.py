"""Flash telemetry queue on MicroPython: order, acks, reboots, full-queue drops, power cuts."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
from collections.abc import Callable

import pytest

from tests.rigs.micropython import micropython_command, micropython_env

# Prints every queued record as [seq, payload text], then [len, next_seq, dropped, acked].
DUMP = """
import json
from store.telemetry_queue import TelemetryQueue
q = TelemetryQueue("q", capacity=%d, segment_records=%d)
seq = q.head_seq
while True:
    batch = q.peek(20, from_seq=seq)
    if not batch:
        break
    for s, payload in batch:
        print(json.dumps([s, payload.decode()]))
    seq = batch[-1][0] + 1
print(json.dumps([len(q), q.next_seq, q.dropped, q.acked, q.discarded_tail]))
"""


def dump(mpy: Callable[..., list], capacity: int = 2000, segment: int = 100) -> tuple[list, list]:
    """Open the queue in ./q as a freshly booted node would; return (records, counters)."""
    rows = mpy(DUMP % (capacity, segment))
    return [tuple(r) for r in rows[:-1]], rows[-1]


APPEND = """
import json
from store.telemetry_queue import TelemetryQueue
q = TelemetryQueue("q", capacity=%d, segment_records=%d)
print(json.dumps([q.append(("%s-%%d" %% i).encode()) for i in range(%d)]))
"""


def append(mpy, tag: str, count: int, capacity: int = 2000, segment: int = 100) -> list[int]:
    return mpy(APPEND % (capacity, segment, tag, count))[0]


def test_records_come_back_oldest_first_and_ack_removes_them(mpy):
    seqs = append(mpy, "a", 30, segment=8)
    assert seqs == list(range(1, 31))
    code = """
import json
from store.telemetry_queue import TelemetryQueue
q = TelemetryQueue("q", segment_records=8)
first = q.peek(5)
again = q.peek(5)
removed = q.ack(first[-1][0])
after = q.peek(3)
print(json.dumps([[s for s, _ in first], [p.decode() for _, p in first], first == again,
                  removed, len(q), [s for s, _ in after], q.ack(3), len(q)]))
"""
    first, payloads, same, removed, length, after, stale_ack, length2 = mpy(code)[0]
    assert first == [1, 2, 3, 4, 5]
    assert payloads == ["a-0", "a-1", "a-2", "a-3", "a-4"]
    assert same  # peeking removes nothing
    assert removed == 5 and length == 25
    assert after == [6, 7, 8]
    assert stale_ack == 0 and length2 == 25  # acking old seqs again changes nothing


def test_a_reboot_keeps_the_records_and_the_sequence_keeps_rising(mpy, tmp_path):
    append(mpy, "boot1", 12, segment=5)
    records, (length, next_seq, dropped, acked, torn) = dump(mpy, segment=5)
    assert [s for s, _ in records] == list(range(1, 13))
    assert (length, next_seq, dropped, torn) == (12, 13, 0, False)
    # ack everything: segment files go away, but the sequence must not restart
    mpy(
        "from store.telemetry_queue import TelemetryQueue\n"
        "q = TelemetryQueue('q', segment_records=5)\nq.ack(q.next_seq - 1)\n"
    )
    assert list((tmp_path / "q").glob("*.seg")) == []
    records, (length, next_seq, _, acked, _) = dump(mpy, segment=5)
    assert records == [] and length == 0 and next_seq == 13 and acked == 12
    assert append(mpy, "boot3", 3, segment=5) == [13, 14, 15]
    records, _ = dump(mpy, segment=5)
    assert records == [(13, "boot3-0"), (14, "boot3-1"), (15, "boot3-2")]


def test_a_full_queue_drops_the_oldest_and_counts_them(mpy):
    append(mpy, "x", 120, capacity=50, segment=16)
    records, (length, next_seq, dropped, acked, _) = dump(mpy, capacity=50, segment=16)
    assert length == 50 and dropped == 70 and acked == 0
    assert [s for s, _ in records] == list(range(71, 121))  # the newest 50 survive
    assert records[0][1] == "x-70"
    # a node rebooting with a smaller capacity trims, and counts that too
    records, (length, _, dropped, _, _) = dump(mpy, capacity=20, segment=16)
    assert length == 20 and dropped == 100
    assert [s for s, _ in records] == list(range(101, 121))


def test_an_oversized_payload_is_refused_and_nothing_is_stored(mpy):
    code = """
import json
from store.telemetry_queue import TelemetryQueue
q = TelemetryQueue("q")
q.append(b"x" * 240)
try:
    q.append(b"y" * 241)
    out = "stored"
except ValueError as e:
    out = str(e)
print(json.dumps([out, len(q), q.next_seq]))
"""
    message, length, next_seq = mpy(code)[0]
    assert "241" in message and "240" in message
    assert (length, next_seq) == (1, 2)


def test_a_half_written_record_is_discarded_at_every_cut_point(mpy, tmp_path):
    append(mpy, "r", 7, segment=100)
    segment = tmp_path / "q" / "q0000000001.seg"
    whole = segment.read_bytes()
    last_frame = 10 + len(b"r-6")
    complete = len(whole) - last_frame
    for cut in range(complete + 1, len(whole)):
        segment.write_bytes(whole[:cut])
        records, (length, next_seq, dropped, _, torn) = dump(mpy)
        assert [s for s, _ in records] == list(range(1, 7)), cut
        assert (length, next_seq, dropped, torn) == (6, 7, 0, True), cut
    # garbage after a cut, then more appends after the reboot: all readable, no seq reused
    segment.write_bytes(whole[: complete + 4] + b"\xff\x00garbage")
    assert append(mpy, "after", 3) == [7, 8, 9]
    records, (length, next_seq, _, _, _) = dump(mpy)
    assert [s for s, _ in records] == list(range(1, 10))
    assert [p for _, p in records[-3:]] == ["after-0", "after-1", "after-2"]
    assert next_seq == 10


def test_ram_stays_bounded_with_a_full_queue_on_flash(mpy):
    code = """
import gc, json
from store.telemetry_queue import TelemetryQueue
q = TelemetryQueue("q", capacity=2000, segment_records=100)
payload = b"p" * 200
for i in range(2100):
    q.append(payload)
q = None
gc.collect()
base = gc.mem_alloc()
q = TelemetryQueue("q", capacity=2000, segment_records=100)
gc.collect()
opened = gc.mem_alloc() - base
batch = q.peek(20)
peak = gc.mem_alloc() - base
q.ack(batch[-1][0])
batch = None
print(json.dumps([len(q), q.dropped, opened, peak]))
"""
    # 2000 records of 200 bytes = 420 KB on flash; the heap is capped at 64 KB
    length, dropped, opened, peak = mpy(code, heap_kb=64)[0]
    print(f"queue of 2000 x 200 B: {opened} B of heap after open, {peak} B with a batch of 20")
    assert length == 1980 and dropped == 100
    assert opened < 4096
    assert peak < 16384


# ----------------------------------------------------------------------------- power cuts

WRITER = """
import json, sys, time
from store import telemetry_queue
from store.telemetry_queue import TelemetryQueue
boot = int(sys.argv[1])

# Flash is programmed a page at a time: every write reaches the file 16 bytes per call, so a
# power cut can leave a frame (or the state temp file) half written, as on a real chip.
real_open = open
class PagedFile:
    def __init__(self, f):
        self.f = f
    def write(self, data):
        for start in range(0, len(data), 16):
            self.f.write(data[start:start + 16])
            time.sleep_us(100)
    def __getattr__(self, name):
        return getattr(self.f, name)
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        self.f.close()
def paged_open(path, mode="r"):
    f = real_open(path, mode)
    return PagedFile(f) if ("a" in mode or "w" in mode) else f
telemetry_queue.open = paged_open

q = TelemetryQueue("q", capacity=%d, segment_records=%d)
print(json.dumps(["open", q.head_seq, q.next_seq, q.dropped, q.acked, q.discarded_tail]))
pad = b"abcdefghijklmnopqrstuvwxyz" * 9
i = 0
while True:
    payload = ("%%d:%%d:" %% (boot, i)).encode() + pad[: (i * 37) %% 200]
    seq = q.append(payload)
    print(json.dumps(["a", seq, i]))
    i += 1
    if i %% 7 == 0:
        batch = q.peek(4)
        if batch:
            print(json.dumps(["acking", batch[-1][0]]))
            q.ack(batch[-1][0])
            print(json.dumps(["acked", batch[-1][0]]))
"""
CUT_CAPACITY = 60
CUT_SEGMENT = 8
PAD = b"abcdefghijklmnopqrstuvwxyz" * 9


def expected_payload(boot: int, i: int) -> str:
    return f"{boot}:{i}:" + PAD[: (i * 37) % 200].decode()


def parse_lines(text: str) -> list:
    rows = []
    for line in text.splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            pass  # the line being printed when the power went
    return rows


def check_after_cuts(
    records: list,
    counters: list,
    confirmed: dict[int, tuple[int, int]],
    in_flight: set[tuple[int, int]],
    max_ack_asked: int,
    capacity: int,
) -> None:
    """The queue's promises after a power-cut campaign, checked against what the writer saw.

    `confirmed` maps seq -> (boot, i) for every append that returned; `in_flight` holds the
    (boot, i) of appends cut by the power; acks were only ever asked up to `max_ack_asked`.
    """
    length, next_seq, dropped, acked, _ = counters
    seqs = [s for s, _ in records]
    head = seqs[0] if seqs else next_seq
    # every queued record is readable, seqs strictly increasing and consecutive
    assert seqs == list(range(head, next_seq))
    assert length == len(records) <= capacity
    # every record is one the node wrote, intact, at most once
    ids = []
    for seq, payload in records:
        boot, i, _ = payload.split(":", 2)
        ident = (int(boot), int(i))
        assert payload == expected_payload(*ident), seq
        assert confirmed.get(seq) == ident or (ident in in_flight and seq not in confirmed)
        ids.append(ident)
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)  # later boots always got higher seqs
    # every confirmed record is still queued, or was acked, or was dropped and counted
    for seq, ident in confirmed.items():
        if seq >= head:
            assert records[seq - head][1] == expected_payload(*ident), seq
    assert acked + dropped + length == next_seq - 1
    assert acked <= max_ack_asked
    never_acked_but_gone = [s for s in confirmed if max_ack_asked < s < head]
    assert dropped >= len(never_acked_but_gone)


def test_one_hundred_power_cuts_during_writes(mpy, tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(WRITER % (CUT_CAPACITY, CUT_SEGMENT))
    rng = random.Random(20261124)
    confirmed: dict[int, tuple[int, int]] = {}  # seq -> (boot, i) whose append returned
    in_flight: set[tuple[int, int]] = set()  # (boot, i) of the append cut by the power
    max_ack_asked = 0
    torn_seen = 0
    cut_while_writing = 0
    started = time.monotonic()
    for boot in range(100):
        proc = subprocess.Popen(
            [*micropython_command(script), str(boot)],
            cwd=tmp_path,
            env=micropython_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdout is not None
        opened = json.loads(proc.stdout.readline() or b'["died"]')
        if opened[0] != "open":
            proc.kill()
            pytest.fail(f"boot {boot}: queue did not open: {proc.communicate()[1].decode()}")
        _, head, next_seq, dropped, acked, torn = opened
        torn_seen += bool(torn)
        # nothing that was confirmed is lost or renumbered without being counted
        assert next_seq > max(confirmed, default=0), boot
        assert acked + dropped + (next_seq - head) == next_seq - 1, boot
        time.sleep(rng.uniform(0.0, 0.06))
        proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate()
        assert proc.returncode == -signal.SIGKILL, err.decode()
        rows = parse_lines(out.decode())
        appended = [r for r in rows if r[0] == "a"]
        cut_while_writing += bool(appended)
        for _, seq, i in appended:
            confirmed[seq] = (boot, i)
        in_flight.add((boot, len(appended)))
        for r in rows:
            if r[0] == "acking":
                max_ack_asked = max(max_ack_asked, r[1])
    elapsed = time.monotonic() - started

    records, counters = dump(mpy, CUT_CAPACITY, CUT_SEGMENT)
    length, _, dropped, acked, _ = counters
    print(
        f"100 power cuts in {elapsed:.1f} s: {cut_while_writing} during appends, "
        f"{torn_seen} torn records discarded, {len(confirmed)} appends confirmed, "
        f"{dropped} dropped (counted), {acked} acked, {length} left"
    )
    check_after_cuts(records, counters, confirmed, in_flight, max_ack_asked, CUT_CAPACITY)
    # the cuts really landed inside the write loop, some of them mid-frame
    assert cut_while_writing >= 70
    assert torn_seen >= 3
    assert dropped > 0  # the campaign filled the queue, so drops were exercised


def test_a_complete_state_temp_file_is_used_when_the_state_file_vanished(mpy, tmp_path):
    append(mpy, "s", 10, capacity=6, segment=4)  # 4 dropped, and counted in the state
    state = tmp_path / "q" / "state.json"
    saved = state.read_text()
    state.unlink()
    (tmp_path / "q" / "state.tmp").write_text(saved)  # power cut between remove and rename
    records, (length, next_seq, dropped, _, _) = dump(mpy, capacity=6, segment=4)
    assert dropped == 4 and length == 6 and next_seq == 11
    assert [s for s, _ in records] == list(range(5, 11))
    assert not (tmp_path / "q" / "state.tmp").exists()


# The same promises on littlefs v2, the ESP32's file system, running inside MicroPython on a
# RAM flash image. The power is cut at a chosen block program: that program is left partial
# (a prefix of the page written) and every later one is lost, while the interrupted operation
# runs on against the dead flash. The next boot mounts the image exactly as it was at the cut.
# The 64 KB image lives in the device heap, hence the larger heap.
LITTLEFS_CAMPAIGN = """
import json, os
from store.telemetry_queue import TelemetryQueue

class Flash:
    def __init__(self, image, cut_at, keep):
        self.image = image
        self.programs = 0
        self.cut_at = cut_at
        self.keep = keep
        self.dead = False
    def readblocks(self, block, buf, offset=0):
        start = block * 512 + offset
        buf[:] = self.image[start:start + len(buf)]
    def writeblocks(self, block, buf, offset=0):
        if self.dead:
            return
        start = block * 512 + offset
        self.programs += 1
        if self.programs == self.cut_at:
            self.dead = True
            part = self.keep %% (len(buf) + 1)
            self.image[start:start + part] = buf[:part]
            return
        self.image[start:start + len(buf)] = buf
    def ioctl(self, op, arg):
        if op == 4:
            return len(self.image) // 512
        if op == 5:
            return 512
        return 0

image = bytearray(b"\\xff" * 512 * 128)
os.VfsLfs2.mkfs(Flash(image, 0, 0))
pad = b"abcdefghijklmnopqrstuvwxyz" * 9
cuts = json.loads(%r)
for boot, (cut_at, keep) in enumerate(cuts + [[0, 0]]):
    flash = Flash(image, cut_at, keep)
    os.mount(os.VfsLfs2(flash), "/flash")
    q = TelemetryQueue("/flash/q", capacity=%d, segment_records=%d)
    if boot == len(cuts):
        break
    print(json.dumps(["open", q.head_seq, q.next_seq, q.dropped, q.acked, q.discarded_tail]))
    i = 0
    while not flash.dead:
        try:
            seq = q.append(("%%d:%%d:" %% (boot, i)).encode() + pad[: (i * 37) %% 200])
        except OSError:
            if not flash.dead:
                raise
        if flash.dead:
            break  # the power went during this append: it may or may not have been stored
        print(json.dumps(["a", seq, i]))
        i += 1
        if i %% 5 == 0:
            batch = q.peek(3)
            if batch:
                print(json.dumps(["acking", batch[-1][0]]))
                try:
                    q.ack(batch[-1][0])
                except OSError:
                    if not flash.dead:
                        raise
    print(json.dumps(["cut", boot, i]))
    os.umount("/flash")
seq = q.head_seq
while True:
    batch = q.peek(20, from_seq=seq)
    if not batch:
        break
    for s, payload in batch:
        print(json.dumps(["r", s, payload.decode()]))
    seq = batch[-1][0] + 1
print(json.dumps(["end", len(q), q.next_seq, q.dropped, q.acked, q.discarded_tail]))
"""


def test_one_hundred_power_cuts_on_littlefs(mpy):
    rng = random.Random(7)
    cuts = [[rng.randint(1, 80), rng.randint(0, 511)] for _ in range(100)]
    capacity, segment = 40, 8
    rows = mpy(LITTLEFS_CAMPAIGN % (json.dumps(cuts), capacity, segment), heap_kb=512)
    confirmed: dict[int, tuple[int, int]] = {}
    in_flight: set[tuple[int, int]] = set()
    max_ack_asked = 0
    opens = 0
    boot = -1
    records = []
    counters: list = []
    for row in rows:
        kind = row[0]
        if kind == "open":
            boot += 1
            opens += 1
            _, head, next_seq, dropped, acked, _ = row
            assert next_seq > max(confirmed, default=0), boot
            assert acked + dropped + (next_seq - head) == next_seq - 1, boot
        elif kind == "a":
            confirmed[row[1]] = (boot, row[2])
        elif kind == "acking":
            max_ack_asked = max(max_ack_asked, row[1])
        elif kind == "cut":
            in_flight.add((row[1], row[2]))
        elif kind == "r":
            records.append((row[1], row[2]))
        elif kind == "end":
            counters = row[1:]
    assert opens == 100  # the queue opened after every cut
    assert counters, "the final boot did not finish reading the queue"
    check_after_cuts(records, counters, confirmed, in_flight, max_ack_asked, capacity)
    length, _, dropped, acked, _ = counters
    print(
        f"littlefs: 100 power cuts, {len(confirmed)} appends confirmed, "
        f"{dropped} dropped (counted), {acked} acked, {length} left"
    )
    assert dropped > 0 and acked > 0


# Random operation sequences against a plain in-memory model of the queue's promises.
RANDOM_OPS = """
import json
from store.telemetry_queue import TelemetryQueue
q = TelemetryQueue("q", capacity=%d, segment_records=%d)
with open("ops.txt") as src:
    for line in src:
        op = json.loads(line)
        if op[0] == "append":
            out = q.append(("p%%d" %% op[1]).encode() + b"." * (op[1] %% 200))
        elif op[0] == "peek":
            out = [[s, p.decode()] for s, p in q.peek(op[1], from_seq=op[2])]
        elif op[0] == "ack":
            out = q.ack(op[1])
        else:
            q = TelemetryQueue("q", capacity=%d, segment_records=%d)
            out = None
        print(json.dumps([out, len(q), q.next_seq, q.dropped, q.acked]))
"""


def test_random_operations_match_a_simple_model(mpy, tmp_path):
    capacity, segment = 23, 5
    for seed in range(3):
        rng = random.Random(seed)
        for leftover in (tmp_path / "q").glob("*"):
            leftover.unlink()
        queue: list[tuple[int, str]] = []
        next_seq, dropped, acked, n = 1, 0, 0, 0
        ops, expected = [], []
        for _ in range(400):
            pick = rng.random()
            if pick < 0.55:
                n += 1
                ops.append(["append", n])
                if len(queue) == capacity:
                    queue.pop(0)
                    dropped += 1
                queue.append((next_seq, f"p{n}" + "." * (n % 200)))
                out: object = next_seq
                next_seq += 1
            elif pick < 0.75:
                count = rng.randint(1, 8)
                start = None if rng.random() < 0.5 else next_seq - rng.randint(0, 30)
                ops.append(["peek", count, start])
                out = [[s, p] for s, p in queue if start is None or s >= start][:count]
            elif pick < 0.92:
                upto = next_seq - rng.randint(0, 25)
                ops.append(["ack", upto])
                gone = [r for r in queue if r[0] <= upto]
                queue = queue[len(gone) :]
                acked += len(gone)
                out = len(gone)
            else:
                ops.append(["reopen"])
                out = None
            expected.append([out, len(queue), next_seq, dropped, acked])
        (tmp_path / "ops.txt").write_text("".join(json.dumps(op) + "\n" for op in ops))
        got = mpy(RANDOM_OPS % (capacity, segment, capacity, segment))
        for i, (op, want, have) in enumerate(zip(ops, expected, got, strict=True)):
            assert have == want, (seed, i, op)
