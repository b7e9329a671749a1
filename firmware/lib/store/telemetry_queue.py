"""Store-and-forward telemetry queue on flash that survives reboots and power cuts."""

# Layout of the queue directory:
#   q<first_seq>.seg  append-only segment files; record n of a segment has seq first_seq + n.
#                     Frame: magic 0xA5, payload length (1 byte), seq (u32 LE), CRC-32 (u32 LE)
#                     of the first 6 header bytes and the payload, then the payload.
#   state.json        {"head", "next", "dropped", "acked", "lost"}; replaced atomically
#                     (state.tmp, then rename) on every ack and every drop.
# A power cut can only tear the frame being appended at the end of the newest segment; on
# open that tail is discarded and appends continue in a fresh segment, so every earlier
# frame stays readable and the seqs of readable records stay consecutive.

import binascii
import json
import os
import struct

from micropython import const

from core.files import write_json

_MAX_PAYLOAD = const(240)
_HEADER_SIZE = const(10)
_MAGIC = const(0xA5)
_STATE = const("state.json")
_STATE_TMP = const("state.tmp")


def _segment_name(seq):
    return "q%010d.seg" % seq


def _open(q, dir_path, capacity, segment_records, max_payload):
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
    q.head = 1  # oldest seq still queued
    q._segments = []  # first seq of each segment file, oldest first
    q._tail_count = 0  # records in the newest segment
    q._tail_sealed = True  # the newest segment must not be appended to
    q._cursor = None  # (segment first seq, file offset, seq at that offset) for peek
    q._header = bytearray(_HEADER_SIZE)
    q._header6 = memoryview(q._header)[0:6]
    q.buf = bytearray(255)
    q._bufview = memoryview(q.buf)
    try:
        os.mkdir(q.dir)
    except OSError:
        pass  # already there
    _recover(q)


def _load_state(q, name):
    try:
        with open(q.path(name)) as f:
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
    q.remove(_STATE_TMP)
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
            q.remove(_segment_name(last))
            segments.pop()
            next_seq = max(next_seq, last)
            q._tail_sealed = True
        else:
            q._tail_count = end_seq - last
            q._tail_sealed = not clean or end_seq < next_seq
            next_seq = max(next_seq, end_seq)
    q.next_seq = next_seq
    q.head = min(head, next_seq)
    q._delete_consumed()
    excess = len(q) - q.capacity
    if excess > 0:
        q._drop_oldest(excess)


class TelemetryQueue:
    """Bounded FIFO of byte payloads on flash, each with a strictly increasing sequence number.

    RAM use is bounded: only the list of segment start seqs and one frame buffer are kept.
    """

    # Fields _open() sets, declared for the type checker: bare annotations compile to nothing
    # (the .mpy is byte-identical without them) and name nothing new.
    dir: str
    capacity: int
    segment_records: int
    max_payload: int
    dropped: int
    acked: int
    lost: int
    discarded_tail: bool
    _segments: list
    _header: bytearray
    _header6: memoryview
    _bufview: memoryview

    def __init__(self, dir_path, capacity=2000, segment_records=100, max_payload=_MAX_PAYLOAD):
        _open(self, dir_path, capacity, segment_records, max_payload)

    # ---------------------------------------------------------------- paths and state
    def path(self, name):
        return self.dir + "/" + name

    def remove(self, name):
        try:
            os.remove(self.path(name))
        except OSError:
            pass

    def _save_state(self):
        write_json(self.path(_STATE), {"head": self.head, "next": self.next_seq,
                                        "dropped": self.dropped, "acked": self.acked,
                                        "lost": self.lost}, self.path(_STATE_TMP))

    # ---------------------------------------------------------------- reading frames
    def _read_frames(self, first, offset, seq, want_from, out, max_n):
        """Read segment `first` from `offset` (where record `seq` starts).

        Records with seq >= want_from are appended to `out` (if given) until it holds max_n.
        Returns (offset, seq, clean): the position after the last good record read, and
        whether reading stopped at a clean end of file or because `out` was full.
        """
        header = self._header
        try:
            f = open(self.path(_segment_name(first)), "rb")
        except OSError:
            return offset, seq, False
        try:
            f.seek(offset)
            while True:
                if out is not None and len(out) >= max_n:
                    return offset, seq, True
                got = f.readinto(header)
                if not got:
                    return offset, seq, True
                if got < _HEADER_SIZE:
                    return offset, seq, False
                magic, length, rec_seq, crc = struct.unpack("<BBII", header)
                if magic != _MAGIC or rec_seq != seq:
                    return offset, seq, False
                payload = self._bufview[0:length]
                if f.readinto(payload) != length:
                    return offset, seq, False
                if binascii.crc32(payload, binascii.crc32(self._header6)) != crc:
                    return offset, seq, False
                if out is not None and seq >= want_from:
                    out.append((seq, bytes(payload)))
                offset += _HEADER_SIZE + length
                seq += 1
        finally:
            f.close()

    # ---------------------------------------------------------------- public API
    def __len__(self):
        return self.next_seq - self.head

    @property
    def head_seq(self):
        """Seq of the oldest queued record (equals next_seq when the queue is empty)."""
        return self.head

    def append(self, payload):
        """Store `payload` (bytes, at most max_payload long) durably; return its seq."""
        length = len(payload)
        if length > self.max_payload:
            raise ValueError("payload is %d bytes; the limit is %d" % (length, self.max_payload))
        if len(self) >= self.capacity:
            self._drop_oldest(len(self) - self.capacity + 1)
        seq = self.next_seq
        if not self._segments or self._tail_sealed or self._tail_count >= self.segment_records:
            # a file of that name can only hold an unfinished frame: start it afresh
            self.remove(_segment_name(seq))
            if not self._segments or self._segments[-1] != seq:
                self._segments.append(seq)
            self._tail_count = 0
            self._tail_sealed = False
        header = self._header
        struct.pack_into("<BBI", header, 0, _MAGIC, length, seq)
        struct.pack_into("<I", header, 6, binascii.crc32(payload, binascii.crc32(self._header6)))
        try:
            with open(self.path(_segment_name(self._segments[-1])), "ab") as f:
                f.write(header)
                f.write(payload)
        except OSError:
            self._tail_sealed = True  # a partial frame may be on flash: never append after it
            raise
        self._tail_count += 1
        self.next_seq = seq + 1
        return seq

    def peek(self, max_n, from_seq=None):
        """Up to max_n oldest records as a list of (seq, payload bytes); nothing is removed.

        With `from_seq`, start there instead of at the oldest record (to send the next batch
        while an earlier one is still waiting for its ack).
        """
        out = []
        head = self.head
        if from_seq is not None and from_seq > head:
            head = from_seq
        segments = self._segments
        index = len(segments) - 1
        while index > 0 and segments[index] > head:
            index -= 1
        while index >= 0 and index < len(segments) and len(out) < max_n and head < self.next_seq:
            first = segments[index]
            end_seq = segments[index + 1] if index + 1 < len(segments) else self.next_seq
            cursor = self._cursor
            if cursor is not None and cursor[0] == first and cursor[2] <= head:
                offset, seq = cursor[1], cursor[2]
            else:
                offset, seq = 0, first
            offset, seq, _ = self._read_frames(first, offset, seq, head, out, max_n)
            self._cursor = (first, offset, seq)
            if len(out) >= max_n:
                break
            if seq < end_seq:
                # unreadable records inside the queue (flash damage, never a power cut):
                # return what precedes them; once that is acked, skip them and count them
                if out:
                    break
                if head == self.head:
                    self.lost += end_seq - max(seq, head)
                    self.head = end_seq
                    self._save_state()
            head = end_seq
            index += 1
        return out

    def ack(self, upto_seq):
        """Remove every record with seq <= upto_seq; return how many were removed."""
        new_head = min(upto_seq + 1, self.next_seq)
        if new_head <= self.head:
            return 0
        removed = new_head - self.head
        self.acked += removed
        self.head = new_head
        self._save_state()
        self._delete_consumed()
        return removed

    # ---------------------------------------------------------------- housekeeping
    def _drop_oldest(self, count):
        self.head += count
        self.dropped += count
        self._save_state()
        self._delete_consumed()

    def _delete_consumed(self):
        """Delete segment files whose records are all below the head (state already saved)."""
        segments = self._segments
        while segments:
            if len(segments) > 1:
                if segments[1] > self.head:
                    return
            elif self.head < self.next_seq:
                return
            first = segments.pop(0)
            self.remove(_segment_name(first))
            if self._cursor is not None and self._cursor[0] == first:
                self._cursor = None
            if not segments:
                self._tail_sealed = True
