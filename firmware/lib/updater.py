"""The node's update client: download, verify, install into the inactive slot, switch, commit.

One persisted record (/update/state.json) says where an update stands; the slot pointer
(/slot.json, owned by /bootsel.py) says what boots. Each step writes its result atomically
before the next begins, so a power cut anywhere resumes the step or falls back to the running
release. How the node drives it, after each check-in the server accepted:

    body["update"] = updater.report()        # None: leave the field out
    reply = uplink.checkin(body)
    if reply is not None:
        updater.offer(reply.get("update"))
    while updater.step():                    # one phase per call; check in between if you like
        pass
    ...
    updater.healthy()                        # once a check-in succeeded and the sensors work
    updater.poll(uptime_s)                   # rolls back a trial that is not healthy in time

Phases: downloading -> installing -> installed -> switched (trial boot) -> committed, or the
final refused / failed / rolled_back. Final records are reported until a check-in carried them.
"""

import gc
import os
import sys

from micropython import const

import bootsel

# manifest_check (and the Ed25519 verifier under it, about 28 KB of heap) is imported only
# while a downloaded manifest is checked, and dropped again right after, so neither an idle
# node nor the install step carries it.
_CHECK_MODULES = ("manifest_check", "ed25519", "sha512")

STATE_FILE = "/update/state.json"
PART_FILE = "/update/bundle.part"
KEYS_FILE = "/keys.json"
HEADER_SIZE = const(86)  # bundle header: magic, format, manifest length, key id, signature
BUF_SIZE = const(1024)
HEALTH_TIMEOUT_S = const(120)
MAX_DOWNLOAD_ERRORS = const(20)
MAX_MEMORY_ERRORS = const(5)
FINAL = ("committed", "refused", "failed", "rolled_back")
_REPORT = {"downloading": "downloading", "installing": "installing", "installed": "installed",
           "switched": "installed"}


class _Stop(Exception):
    """Ends a download stream at a boundary (header, manifest) so it can be checked."""


class Refused(Exception):
    """The update must not be installed; `reason` is a manifest_check.REASONS code."""

    def __init__(self, reason, detail=""):
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail


class _FileGuard:
    """Size and SHA-256 of one file as it streams (manifest_check.FileCheck's rules), without
    importing the verifier: refuses the first byte past the declared size, then the hash."""

    def __init__(self, entry):
        import hashlib

        self.entry = entry
        self.left = entry["size"]
        self.hash = hashlib.sha256()

    def update(self, chunk):
        n = len(chunk)
        if n > self.left:
            raise Refused("file_too_long", self.entry["path"])
        self.left -= n
        self.hash.update(chunk)

    def finish(self):
        from binascii import hexlify

        if self.left:
            raise Refused("file_truncated", self.entry["path"])
        if hexlify(self.hash.digest()).decode() != self.entry["sha256"]:
            raise Refused("bad_file_hash", self.entry["path"])


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


def load_keys(root=""):
    """(trusted {key id: 32-byte key}, revoked [key ids]) from the pinned key ring."""
    from binascii import unhexlify

    doc = bootsel.read_json(root + KEYS_FILE) or {}
    trusted = {}
    keys = doc.get("keys", {})
    for kid in keys:
        trusted[kid] = unhexlify(keys[kid])
    return trusted, doc.get("revoked", [])


class Updater:
    """Runs one update at a time through the persisted phases; see the module docstring.

    uplink: signs the bundle download (Uplink); board_name: this node's board as manifests
    name it; clock_s: epoch seconds (for expiry); reset: reboots the node; ota: the board's
    full-firmware API (ota_begin/ota_switch/ota_running/ota_commit/ota_rollback), or None;
    feed: called while streaming (the watchdog); root: the flash root ("" on a device).
    """

    def __init__(self, uplink, board_name, clock_s, reset, root="", ota=None, feed=None,
                 health_timeout_s=HEALTH_TIMEOUT_S, hardware=None, log=None):
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
            if assignment is None or assignment.get("rollout_id") == st["rollout_id"]:
                return
            st = None
        if st is not None:
            same = assignment is not None and assignment.get("rollout_id") == st["rollout_id"]
            self._offered = same
            if assignment is not None and not same and st["phase"] in ("downloading",
                                                                       "installing"):
                _remove(self.root + PART_FILE)  # superseded by another rollout
                st = None
            else:
                return
        if assignment is not None:
            self._start(assignment)

    def _start(self, a):
        try:
            record = {"rollout_id": int(a["rollout_id"]), "release_id": int(a["release_id"]),
                      "url": str(a["url"]), "size": int(a["size"]),
                      "sha256": str(a.get("sha256", "")), "version": str(a["version"]),
                      "sequence": int(a["sequence"]), "phase": "downloading", "detail": "",
                      "checked": False, "errors": 0}
        except (KeyError, TypeError, ValueError):
            return  # not an assignment this client understands; the server will ask again
        _remove(self.root + PART_FILE)
        self.state = record
        self._offered = True
        p = self._pointer()
        if p is None:
            self._save(phase="failed", detail="this node has no A/B app slots")
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
        """Do the current phase's work; True when another phase follows right away."""
        st = self.state
        if st is None:
            return False
        phase = st["phase"]
        if not self._offered and phase in ("downloading", "installing", "installed"):
            return False  # paused or aborted on the server: hold until it is offered again
        if phase not in ("downloading", "installing", "installed"):
            return False
        try:
            if phase == "downloading":
                if not self._download():
                    return False
                self._save(phase="installing", detail="")
                return True
            if phase == "installing":
                self._install()
                self._save(phase="installed", detail=st["version"])
                return True
            if phase == "installed":
                self._switch()
                return False
        except Refused as exc:
            self._refuse(exc.reason, exc.detail)
        except MemoryError:
            self._out_of_memory(phase)
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

    def _fail(self, detail):
        _remove(self.root + PART_FILE)
        self._save(phase="failed", detail=detail[:200])

    # download ---------------------------------------------------------------------------------

    def _download(self):
        """Fetch the bundle to PART_FILE with Range resume; check the manifest as it arrives.

        True once the whole bundle is on flash and its manifest passed; False to try again
        later (the server could not be reached). Raises Refused on a refusal.
        """
        from http_client import HttpError

        st = self.state
        path = self.root + PART_FILE
        size = st["size"]
        while True:
            have = _size(path)
            if have > size:
                raise Refused("file_too_long", "bundle longer than announced")
            if not st["checked"]:
                need = HEADER_SIZE if have < HEADER_SIZE else self._manifest_end(path)
                if need > size:
                    raise Refused("malformed", "manifest longer than the bundle")
                if have >= need:  # the whole manifest is here: check it before anything else
                    self._check_download(path)
                    self._save(checked=True)
                    continue
            elif have == size:
                return True
            else:
                need = size
            try:
                status = self._fetch(path, have, need)
            except HttpError as exc:
                errors = st.get("errors", 0) + 1
                if errors >= MAX_DOWNLOAD_ERRORS:
                    self._fail("download: " + str(exc))
                else:
                    self._save(errors=errors, detail="download error %d: %s" % (errors, exc))
                return False
            if status == 416 or (status == 200 and have):
                _remove(path)  # the server cannot resume from here: start over
            elif status not in (200, 206):
                self._save(detail="download refused by the server: HTTP %d" % status)
                return False
            elif _size(path) == have and have < size:
                self._save(detail="server sent no bytes")
                return False
            self._save(detail="%d/%d bytes" % (min(_size(path), size), size))

    def _fetch(self, path, offset, stop_at):
        """One ranged GET appending to `path`; stops after `stop_at` bytes to check them."""
        st = self.state
        url = st["url"]
        headers = {"Range": "bytes=%d-" % offset} if offset else None
        limit = st["size"]
        feed = self.feed

        f = open(path, "ab")
        box = [offset]

        def sink(chunk):
            n = len(chunk)
            if box[0] + n > limit:
                raise Refused("file_too_long", "bundle longer than announced")
            f.write(chunk)
            box[0] += n
            if feed:
                feed()
            if box[0] >= stop_at < limit:
                raise _Stop()

        try:
            resp = self.uplink.get(url, headers, sink)
            status = resp.status
        except _Stop:
            status = 206
        finally:
            f.close()
        if status not in (200, 206) and _size(path) > offset:
            # An error page is not bundle data: cut it off again.
            self._truncate(path, offset)
        return status

    def _truncate(self, path, length):
        tmp = path + ".cut"
        src = open(path, "rb")
        dst = open(tmp, "wb")
        view = memoryview(self._buf)
        left = length
        while left:
            n = src.readinto(view[:min(BUF_SIZE, left)])
            if not n:
                break
            dst.write(view[:n])
            left -= n
        src.close()
        dst.close()
        os.rename(tmp, path)

    def _manifest_end(self, path):
        import manifest_check

        try:
            with open(path, "rb") as f:
                length = manifest_check.read_header(f.read(HEADER_SIZE))[0]
        except manifest_check.ManifestRejected as exc:
            raise Refused(exc.reason, exc.detail)
        return HEADER_SIZE + length

    def _consistent(self, m, length):
        """Raise unless the manifest is the release announced and accounts for every byte."""
        st = self.state
        if m["sequence"] != st["sequence"]:
            raise Refused("malformed", "bundle is not the release announced")
        if HEADER_SIZE + length + m["total_size"] != st["size"]:
            raise Refused("file_too_long", "bundle size %d differs from its manifest"
                          % st["size"])

    def _check_download(self, path):
        """Check the downloaded manifest (signature, key, expiry, sequence, board) in full."""
        gc.collect()  # the verifier and the parsed manifest need the largest free blocks
        import manifest_check

        p = self._pointer()
        try:
            with open(path, "rb") as f:
                length, kid, signature = manifest_check.read_header(f.read(HEADER_SIZE))
                digest = self._hash_stream(f, length)
                trusted, revoked = load_keys(self.root)
                # The verifier runs with only the digest in RAM, then unloads itself.
                manifest_check.verify_manifest_digest(digest, kid, signature, trusted, revoked)
                f.seek(HEADER_SIZE)
                raw = f.read(length)
            m = manifest_check.check_manifest_fields(
                raw, kid, p["committed_sequence"] if p else 0, self.board_name,
                self.clock_s(), self.hardware)
        except manifest_check.ManifestRejected as exc:
            raise Refused(exc.reason, exc.detail)
        finally:
            raw = manifest_check = None
            for name in _CHECK_MODULES:
                sys.modules.pop(name, None)
            gc.collect()
        self._consistent(m, length)
        self._save(kind=m["kind"])

    def _hash_stream(self, f, length):
        """SHA-256 of the next `length` bytes of `f`, read through the fixed buffer."""
        import hashlib

        digest = hashlib.sha256()
        view = memoryview(self._buf)
        left = length
        while left:
            n = f.readinto(view[:min(left, len(self._buf))])
            if not n:
                raise Refused("malformed", "bundle ends inside the manifest")
            digest.update(view[:n])
            left -= n
        return digest.digest()

    def _parse_manifest(self, f):
        """The manifest of the downloaded bundle, already checked when it arrived (`checked`
        is only saved after that check passed, and the bytes on flash are not changed)."""
        import json
        import struct

        if not self.state.get("checked"):
            raise Refused("malformed", "manifest was never checked")
        length = struct.unpack(">I", f.read(HEADER_SIZE)[10:14])[0]
        raw = f.read(length)
        m = json.loads(raw)
        raw = None
        gc.collect()
        self._consistent(m, length)
        return m

    # install ----------------------------------------------------------------------------------

    def _inactive(self):
        p = self._pointer()
        return bootsel.other(p["active"]) if p else "b"

    def _wipe_inactive(self):
        p = self._pointer()
        if p is not None and p["pending"] is None:
            _remove_tree(bootsel.slot_dir(bootsel.other(p["active"]), self.root))

    def _install(self):
        """Stream every file from the downloaded bundle into its target, hashing as it goes."""
        with open(self.root + PART_FILE, "rb") as f:
            m = self._parse_manifest(f)
            if m["kind"] == "firmware":
                self._install_firmware(f, m)
            else:
                self._install_app(f, m)
            if f.readinto(memoryview(self._buf)[:1]):
                raise Refused("file_too_long", "data after the last file")

    def _install_app(self, f, m):
        self._wipe_inactive()
        slot = bootsel.slot_dir(self._inactive(), self.root)
        _mkdirs(slot)
        files = m["files"]
        for i in range(len(files)):
            entry = files[i]
            target = slot + "/" + entry["path"]
            cut = target.rfind("/")
            _mkdirs(target[:cut])
            with open(target, "wb") as out:
                self._copy(f, entry, out.write)
        version = {"version": m["version"], "sequence": m["sequence"]}
        bootsel.write_json(slot + "/" + bootsel.VERSION_FILE, version)

    def _install_firmware(self, f, m):
        if self.ota is None or len(m["files"]) != 1:
            raise Refused("wrong_board", "no full-firmware update on this board")
        entry = m["files"][0]
        writer = self.ota.ota_begin(entry["size"])
        self._copy(f, entry, writer.write)
        writer.finish()

    def _copy(self, f, entry, write):
        """Copy one file's bytes from the bundle through its guard into `write`, 1 KB at a time."""
        check = _FileGuard(entry)
        view = memoryview(self._buf)
        left = entry["size"]
        feed = self.feed
        while left:
            n = f.readinto(view[:min(BUF_SIZE, left)])
            if not n:
                break
            check.update(view[:n])
            write(view[:n])
            left -= n
            if feed:
                feed()
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
