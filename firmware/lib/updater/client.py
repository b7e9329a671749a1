"""The node's update client: download, verify, install into the inactive slot, switch, commit.

Only I/O and the state machine live here; every verdict comes from updater.verify. One
persisted record (/update/state.json) says where an update stands; the slot pointer
(/slot.json, owned by /bootsel.py) says what boots. Each step does a bounded amount of work
(one ranged request of at most WINDOW bytes, or the install, or the switch) and writes its
result atomically before the next, so the node's loop, its watchdog and its check-ins go on
between steps and a power cut anywhere resumes the step or falls back to the running release.

    body["update"] = updater.report()        # None: leave the field out
    reply = uplink.checkin(body)
    if reply is not None:
        updater.offer(reply.get("update"))
    updater.step()                           # from the node's loop while updater.busy()
    updater.healthy()                        # once a check-in succeeded and the sensors work
    updater.poll(uptime_s)                   # rolls back a trial that is not healthy in time

Phases: downloading -> installing -> installed -> switched (trial boot) -> committed, or the
final refused / failed / rolled_back, reported until a check-in carried them.

The maintenance window travels with the assignment ("window": {"start", "end", "period"}, epoch
seconds of the open or next occurrence, and its period): the node downloads, installs and
switches (reboots) only inside it, by its own clock, rolling the occurrence on by the period;
outside it, or with its clock unset, the update holds where it stands.

What the download never trusts: a manifest is checked as soon as it is on flash, but that
check only lets the node stop early; the install verifies the manifest again from the bytes it
installs, and every file as it writes it. Any restart of the download (416, a 200 to a Range
request, a 206 that does not continue the file) discards the file and the earlier check.
"""

import gc
import os

from micropython import const

import bootsel
from updater import keyring
from updater.format import (
    HEADER_SIZE,
    MANIFEST_TAG,
    MAX_FILE_SIZE,
    MAX_MANIFEST_SIZE,
    MIN_VALID_CLOCK,
    Refused,
)
from updater.verify import (
    FileCheck,
    check_path,
    check_policy,
    check_signature,
    parse_manifest,
    read_header,
)

STATE_FILE = "/update/state.json"
PART_FILE = "/update/bundle.part"
BUF_SIZE = const(1024)
WINDOW = const(16384)  # bytes asked for per request (one step)
HEALTH_TIMEOUT_S = const(120)
STALL_S = const(20)  # one request may take this long; below the node's 30 s watchdog
MAX_ERRORS = const(8)  # requests in a row that brought nothing
MAX_RESTARTS = const(3)  # downloads started over from the first byte
BACKOFF_S = const(15)  # first wait after a failed request; doubles up to MAX_BACKOFF_S
MAX_BACKOFF_S = const(600)
MAX_MEMORY_ERRORS = const(5)
MAX_BUNDLE = HEADER_SIZE + MAX_MANIFEST_SIZE + MAX_FILE_SIZE
FINAL = ("committed", "refused", "failed", "rolled_back")
_REPORT = {"downloading": "downloading", "installing": "installing", "installed": "installed",
           "switched": "installed"}


class _Stop(Exception):
    """Ends a request's body once the window asked for has arrived."""


class _Restart(Exception):
    """The server's answer does not continue the file on flash: start the download over."""


def max_requests(size):
    """Requests one update may make: two per window the bundle needs, and sixteen more (the
    header and manifest stops, cut connections)."""
    return 2 * (size // WINDOW + 1) + 16


def budget(size):
    """Bytes a download of a `size`-byte bundle may take off the wire: the bundle, a quarter
    more for resumes, and two windows."""
    return size + size // 4 + 2 * WINDOW


def _window(w):
    """The assignment's maintenance window as [start, end, period] (epoch seconds), or None."""
    if not isinstance(w, dict):
        return None
    try:
        return [int(w["start"]), int(w["end"]), int(w.get("period", 0))]
    except (KeyError, TypeError, ValueError):
        return None


def window_wait(window, now):
    """0 when `now` is inside the window (or there is none), else the opening to wait for
    (-1: the clock is unset, or a window without a period has passed)."""
    if not window:
        return 0
    if now < MIN_VALID_CLOCK:
        return -1
    start, end, period = window
    if period > 0 and now >= end:
        n = (now - end) // period + 1
        start += n * period
        end += n * period
    if start <= now < end:
        return 0
    return start if now < start else -1


def _mkdirs(path):
    """Create every directory of `path` (a directory path), ignoring those that exist."""
    at = 0
    while True:
        at = path.find("/", at + 1)
        part = path if at < 0 else path[:at]
        if part and part != ".":
            try:
                os.mkdir(part)
            except OSError:
                pass
        if at < 0:
            return


def _remove_tree(path):
    """Delete a directory and everything in it (nothing if it does not exist)."""
    try:
        entries = list(os.ilistdir(path))
    except OSError:
        return
    for entry in entries:
        child = path + "/" + entry[0]
        if entry[1] == 0x4000:
            _remove_tree(child)
        else:
            os.remove(child)
    os.rmdir(path)


def _remove(path):
    try:
        os.remove(path)
    except OSError:
        pass


def _size(path):
    try:
        return os.stat(path)[6]
    except OSError:
        return 0


def _content_range_start(headers):
    """The first byte of a 206 reply's Content-Range, or None when it has none."""
    value = headers.get("content-range")
    if not value or not value.startswith("bytes "):
        return None
    try:
        return int(value[6:value.index("-")])
    except ValueError:
        return -1


class _Sink:
    """Where one ranged request's body goes: appended to the bundle file, never past `end`."""

    def __init__(self, path, have, end):
        self.path = path
        self.have = have  # bytes on flash before this request
        self.end = end  # last byte asked for (inclusive)
        self.at = have
        self.received = 0
        self.status = None
        self.restarted = False
        self.f = None

    def head(self, status, headers):
        self.status = status
        if status == 206:
            start = _content_range_start(headers)
            if start is not None and start != self.have:
                raise _Restart()
        elif status == 200:
            if self.have:
                self.restarted = True  # the whole bundle from byte 0: what was here is void
                self.at = 0
                self.end = WINDOW - 1
        elif status == 416:
            raise _Restart()
        else:
            raise _Stop()  # an error page is not bundle data: read nothing of it
        self.f = open(self.path, "wb" if self.restarted else "ab")

    def write(self, chunk):
        n = len(chunk)
        room = self.end + 1 - self.at
        if n > room:
            n = room
            chunk = chunk[:n]
        if n:
            self.f.write(chunk)
            self.at += n
            self.received += n
        if self.at > self.end:
            raise _Stop()

    def close(self):
        if self.f is not None:
            self.f.close()
            self.f = None


class Updater:
    """Runs one update at a time through the persisted phases; see the module docstring.

    uplink: signs the bundle download (Uplink); board_name: this node's board as manifests
    name it; clock_s: epoch seconds (expiry, retry times); reset: reboots the node; ota: the
    board's full-firmware API (ota_begin/ota_switch/ota_running/ota_commit/ota_rollback), or
    None; feed: the watchdog, fed while an install writes (never by a download); root: the
    flash root ("" on a device); stall_s: how long one request may take.
    """

    def __init__(self, uplink, board_name, clock_s, reset, root="", ota=None, feed=None,
                 health_timeout_s=HEALTH_TIMEOUT_S, hardware=None, log=None, stall_s=STALL_S):
        self.uplink = uplink
        self.board_name = board_name
        self.clock_s = clock_s
        self.reset = reset
        self.root = root
        self.ota = ota
        self.feed = feed
        self.health_timeout_s = health_timeout_s
        self.hardware = hardware
        self.log = log
        self.stall_s = stall_s
        self._buf = bytearray(BUF_SIZE)
        self._sent = None
        self._offered = False  # work before the switch only while the server still offers it
        _mkdirs(root + "/update")
        self.state = bootsel.read_json(root + STATE_FILE)
        self._reconcile()

    # -- persisted state ---------------------------------------------------------------------

    def _save(self, **changes):
        st = self.state
        for name in changes:
            st[name] = changes[name]
        bootsel.write_json(self.root + STATE_FILE, st)
        if self.log:
            self.log.info("update", phase=st.get("phase"), rollout=st.get("rollout_id"),
                          detail=st.get("detail", ""))

    def _pointer(self):
        return bootsel.load_pointer(self.root)

    def _reconcile(self):
        """Bring the record in line with the slot pointer after a reboot or a power cut."""
        st = self.state
        if not isinstance(st, dict) or "phase" not in st:
            self.state = None
            return
        phase = st["phase"]
        if phase not in ("installed", "switched"):
            return
        if st.get("kind") == "firmware":
            if self.ota is None:
                self._save(phase="failed", detail="no full-firmware support on this board")
            elif phase == "switched" and self.ota.ota_running() == st.get("ota_from"):
                self._save(phase="rolled_back", detail="bootloader went back to the old image")
            return
        p = self._pointer()
        seq = st["sequence"]
        pend = p["pending"] if p else None
        if pend is not None and pend.get("sequence") == seq:
            if phase != "switched":
                self._save(phase="switched")
        elif p is not None and p["committed_sequence"] >= seq and (
                (bootsel.slot_version(p["active"], self.root) or {}).get("sequence") == seq):
            self._save(phase="committed", detail="running " + st["version"])
        elif phase == "switched":
            back = p.get("rolled_back") if p else None
            reason = back.get("reason") if back and back.get("sequence") == seq else "boot failed"
            self._save(phase="rolled_back", detail=reason)

    # -- what the server sees ----------------------------------------------------------------

    def report(self):
        """The `update` field for the next check-in body, or None when there is nothing to say."""
        st = self.state
        if st is None or st["phase"] == "idle":
            self._sent = None
            return None
        state = _REPORT.get(st["phase"], st["phase"])
        self._sent = (st["rollout_id"], st["phase"])
        return {"rollout_id": st["rollout_id"], "state": state,
                "detail": str(st.get("detail", ""))[:200]}

    def offer(self, assignment):
        """Take the `update` field of a check-in reply the server accepted (None: no update)."""
        st = self.state
        sent, self._sent = self._sent, None
        if st is not None and st["phase"] in FINAL + ("idle",):
            if st["phase"] != "idle" and sent == (st["rollout_id"], st["phase"]):
                # The server has the final report: forget it, but never retry this rollout.
                self._save(phase="idle", detail="")
            if not isinstance(assignment, dict) or assignment.get("rollout_id") == st[
                    "rollout_id"]:
                return
            st = None
        if st is not None:
            same = isinstance(assignment, dict) and assignment.get("rollout_id") == st[
                "rollout_id"]
            self._offered = same
            if same and st["phase"] in ("downloading", "installing", "installed"):
                w = _window(assignment.get("window"))
                if w != st.get("window"):  # the server's occurrence moved on (or DST)
                    self._save(window=w)
            if isinstance(assignment, dict) and not same and st["phase"] in ("downloading",
                                                                             "installing"):
                _remove(self.root + PART_FILE)  # superseded by another rollout
                st = None
            else:
                return
        if isinstance(assignment, dict):
            self._start(assignment)

    def _start(self, a):
        try:
            record = {"rollout_id": int(a["rollout_id"]), "release_id": int(a["release_id"]),
                      "url": str(a["url"]), "size": int(a["size"]),
                      "version": str(a["version"])[:32], "sequence": int(a["sequence"]),
                      "phase": "downloading", "detail": "", "checked": False, "errors": 0,
                      "restarts": 0, "wire": 0, "requests": 0, "retry_at": 0,
                      "window": _window(a.get("window"))}  # type: dict
        except (KeyError, TypeError, ValueError):
            return  # not an assignment this client understands; the server will ask again
        _remove(self.root + PART_FILE)
        self.state = record
        self._offered = True
        p = self._pointer()
        if p is None:
            self._save(phase="failed", detail="this node has no A/B app slots")
            return
        if not record["url"].startswith("/"):
            self._save(phase="refused", detail="not_announced: bundle URL is not on the server")
            return
        if not HEADER_SIZE < record["size"] <= MAX_BUNDLE:
            self._save(phase="refused", detail="not_announced: size %d" % record["size"])
            return
        if record["sequence"] <= p["committed_sequence"]:
            self._save(phase="refused", detail="rollback: sequence %d is not newer than %d"
                       % (record["sequence"], p["committed_sequence"]))
            return
        self._save()

    # -- the work ----------------------------------------------------------------------------

    def busy(self):
        """Whether an update is between download and trial boot (more step() calls needed)."""
        return self.state is not None and self.state["phase"] in (
            "downloading", "installing", "installed")

    def step(self):
        """Do a bounded piece of the current phase (one request, the install or the switch).

        True when the next phase can start at once; after a download window it is False even
        though more windows follow (the node's loop steps again while busy()), so a caller
        looping on step() never downloads more than one window in one go.
        """
        st = self.state
        if st is None:
            return False
        phase = st["phase"]
        if phase not in ("downloading", "installing", "installed") or not self._offered:
            return False  # nothing to do, or paused on the server: hold until offered again
        opens = window_wait(st.get("window"), self.clock_s())
        if opens:  # outside the maintenance window: no download, install or reboot
            detail = ("waiting for the window: opens at %d" % opens if opens > 0
                      else "waiting for the window: clock unset or window passed")
            if st.get("detail") != detail:
                self._save(detail=detail)
            return False
        try:
            if phase == "downloading":
                if not self._download_step():
                    return False
                self._save(phase="installing", detail="")
                return True
            if phase == "installing":
                self._install()
                self._save(phase="installed", detail=st["version"])
                return True
            self._switch()
        except Refused as exc:
            self._refuse(exc.reason, exc.detail)
        except _GiveUp as exc:
            self._fail(str(exc))
        except MemoryError:
            self._out_of_memory(phase)
        except OSError as exc:  # flash full, a path the file system cannot take
            if phase == "installing":
                self._wipe_inactive()
            self._fail("%s: %r" % (phase, exc))
        return False

    def _out_of_memory(self, phase):
        """A MemoryError is usually fragmentation: collect and retry the phase on a later tick;
        give up (failed) only when it keeps happening."""
        gc.collect()
        count = self.state.get("oom", 0) + 1
        if count >= MAX_MEMORY_ERRORS:
            self._fail("out of memory in " + phase)
        else:
            self._save(oom=count, detail="out of memory in %s, retry %d" % (phase, count))

    def _refuse(self, reason, detail):
        _remove(self.root + PART_FILE)
        if self.state.get("kind") != "firmware" and self.state["phase"] == "installing":
            self._wipe_inactive()
        self._save(phase="refused", detail=(reason + ": " + str(detail))[:200])
        if self.log:
            self.log.warn("update_refused", reason=reason, detail=str(detail)[:80])

    def _fail(self, detail):
        _remove(self.root + PART_FILE)
        self._save(phase="failed", detail=detail[:200])

    # download ---------------------------------------------------------------------------------

    def _download_step(self):
        """One ranged request towards the whole bundle on flash, its manifest checked early.

        True once the whole bundle is on flash and its manifest passed; False to come back on
        a later step. Raises Refused when the download must not go on.
        """
        st = self.state
        wait = st.get("retry_at", 0) - self.clock_s()
        if 0 < wait <= MAX_BACKOFF_S:
            return False  # backing off after a failed request (a longer wait: the clock moved)
        path = self.root + PART_FILE
        size = st["size"]
        have = _size(path)
        if have > size:
            raise Refused("file_too_long", "bundle longer than announced")
        if st["checked"]:
            if have == size:
                return True
            stop = size
        elif have < HEADER_SIZE:
            stop = HEADER_SIZE
        else:
            stop = self._manifest_end(path)
            if stop > size:
                raise Refused("not_announced", "manifest longer than the bundle announced")
            if have >= stop:  # the manifest is here: refuse now rather than after the download
                with open(path, "rb") as f:
                    self._verify_manifest(f)
                self._save(checked=True)
                return have == size
        end = min(have + WINDOW, stop) - 1
        self._fetch(path, have, end)
        return False

    def _fetch(self, path, have, end):
        """One signed GET of bytes have..end appended to `path`, accounted and persisted."""
        st = self.state
        st["requests"] = st.get("requests", 0) + 1
        if st["requests"] > max_requests(st["size"]):
            raise Refused("over_budget", "%d requests for a %d-byte bundle"
                          % (st["requests"], st["size"]))
        sink = _Sink(path, have, end)
        error = None
        try:
            self.uplink.get(st["url"], {"Range": "bytes=%d-%d" % (have, end)}, sink,
                            self.stall_s)
        except _Stop:
            pass
        except _Restart:
            sink.restarted = True
        except OSError as exc:  # the network (http_client.HttpError), or the flash
            error = str(exc)
        finally:
            sink.close()
        st["wire"] = st.get("wire", 0) + sink.received
        if sink.restarted:
            st["checked"] = False
            st["restarts"] = st.get("restarts", 0) + 1
            if sink.status != 200:
                _remove(path)  # a 416 or a misplaced 206: nothing on flash continues
            if st["restarts"] > MAX_RESTARTS:
                raise Refused("over_budget", "download restarted %d times" % st["restarts"])
            error = error or "server restarted the download (HTTP %s)" % sink.status
        if st["wire"] > budget(st["size"]):
            raise Refused("over_budget", "%d bytes received for a %d-byte bundle"
                          % (st["wire"], st["size"]))
        if sink.status is not None and sink.status not in (200, 206, 416):
            error = error or "HTTP %d" % sink.status
        elif not error and not sink.received:
            error = "server sent no bytes"
        if error is None:
            self._save(errors=0, detail="%d/%d bytes" % (_size(path), st["size"]))
            return
        errors = st.get("errors", 0) + 1
        if errors >= MAX_ERRORS:
            raise _GiveUp("too_many_attempts: %d failed requests, last: %s" % (errors, error))
        wait = BACKOFF_S << (errors - 1)
        self._save(errors=errors, retry_at=self.clock_s() + min(wait, MAX_BACKOFF_S),
                   detail="download error %d: %s" % (errors, error))

    def _manifest_end(self, path):
        with open(path, "rb") as f:
            return HEADER_SIZE + read_header(f.read(HEADER_SIZE))[0]

    def _verify_manifest(self, f):
        """The manifest of the bundle file `f` (at its start) if this node may install it.

        Signature first, over SHA-256 of the manifest hashed from flash, with the verifier
        loaded only for that check; then the manifest is read and checked against the grammar,
        this node's policy and the release the check-in announced. Leaves `f` at the first file.
        """
        st = self.state
        length, kid, signature = read_header(f.read(HEADER_SIZE))
        digest = self._hash_stream(f, length)
        gc.collect()
        trusted, revoked = keyring.trusted_and_revoked(keyring.load(self.root))
        check_signature(digest, kid, signature, MANIFEST_TAG, trusted, revoked)
        trusted = revoked = None
        gc.collect()
        f.seek(HEADER_SIZE)
        m = parse_manifest(f.read(length))
        p = self._pointer()
        check_policy(m, kid, p["committed_sequence"] if p else 0, self.board_name,
                     self.clock_s(), self.hardware)
        if (m.sequence != st["sequence"] or m.version != st["version"]
                or HEADER_SIZE + length + m.total_size != st["size"]):
            raise Refused("not_announced", "bundle is %s (sequence %d), announced %s (%d)"
                          % (m.version, m.sequence, st["version"], st["sequence"]))
        if st.get("kind") != m.kind:
            self._save(kind=m.kind)
        return m

    def _hash_stream(self, f, length):
        """SHA-256 of the next `length` bytes of `f`, read through the fixed buffer."""
        import hashlib

        digest = hashlib.sha256()
        view = memoryview(self._buf)
        left = length
        while left:
            n = f.readinto(view[:min(left, BUF_SIZE)])
            if not n:
                raise Refused("file_truncated", "bundle ends inside the manifest")
            digest.update(view[:n])
            left -= n
        return digest.digest()

    # install ----------------------------------------------------------------------------------

    def _inactive(self):
        p = self._pointer()
        return bootsel.other(p["active"]) if p else "b"

    def _wipe_inactive(self):
        p = self._pointer()
        if p is not None and p["pending"] is None:
            _remove_tree(bootsel.slot_dir(bootsel.other(p["active"]), self.root))

    def _install(self):
        """Verify the downloaded bundle again and stream every file into its target, each one
        hashed as it is written; the manifest installed is the one verified, from these bytes."""
        with open(self.root + PART_FILE, "rb") as f:
            m = self._verify_manifest(f)
            if m.kind == "firmware":
                self._install_firmware(f, m)
            else:
                self._install_app(f, m)
            if f.readinto(memoryview(self._buf)[:1]):
                raise Refused("file_too_long", "data after the last file")

    def _install_app(self, f, m):
        self._wipe_inactive()
        slot = bootsel.slot_dir(self._inactive(), self.root)
        _mkdirs(slot)
        for path, size, sha in m.files():
            check_path(path)  # again, at the moment it becomes a file name
            target = slot + "/" + path
            cut = target.rfind("/")
            _mkdirs(target[:cut])
            with open(target, "wb") as out:
                self._copy(f, FileCheck(path, size, sha), out.write)
        bootsel.write_json(slot + "/" + bootsel.VERSION_FILE,
                           {"version": m.version, "sequence": m.sequence})

    def _install_firmware(self, f, m):
        if self.ota is None:
            raise Refused("wrong_board", "no full-firmware update on this board")
        for path, size, sha in m.files():
            writer = self.ota.ota_begin(size)
            self._copy(f, FileCheck(path, size, sha), writer.write)
            writer.finish()

    def _copy(self, f, check, write):
        """Copy one file's bytes from the bundle through its check into `write`, 1 KB at a time."""
        view = memoryview(self._buf)
        left = check.left
        feed = self.feed
        while left:
            n = f.readinto(view[:min(BUF_SIZE, left)])
            if not n:
                break
            check.update(view[:n])
            write(view[:n])
            left -= n
            if feed:
                feed()  # bounded work: one pass over the bundle, never a loop
        check.finish()

    # switch, commit, roll back -----------------------------------------------------------------

    def _switch(self):
        st = self.state
        if st.get("kind") == "firmware":
            self._save(phase="switched", ota_from=self.ota.ota_running())
            self.ota.ota_switch()
        else:
            p = self._pointer()
            p["pending"] = {"slot": bootsel.other(p["active"]), "attempts": 0,
                            "rollout_id": st["rollout_id"], "version": st["version"],
                            "sequence": st["sequence"]}
            p["rolled_back"] = None
            bootsel.save_pointer(p, self.root)
            self._save(phase="switched")
        _remove(self.root + PART_FILE)
        self.reset()

    def on_trial(self):
        """Whether the running release is an update that has not committed yet."""
        return self.state is not None and self.state["phase"] == "switched"

    def healthy(self):
        """The app proved itself (a check-in succeeded, sensors work): commit a trial release."""
        if not self.on_trial():
            return False
        st = self.state
        p = self._pointer()
        if st.get("kind") == "firmware":
            self.ota.ota_commit()
        else:
            pend = p["pending"]
            if pend is None:
                return False
            p["previous"] = p["active"]
            p["active"] = pend["slot"]
            p["pending"] = None
        p["committed_sequence"] = st["sequence"]
        bootsel.save_pointer(p, self.root)
        self._save(phase="committed", detail="running " + st["version"])
        _remove(self.root + PART_FILE)
        return True

    def poll(self, uptime_s):
        """Roll back (and reboot) a trial release that has not proved healthy in time."""
        if self.on_trial() and uptime_s > self.health_timeout_s:
            self.roll_back("not healthy within %d s" % self.health_timeout_s)

    def roll_back(self, reason):
        """Give up the trial release: boot the previous one again."""
        st = self.state
        if st.get("kind") == "firmware":
            self._save(phase="rolled_back", detail=reason)
            self.ota.ota_rollback()
        else:
            p = self._pointer()
            pend = p["pending"]
            if pend is not None:
                p["rolled_back"] = {"rollout_id": st["rollout_id"], "version": st["version"],
                                    "sequence": st["sequence"], "reason": reason}
                p["pending"] = None
                bootsel.save_pointer(p, self.root)
            self._save(phase="rolled_back", detail=reason)
        self.reset()


class _GiveUp(Exception):
    """The download cannot make progress: the update ends as failed."""
