"""Open a TelemetryQueue: read its state and newest segment back, discard a torn tail (boot only)."""

# Loaded by TelemetryQueue() and dropped again: the queue's running code stays in
# telemetry_queue, this part runs once per boot.

import json
import os

from store.telemetry_queue import HEADER_SIZE, _STATE, _STATE_TMP, _segment_name


def open_queue(q, dir_path, capacity, segment_records, max_payload):
    """Set up `q` over the directory `dir_path` (created if missing) and recover its records."""
    if capacity < 1 or segment_records < 1:
        raise ValueError("capacity and segment_records must be >= 1")
    if max_payload > 255:
        raise ValueError("max_payload must be <= 255")
    q.dir = dir_path.rstrip("/")
    q.capacity = capacity
    q.segment_records = segment_records
    q.max_payload = max_payload
    q.dropped = 0  # records dropped because the queue was full (persisted)
    q.acked = 0  # records removed by ack() (persisted)
    q.lost = 0  # records found unreadable inside the queue (persisted; never expected)
    q.next_seq = 1
    q.discarded_tail = False  # a half-written record was discarded when opening
    q._head = 1  # oldest seq still queued
    q._segments = []  # first seq of each segment file, oldest first
    q._tail_count = 0  # records in the newest segment
    q._tail_sealed = True  # the newest segment must not be appended to
    q._cursor = None  # (segment first seq, file offset, seq at that offset) for peek
    q._header = bytearray(HEADER_SIZE)
    q._header6 = memoryview(q._header)[0:6]
    q._buf = bytearray(255)
    q._bufview = memoryview(q._buf)
    try:
        os.mkdir(q.dir)
    except OSError:
        pass  # already there
    _recover(q)


def _load_state(q, name):
    try:
        with open(q._path(name)) as f:
            state = json.loads(f.read())
        return (state["head"], state["next"], state["dropped"], state["acked"],
                state.get("lost", 0))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _recover(q):
    """Read the saved state and the newest segment; continue after its last good frame."""
    state = _load_state(q, _STATE)
    if state is None:
        # a file system whose rename cannot replace (FAT) lost power between removing
        # the old state and renaming the new one: the complete temp file is the newest
        state = _load_state(q, _STATE_TMP)
    q._remove(_STATE_TMP)
    segments = []
    for entry in os.ilistdir(q.dir):
        name = entry[0]
        if name.startswith("q") and name.endswith(".seg"):
            try:
                segments.append(int(name[1:-4]))
            except ValueError:
                pass
    segments.sort()
    q._segments = segments
    if state is None:
        head = segments[0] if segments else 1
        next_seq = 1
    else:
        head, next_seq, q.dropped, q.acked, q.lost = state
    if segments:
        head = max(head, segments[0])
        last = segments[-1]
        end_offset, end_seq, clean = q._read_frames(last, 0, last, last, None, 0)
        q.discarded_tail = not clean
        if end_seq == last:
            # nothing readable in the newest segment (created, or torn in its first frame)
            q._remove(_segment_name(last))
            segments.pop()
            next_seq = max(next_seq, last)
            q._tail_sealed = True
        else:
            q._tail_count = end_seq - last
            q._tail_sealed = not clean or end_seq < next_seq
            next_seq = max(next_seq, end_seq)
    q.next_seq = next_seq
    q._head = min(head, next_seq)
    q._delete_consumed()
    excess = len(q) - q.capacity
    if excess > 0:
        q._drop_oldest(excess)
