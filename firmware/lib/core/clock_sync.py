"""The wall clock: set from NTP or the fleet server's signed time; readings stamped before
that are corrected (loaded at boot, to set the clock, and to correct an upload)."""

# A cold-booted ESP32's RTC starts at 2000-01-01. Readings stamped before the clock is set
# carry that RTC time; /clock.json records, for each run of the RTC since it last lost power
# with the clock unset, the queue seqs it stamped and, once known, the offset to true time:
#   [[first_seq, end_seq|null, offset_s|null, cold, rtc_at_boot, last_rtc|null], ...]
# A run continued by a soft or watchdog reset (the RTC kept counting) gets the same offset
# exactly. A run cut off by a power cut before its clock was set is placed to end when the
# next run began (the time the node was off is unknown): its offset is logged as estimated.

from micropython import const

from core.files import read_json, write_json

_VALID_FROM = const(1735689600)  # 2025-01-01: an RTC earlier than this has not been set
_FILE = const("/clock.json")
_MAX_RUNS = const(8)
_KEPT_CAUSES = const(("soft", "watchdog", "deepsleep"))  # resets that keep the RTC counting
# A set clock does not drift by minutes between syncs: an NTP time further from it than this
# (a forged reply, or a clock set wrong before) is taken only if the fleet server's signed
# time agrees with it.
_MAX_STEP_S = const(600)


def _load(node):
    runs = read_json(node.board.flash_dir.rstrip("/") + _FILE)
    return runs if isinstance(runs, list) else []


def _save(node, data):
    path = node.board.flash_dir.rstrip("/") + _FILE
    if data:
        write_json(path, data)
        return True
    try:
        import os

        os.remove(path)
    except OSError:
        pass
    return False


def _ts(payload):
    """The ts of a queued record ({"ts":N,...}), or None."""
    end = payload.find(b",")
    try:
        return int(payload[6:end])
    except ValueError:
        return None


def boot(node):
    """At boot: note the run an unset clock starts. Returns True when readings await a
    correction (the node then passes its uploads through restamp())."""
    runs = _load(node)
    if node.clock_ok:
        return bool(runs)
    queue = node.queue
    if runs and runs[-1][1] is None:
        prev = runs[-1]
        prev[1] = queue.next_seq
        if prev[0] < queue.next_seq:  # the last reading of that run, for an estimate
            last = queue.peek(1, queue.next_seq - 1)
            prev[5] = _ts(last[0][1]) if last else None
    runs.append([queue.next_seq, None, None, node.boot_reason not in _KEPT_CAUSES,
                 node.board.epoch_s(), None])
    del runs[:-_MAX_RUNS]
    return _save(node, runs)


def sync(node):
    """Set the clock from NTP, or (while it is unset) from the fleet server's signed time.
    Returns True once set."""
    board = node.board
    source, t = "ntp", None
    ntp = getattr(board, "ntp_s", None)
    if ntp is not None:
        t = ntp()
    if t is None and not node.clock_ok:
        ask = getattr(node.uplink, "server_time", None)
        if ask is not None:
            source = "fleet"
            try:
                t = ask()
            except Exception as e:  # the next attempt comes from the loop
                node.log.warn("clock_sync_failed", source=source, error=repr(e)[:80])
                return False
    if t is None or t < _VALID_FROM:
        node.log.warn("clock_sync_failed", source=source, error=None)
        return False
    if node.clock_ok and not _step_agreed(node, t, t - board.epoch_s()):
        return False
    settle(node, t, source)
    return True


def _step_agreed(node, t, step):
    """Whether NTP's `t` may move a set clock by `step` s: a small step, or one the fleet
    server's signed time confirms (unreachable: the running clock is kept)."""
    if -_MAX_STEP_S <= step <= _MAX_STEP_S:
        return True
    fleet = None
    ask = getattr(node.uplink, "server_time", None)
    if ask is not None:
        try:
            fleet = ask()
        except Exception:  # the running clock is kept; NTP is asked again later
            pass
    if fleet is not None and -_MAX_STEP_S <= fleet - t <= _MAX_STEP_S:
        return True
    node.log.warn("clock_refused", source="ntp", step_s=step, fleet=fleet is not None)
    return False


def settle(node, t, source):
    """The true time is `t`: correct the runs stamped with the unset clock, then set the RTC."""
    board = node.board
    offset = t - board.epoch_s()
    if not node.clock_ok:
        runs = _load(node)
        if runs:
            cur = runs[-1]
            cur[1] = node.queue.next_seq
            if cur[2] is None:
                cur[2] = offset
            for i in range(len(runs) - 2, -1, -1):
                run, after = runs[i], runs[i + 1]
                if run[2] is not None:
                    continue
                if not after[3]:  # the RTC kept counting into the next run: its offset holds
                    run[2] = after[2]
                else:  # cut off by a power cut: end it when the next run began
                    last = run[5] if run[5] is not None else run[4]
                    run[2] = after[4] + after[2] - last - 1
                    node.log.warn("clock_estimated", seq=run[0], end=run[1], offset_s=run[2])
            node.restamp = _save(node, runs)
        node.clock_ok = True
        node.log.warn("clock_set", source=source, offset_s=offset)
    elif offset > 2 or offset < -2:
        node.log.info("clock_set", source=source, offset_s=offset)
    board.set_epoch(t)


def restamp(node, records):
    """`records` with every RTC-stamped ts corrected, up to the first that cannot be yet;
    forgets the runs the queue has delivered."""
    runs = _load(node)
    head = node.queue.head
    kept = [r for r in runs if r[1] is None or r[1] > head]
    if len(kept) != len(runs):
        node.restamp = _save(node, kept)
    out = []
    for seq, payload in records:
        ts = _ts(payload)
        if ts is not None and ts < _VALID_FROM:
            run = None
            for r in kept:
                if r[0] <= seq and (r[1] is None or seq < r[1]):
                    run = r
            if run is not None:  # else its run was forgotten: the server names it refused
                if run[2] is None:
                    break  # its run's time is not known yet: it waits, with all after it
                payload = ('{"ts":%d' % (ts + run[2])).encode() + payload[payload.find(b","):]
        out.append((seq, payload))
    return out
