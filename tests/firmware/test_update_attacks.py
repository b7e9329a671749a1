"""Every attack on the update path, one test each, on the MicroPython unix port through the
real client (firmware/lib/updater/client.py) against a server that plays the attacker.

Each refused attack shows the same things: the server heard `refused` or `failed` with the
reason code, the running slot (slots/a), the pointer (slot.json) and the stable root
(bootsel.py, keys.json, identity.json, boot.py, main.py) are byte for byte unchanged, nothing
was written anywhere else outside the inactive slot and /update, slot b has no
app_version.json (bootsel would never boot it), the node's loop ran to its end, its watchdog
was never fed from inside a download, and the node still boots its release afterwards.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from test_updater_kit import (
    FACTORY_SEQUENCE,
    FACTORY_VERSION,
    HEADER_SIZE,
    WINDOW,
    Answer,
    FakeServer,
    Release,
    Request,
    app_files,
    assemble,
    canonical,
    flash_tree,
    manifest_doc,
    pack_bundle,
    provision_flash,
    run_driver,
    sign_raw,
    slot_files,
    slot_matches,
    unsigned_bundle,
)

from ota.keys import generate_private_key, key_id
from tools.firmware_tree import FIRMWARE_DIR

TRUSTED = generate_private_key()
Ed25519Key = type(TRUSTED)
REVOKED = generate_private_key()
STRANGER = generate_private_key()
NEW = "1.1.0"
SEQ = 11
BIG = 40_000  # filler bytes of a release that takes several download windows


# -- the attacker's bundles -----------------------------------------------------------------


def bundle(**changes: Any) -> bytes:
    args: dict[str, Any] = {"files": app_files(NEW), "version": NEW, "sequence": SEQ,
                            "key": TRUSTED}
    args.update(changes)
    return pack_bundle(**args)


def big_release(version: str = NEW, sequence: int = SEQ) -> Release:
    return Release.make(TRUSTED, version, sequence, files=app_files(version, pad=BIG))


def evil_files(pad: int, *, traversal: bool) -> dict[str, bytes]:
    files = {"lib/app_info.py": b"VERSION = 'evil'\nHEALTHY = True\n",
             "lib/zz_pad.py": b"#" * pad}
    if traversal:
        files["../../bootsel.py"] = b"def select(root):\n    return root + '/evil'\n"
    return files


def forged_like(genuine: bytes, *, signer: Ed25519Key | None, traversal: bool = False,
                kid: str | None = None) -> bytes:
    """Attacker software as long as `genuine`, announcing the same release (version, sequence):
    signed by `signer` (None: not signed at all, the header naming `kid`, default the trusted
    key), optionally carrying a file that climbs out of the slot to the flash root."""
    pad = 0
    for _ in range(8):
        files = evil_files(pad, traversal=traversal)
        if signer is None:
            data = unsigned_bundle(files, version=NEW, sequence=SEQ, kid=kid or key_id(TRUSTED))
        else:
            doc = manifest_doc(files, version=NEW, sequence=SEQ, signer=key_id(signer))
            raw = canonical(doc)
            body = b"".join(files[e["path"]] for e in doc["files"])
            data = assemble(raw, body, kid=key_id(signer), signature=sign_raw(signer, raw))
        if len(data) == len(genuine):
            return data
        pad += len(genuine) - len(data)
    raise AssertionError("could not match the genuine bundle's size")


# -- running an attack ------------------------------------------------------------------------


@dataclass
class Outcome:
    flash: Path
    server: FakeServer
    events: list[dict]
    end: dict
    returncode: int
    stderr: str  # the end of stdout (where MicroPython prints a traceback) and stderr
    seconds: float
    before: dict[str, bytes]  # flash_tree() before the node ran

    @property
    def states(self) -> list[str]:
        return self.server.states()

    @property
    def last(self) -> dict:
        return self.server.last()


def attack(tmp_path: Path, data: bytes, *, script: Callable | None = None,
           server: dict | None = None, trusted: tuple = (TRUSTED, REVOKED),
           revoked: tuple = (REVOKED,), rounds: int = 30, **cfg: Any) -> Outcome:
    """Provision a node, let it take the rollout the server offers, and record what happened."""
    flash = tmp_path / "flash"
    with FakeServer(data, script=script, **{"sequence": SEQ, **(server or {})}) as srv:
        provision_flash(flash, list(trusted), revoked=[key_id(k) for k in revoked],
                        server=srv.url)
        before = flash_tree(tmp_path)
        started = time.monotonic()
        proc, evs = run_driver(flash, **{"rounds": rounds, "stop_when_reported": True,
                                         "advance_s": 600, "reboots": 1, **cfg})
        seconds = time.monotonic() - started
    assert not srv.errors, srv.errors
    return Outcome(flash, srv, evs, evs[-1] if evs else {}, proc.returncode,
                   proc.stdout[-2000:] + proc.stderr, seconds, before)


def assert_refused(out: Outcome, reasons: set[str] | str, phases: tuple = ("refused",)) -> None:
    """The attack failed: reported with its reason, and the node is exactly as it was."""
    reasons = {reasons} if isinstance(reasons, str) else reasons
    assert out.returncode == 0, out.stderr + json.dumps(out.events)
    assert out.end.get("event") == "end", out.events  # the node's loop went on to its end
    states = out.states
    assert states and states[-1] in phases, states
    assert out.last["detail"].split(":")[0] in reasons, out.last
    assert "installed" not in states and "committed" not in states, states
    # Nothing outside slot b and /update changed: running slot, pointer, stable root.
    tmp_path = out.flash.parent
    assert flash_tree(tmp_path) == out.before
    assert not (out.flash / "slots" / "b" / "app_version.json").exists()
    assert not (out.flash / "update" / "bundle.part").exists()
    assert out.end["feeds_in_download"] == 0
    # The node boots its release again.
    _, again = run_driver(out.flash, rounds=1)
    assert again[0] == {"event": "boot", "slot": "./slots/a", "version": FACTORY_VERSION}


def after(n: int, answer: Callable[[Request], Answer | None]) -> Callable:
    """A server script: honest for the first `n` bundle requests, then `answer`."""

    def script(server: FakeServer, request: Request) -> Answer | None:
        index = len(server.requests) - 1
        return None if index < n else answer(request)

    return script


def manifest_end(data: bytes) -> int:
    return HEADER_SIZE + int.from_bytes(data[10:14], "big")


# -- a genuine release goes through ------------------------------------------------------------


def test_genuine_bundle_installs_and_commits(tmp_path: Path) -> None:
    """The same path with a genuine bundle (three windows of files): installed into slot b,
    booted, committed."""
    release = big_release()
    out = attack(tmp_path, release.bundle)
    assert out.returncode == 0, out.stderr
    assert [e["event"] for e in out.events] == ["boot", "reset", "boot", "end"]
    assert out.events[2] == {"event": "boot", "slot": "./slots/b", "version": NEW}
    assert out.states[-1] == "committed" and "installing" in out.states, out.states
    pointer = json.loads((out.flash / "slot.json").read_text())
    assert pointer["active"] == "b" and pointer["previous"] == "a"
    assert pointer["committed_sequence"] == SEQ and pointer["pending"] is None
    assert slot_matches(out.flash, "b", release.files)
    assert set(slot_files(out.flash, "b")) == {*release.files, "app_version.json"}
    # Every request asked for one window at most, by Range.
    for request in out.server.requests:
        assert request.range and request.end is not None
        assert request.end - request.start + 1 <= WINDOW
    assert out.end["feeds_in_download"] == 0


def test_genuine_bundle_resumed_through_range_after_a_cut(tmp_path: Path) -> None:
    """The link drops in the middle of a window: the node asks for the rest from where its
    file ends, and still installs the release byte for byte."""
    release = big_release()
    cut_at = manifest_end(release.bundle) + 5000
    cuts: list[Request] = []

    def script(server: FakeServer, request: Request) -> Answer | None:
        if not cuts and request.start < cut_at <= (request.end or 0):
            cuts.append(request)  # the link drops once, 5000 bytes into the files
            return Answer(cut=cut_at - request.start)
        return None

    out = attack(tmp_path, release.bundle, script=script)
    assert out.states[-1] == "committed", out.states
    assert slot_matches(out.flash, "b", release.files)
    starts = [r.start for r in out.server.requests]
    assert cut_at in starts  # resumed exactly where the file ended
    assert all(r.range for r in out.server.requests)


def test_extra_bytes_past_the_range_are_never_stored(tmp_path: Path) -> None:
    """A server that sends more than the window asked for: the node keeps only the window."""
    release = big_release()
    out = attack(tmp_path, release.bundle, script=lambda s, r: Answer(extra=b"\xa5" * 3000))
    assert out.states[-1] == "committed", out.states
    assert set(slot_files(out.flash, "b")) == {*release.files, "app_version.json"}
    assert slot_matches(out.flash, "b", release.files)


# -- arbitrary software ------------------------------------------------------------------------

RESTARTS = {
    # the resume is refused: the node must start over, and forget the manifest it checked
    "416": lambda evil: Answer(status=416),
    # the resume is answered with the whole (other) file, from byte 0
    "200_ignoring_range": lambda evil: Answer(data=evil, ignore_range=True, status=200),
    # a 206 that says it starts at byte 0
    "206_from_zero": lambda evil: Answer(data=evil, ignore_range=True, status=206,
                                         content_range=f"bytes 0-{len(evil) - 1}/{len(evil)}"),
    # a 206 from byte 0 that does not say so: appended after the genuine manifest
    "206_unannounced_from_zero": lambda evil: Answer(data=evil, ignore_range=True,
                                                     status=206),
}
# The restarted download is verified again (the evil bundle's missing signature); a body that
# silently does not continue the file is caught by the genuine manifest's file hashes.
RESTART_REASONS = {"416": {"bad_signature"}, "200_ignoring_range": {"bad_signature"},
                   "206_from_zero": {"bad_signature"},
                   "206_unannounced_from_zero": {"bad_file_hash"}}


@pytest.mark.parametrize("traversal", [False, True], ids=["plain", "path_to_root"])
@pytest.mark.parametrize("restart", sorted(RESTARTS))
def test_arbitrary_software_via_download_restart(restart: str, traversal: bool,
                                                 tmp_path: Path) -> None:
    """The manifest of a genuine bundle is downloaded and checked; then the resume restarts
    the download and unsigned software of the same announced sequence and size is served from
    byte 0. A client that kept the earlier check would install it (and with a
    `../../bootsel.py` path, replace the root's boot selector)."""
    genuine = big_release()
    evil = forged_like(genuine.bundle, signer=None, traversal=traversal)
    first = 3  # header, manifest, one window of files: the manifest has been checked

    def script(server: FakeServer, request: Request) -> Answer | None:
        index = len(server.requests) - 1
        if index < first:
            return None
        if index == first:
            return RESTARTS[restart](evil)
        return Answer(data=evil)  # from now on the server has the evil bundle

    out = attack(tmp_path, genuine.bundle, script=script)
    starts = [r.start for r in out.server.requests]
    assert starts[:first] == [0, HEADER_SIZE, manifest_end(genuine.bundle)], starts
    restarted = out.server.requests[first]
    assert restarted.start > manifest_end(genuine.bundle) and restarted.status == {
        "416": 416, "200_ignoring_range": 200}.get(restart, 206)
    if restart in ("416", "206_from_zero"):
        assert 0 in starts[first + 1:], starts  # the node started over from byte 0
    assert_refused(out, RESTART_REASONS[restart])
    assert (out.flash / "bootsel.py").read_bytes() == (FIRMWARE_DIR / "bootsel.py").read_bytes()


def test_arbitrary_software_unsigned_bundle(tmp_path: Path) -> None:
    """A bundle with a well-formed manifest and no signature (all zeros) under the trusted id."""
    data = unsigned_bundle(app_files(NEW), version=NEW, sequence=SEQ, kid=key_id(TRUSTED))
    assert_refused(attack(tmp_path, data), "bad_signature")


@pytest.mark.parametrize("garbage", ["random", "no_magic", "huge_manifest_length"])
def test_arbitrary_software_not_a_bundle(garbage: str, tmp_path: Path) -> None:
    """Whatever the server sends in place of a bundle, nothing of it is installed."""
    real = bundle()
    data = {"random": hashlib.sha256(b"x").digest() * 30,
            "no_magic": b"LLBUNDLX" + real[8:],
            "huge_manifest_length": real[:10] + (2**31).to_bytes(4, "big") + real[14:]}[garbage]
    assert_refused(attack(tmp_path, data), {"malformed"})


def test_arbitrary_software_bad_signature(tmp_path: Path) -> None:
    data = bytearray(bundle())
    data[40] ^= 0x01  # inside the 64-byte signature (offset 22..85)
    assert_refused(attack(tmp_path, bytes(data)), "bad_signature")


def test_arbitrary_software_manifest_changed_after_signing(tmp_path: Path) -> None:
    """One byte of the signed manifest changed (sequence 11 -> 12 would pass the grammar)."""
    data = bundle(sequence=SEQ)
    at = data.index(b'"sequence":11')
    forged = data[:at] + b'"sequence":12' + data[at + 13:]
    assert_refused(attack(tmp_path, forged, server={"sequence": 12}), "bad_signature")


# -- keys -------------------------------------------------------------------------------------


def test_key_compromise_revoked_key(tmp_path: Path) -> None:
    """A release signed by a key the node has revoked (stolen, then revoked)."""
    assert_refused(attack(tmp_path, bundle(key=REVOKED)), "revoked_key")


def test_key_compromise_unknown_key(tmp_path: Path) -> None:
    """A release signed by a key the node never trusted."""
    assert_refused(attack(tmp_path, bundle(key=STRANGER)), "unknown_key")


def test_key_compromise_unknown_key_naming_the_trusted_id(tmp_path: Path) -> None:
    """A stranger's signature under the trusted key's id: the signature does not hold."""
    data = bytearray(bundle(key=STRANGER))
    data[14:22] = bytes.fromhex(key_id(TRUSTED))
    assert_refused(attack(tmp_path, bytes(data)), "bad_signature")


# -- rollback, fast-forward, freeze --------------------------------------------------------------


@pytest.mark.parametrize(("sequence", "announced"), [(9, 11), (9, 9), (10, 10), (10, 11)],
                         ids=["older_in_bundle", "older_announced", "same_announced",
                              "same_in_bundle"])
def test_rollback_attack_older_sequence(sequence: int, announced: int, tmp_path: Path) -> None:
    """An old, genuinely signed release (sequence not above the installed 10), whether the
    check-in announces it as new or as what it is."""
    data = bundle(sequence=sequence, version="0.9.0")
    out = attack(tmp_path, data, server={"sequence": announced})
    assert_refused(out, "rollback")
    if announced <= FACTORY_SEQUENCE:
        assert out.server.requests == []  # refused from the announcement, nothing downloaded


@pytest.mark.parametrize(("sequence", "key", "reasons"), [
    (50, TRUSTED, {"not_announced"}),  # signed, but not the release announced (11)
    (2147483647, STRANGER, {"unknown_key"}),  # the last sequence, by an untrusted key
    (2147483647, TRUSTED, {"not_announced"}),
], ids=["other_than_announced", "far_future_untrusted", "far_future_not_announced"])
def test_fast_forward_attack(sequence: int, key: Ed25519Key, reasons: set[str],
                             tmp_path: Path) -> None:
    """A sequence far ahead would lock the node out of every later release: it is installed
    only when signed by a trusted key and announced as exactly that release."""
    out = attack(tmp_path, bundle(sequence=sequence, key=key))
    assert_refused(out, reasons)
    assert json.loads((out.flash / "slot.json").read_text())["committed_sequence"] == 10


def test_fast_forward_attack_announced_far_future_unsigned(tmp_path: Path) -> None:
    data = unsigned_bundle(app_files(NEW), version=NEW, sequence=2147483647,
                           kid=key_id(TRUSTED))
    assert_refused(attack(tmp_path, data, server={"sequence": 2147483647}), "bad_signature")


def test_freeze_attack_expired_manifest(tmp_path: Path) -> None:
    """An old, genuinely signed manifest replayed after its expiry."""
    now = int(time.time())
    data = bundle(expires=now - 5, created=now - 100)
    assert_refused(attack(tmp_path, data), "expired")


def test_freeze_attack_expires_during_the_download(tmp_path: Path) -> None:
    """Checked before its expiry, installed after it (the server held the download back): the
    install's own check of the manifest refuses it."""
    now = int(time.time())
    release = Release.make(TRUSTED, NEW, SEQ, files=app_files(NEW, pad=BIG),
                           expires=now + 900, created=now - 100)
    held: list[Request] = []

    def script(server: FakeServer, request: Request) -> Answer | None:
        if len(server.requests) > 3 and not held:
            held.append(request)
            return Answer(status=503)
        return None

    out = attack(tmp_path, release.bundle, advance_s=600, script=script)
    assert "installing" in out.states
    assert_refused(out, "expired")


def test_freeze_attack_clock_unset(tmp_path: Path) -> None:
    """A node whose clock was never set cannot judge expiry: nothing is installed."""
    out = attack(tmp_path, bundle(), clock_offset_s=1_000_000_000 - int(time.time()))
    assert_refused(out, "clock_unset")


def test_freeze_attack_short_bundle_answered_416(tmp_path: Path) -> None:
    """The server holds less than it announced and answers 416 past its end: the loop that
    froze a node. It ends after a bounded number of requests; check-ins go on."""
    genuine = big_release()
    short = genuine.bundle[:len(genuine.bundle) - 1000]
    out = attack(tmp_path, short, server={"size": len(genuine.bundle)}, rounds=20,
                 stop_when_reported=False)
    assert_refused(out, {"too_many_attempts", "over_budget"}, phases=("refused", "failed"))
    assert len(out.server.requests) <= 40, len(out.server.requests)
    statuses = [r.status for r in out.server.requests]
    assert statuses.count(416) >= 1
    assert out.server.checkins == 20  # one per round, during the download and after it


def test_freeze_attack_clock_set_back_during_backoff(tmp_path: Path) -> None:
    """The node's clock runs a year ahead when the first request fails (503); the clock is
    then set right. The backoff must still end within its bound (at most 600 s), and the
    release commits."""
    release = Release.make(TRUSTED, NEW, SEQ)

    def script(server: FakeServer, request: Request) -> Answer | None:
        return Answer(status=503) if len(server.requests) == 1 else None

    out = attack(tmp_path, release.bundle, script=script, clock_offset_s=365 * 86400,
                 clock_set={"0": 0}, rounds=30)
    assert out.states[-1] == "committed", (out.last, len(out.server.requests))
    assert slot_matches(out.flash, "b", release.files)


def test_freeze_attack_server_always_fails(tmp_path: Path) -> None:
    """Every download request fails: bounded attempts, then `failed`; the node keeps going."""
    out = attack(tmp_path, bundle(), script=lambda s, r: Answer(status=503), rounds=60)
    assert_refused(out, "too_many_attempts", phases=("failed",))
    assert len(out.server.requests) <= 20


# -- endless data, slow retrieval ------------------------------------------------------------


ENDLESS = {
    # 200 to every Range request, then garbage with no Content-Length: each answer restarts
    # the download, and the restarts are bounded
    "endless_200": (lambda s, r: Answer(forever=True, status=200, ignore_range=True),
                    "over_budget"),
    # a 206 without Content-Range whose body starts at byte 0 and goes on for 100 KB: what
    # lands on flash is not the signed manifest
    "endless_206_from_zero": (lambda s, r: Answer(extra=b"\xa5" * 100_000, ignore_range=True,
                                                  status=206), "bad_signature"),
}


@pytest.mark.parametrize("how", sorted(ENDLESS))
def test_endless_data_attack(how: str, tmp_path: Path) -> None:
    """The server streams without end: the node takes one window per request, no more, and
    gives the update up within its byte budget."""
    release = big_release()
    answer, reason = ENDLESS[how]
    out = attack(tmp_path, release.bundle, script=answer, rounds=60)
    assert_refused(out, reason)
    assert len(out.server.requests) <= 12


@pytest.mark.parametrize("how", ["endless_206", "window_plus_extra"])
def test_endless_data_attack_cut_at_the_window(how: str, tmp_path: Path) -> None:
    """Endless or extended answers that start where they should: the node stores exactly the
    window it asked for, drops the rest, and installs the genuine release byte for byte."""
    release = big_release()
    answer = {"endless_206": Answer(forever=True),
              "window_plus_extra": Answer(extra=b"\xa5" * 30_000)}[how]
    out = attack(tmp_path, release.bundle, script=lambda s, r: answer)
    assert out.states[-1] == "committed", out.states
    assert set(slot_files(out.flash, "b")) == {*release.files, "app_version.json"}
    assert slot_matches(out.flash, "b", release.files)


def test_endless_data_attack_bundle_longer_than_announced(tmp_path: Path) -> None:
    """A bundle with bytes after its last file, announced at its full length: the manifest's
    own size says otherwise, so it is not the release announced."""
    data = bundle() + b"\x00" * 700
    out = attack(tmp_path, data)
    assert_refused(out, {"not_announced", "file_too_long"})


def test_endless_data_attack_endless_header_line(tmp_path: Path) -> None:
    """A response header line that never ends is a failed request like any other: it must not
    take the node's heap (the update then fails as too_many_attempts)."""
    out = attack(tmp_path, bundle(), script=lambda s, r: Answer(header_flood=True), rounds=60)
    assert_refused(out, {"too_many_attempts"}, phases=("failed",))


STALL_S = 0.5


@pytest.mark.parametrize("how", ["stall_before_body", "stall_mid_body", "stall_every_window"])
def test_slow_retrieval_attack(how: str, tmp_path: Path) -> None:
    """A server that stalls: each request ends at its deadline (stall_s), and the update ends
    as failed after a bounded number of them, in bounded time."""
    release = big_release()
    answers = {
        "stall_before_body": Answer(stall_s=3 * STALL_S),
        "stall_mid_body": Answer(stall_s=3 * STALL_S, stall_after=1000),
        # a little of every window, then silence
        "stall_every_window": Answer(stall_s=3 * STALL_S, stall_after=100),
    }
    out = attack(tmp_path, release.bundle, script=after(2, lambda r: answers[how]),
                 rounds=60, stall_s=STALL_S)
    assert_refused(out, "too_many_attempts", phases=("failed",))
    slow = out.server.requests[2:]
    assert 1 <= len(slow) <= 8
    assert out.seconds < 20, out.seconds


def test_slow_retrieval_attack_one_byte_per_request(tmp_path: Path) -> None:
    """Every request answered at once, but with one byte of the window asked for: no request
    stalls, yet the download would take one request per byte (40 000 here). It must end as
    failed after a bounded number of requests."""
    release = big_release()
    out = attack(tmp_path, release.bundle, script=lambda s, r: Answer(limit=1), rounds=30,
                 steps=8)
    assert len(out.server.requests) <= 40, len(out.server.requests)
    assert_refused(out, {"too_many_attempts", "over_budget"}, phases=("failed", "refused"))


def one_slow_request(answer: Answer) -> Callable:
    """The first request answered slowly (the server gives up after 5 s), then 503s."""

    def script(server: FakeServer, request: Request) -> Answer:
        return answer if len(server.requests) == 1 else Answer(status=503)

    return script


def test_slow_retrieval_attack_trickled_body(tmp_path: Path) -> None:
    """A body trickled a byte every 0.2 s (stall_s 0.5): the request must end at its deadline,
    not when 512 bytes have trickled in (100 s here; hours with the default stall_s)."""
    slow = Answer(piece=1, delay_s=0.2, max_s=5)
    out = attack(tmp_path, bundle(), script=one_slow_request(slow), rounds=60, stall_s=STALL_S)
    assert_refused(out, "too_many_attempts", phases=("failed",))
    first = out.server.requests[0]
    assert first.ended - first.at < STALL_S + 1, first.ended - first.at


def test_slow_retrieval_attack_trickled_header(tmp_path: Path) -> None:
    """A header line trickled a byte every 0.1 s and never finished: the request must still end
    at its deadline (the node must not hang inside one step)."""
    out = attack(tmp_path, bundle(), script=one_slow_request(Answer(header_trickle_s=0.1)),
                 rounds=60, stall_s=STALL_S)
    assert_refused(out, "too_many_attempts", phases=("failed",))
    first = out.server.requests[0]
    assert first.ended - first.at < STALL_S + 1, first.ended - first.at


def test_garbled_header_is_a_failed_request(tmp_path: Path) -> None:
    """A header line with bytes that are not UTF-8: the request fails like any other, the
    node's loop goes on, and the update ends after a bounded number of attempts."""
    out = attack(tmp_path, bundle(), script=lambda s, r: Answer(raw_header=b"X-Junk: \xff\xfe"),
                 rounds=60)
    assert_refused(out, "too_many_attempts", phases=("failed",))


# -- the network, the server ------------------------------------------------------------------


def test_transient_name_resolution_failure_is_retried(tmp_path: Path) -> None:
    """Name resolution fails twice during the download (the node resolves the server again
    after any failed connection; a cellular or Wi-Fi link drops DNS now and then): the
    requests are retried and the release still commits."""
    release = Release.make(TRUSTED, NEW, SEQ)
    out = attack(tmp_path, release.bundle, dns_failures=2)
    assert out.returncode == 0, out.stderr
    assert out.states[-1] == "committed", out.last
    assert slot_matches(out.flash, "b", release.files)


def test_reports_the_version_it_runs(tmp_path: Path) -> None:
    """The server announces 1.1.0 and serves another release signed by the trusted key, 1.1.9,
    with the same sequence and size. The node may install it (the format compares sequence and
    size only) or refuse it (not_announced), but never report it runs what it does not."""
    other = Release.make(TRUSTED, "1.1.9", SEQ)
    out = attack(tmp_path, other.bundle, server={"version": NEW})
    last = out.last
    if last["state"] == "committed":
        running = json.loads((out.flash / "slots" / "b" / "app_version.json").read_text())
        assert running["version"] == "1.1.9"
        assert last["detail"] == "running 1.1.9", last
    else:
        assert_refused(out, "not_announced")


# -- mix and match, wrong targets, paths ------------------------------------------------------


def test_mix_and_match_attack(tmp_path: Path) -> None:
    """Release A's signed header and manifest followed by release B's file bytes (same sizes)."""
    ours = bundle()
    theirs = bundle(files=app_files("1.2.0"), version="1.2.0", sequence=12)
    body = sum(len(b) for b in app_files(NEW).values())
    assert_refused(attack(tmp_path, ours[:-body] + theirs[-body:]), "bad_file_hash")


def test_mix_and_match_attack_swapped_between_requests(tmp_path: Path) -> None:
    """The server swaps release A for release B (same size, both signed by the trusted key)
    once A's manifest was checked: the install verifies every file against A's manifest."""
    a = big_release(NEW, SEQ)
    b = big_release("1.1.9", SEQ)
    assert len(a.bundle) == len(b.bundle)
    out = attack(tmp_path, a.bundle, script=after(3, lambda r: Answer(data=b.bundle)))
    assert_refused(out, "bad_file_hash")


def test_mix_and_match_attack_lying_hash(tmp_path: Path) -> None:
    """A manifest that signs one set of bytes while the bundle carries another, same sizes."""
    shipped = app_files(NEW)
    declared = dict(shipped, **{"lib/filler.py": b"#" * len(shipped["lib/filler.py"])})
    assert_refused(attack(tmp_path, bundle(declared=declared)), "bad_file_hash")


def test_wrong_software_other_board(tmp_path: Path) -> None:
    assert_refused(attack(tmp_path, bundle(board=("esp32_devkitc",))), "wrong_board")


@pytest.mark.parametrize("node_hardware", ["rev-a", None], ids=["other", "unknown"])
def test_wrong_hardware(node_hardware: str | None, tmp_path: Path) -> None:
    """A release for other hardware revisions (rev-b, rev-c): refused on a rev-a node, and on a
    node that does not know its revision (the format: 'hardware listed and node's not in it')."""
    data = bundle(hardware=("rev-b", "rev-c"))
    cfg = {} if node_hardware is None else {"hardware": node_hardware}
    assert_refused(attack(tmp_path, data, **cfg), "wrong_hardware")


def test_right_hardware_installs(tmp_path: Path) -> None:
    out = attack(tmp_path, bundle(hardware=("rev-b", "rev-c")), hardware="rev-c")
    assert out.states[-1] == "committed", out.states


BAD_PATHS = {
    "parent": "../../bootsel.py",
    "parent_inside": "lib/../../../bootsel.py",
    "leading_slash": "/bootsel.py",
    "dotfile": ".boot.py",
    "dot_dir": "lib/.hidden/x.py",
    "dot": "lib/./x.py",
    "empty_part": "lib//x.py",
    "trailing_slash": "lib/",
    "backslash": "lib\\..\\..\\bootsel.py",
    "reserved": "app_version.json",
    "space": "lib/ x.py",
    "too_long": "lib/" + "a" * 93 + ".py",
}


@pytest.mark.parametrize("case", sorted(BAD_PATHS))
def test_path_traversal_in_manifest(case: str, tmp_path: Path) -> None:
    """Paths that leave the slot or hide in it, signed by the trusted key (which the host's
    builder would never do): refused as malformed before anything is written."""
    bad = BAD_PATHS[case]
    files = {"lib/app_info.py": b"VERSION = 'evil'\nHEALTHY = True\n", bad: b"owned = 1\n"}
    doc = manifest_doc(files, version=NEW, sequence=SEQ, signer=key_id(TRUSTED))
    raw = canonical(doc)  # json.dumps escapes the backslash: still not a plain path
    body = b"".join(files[e["path"]] for e in doc["files"])
    data = assemble(raw, body, kid=key_id(TRUSTED), signature=sign_raw(TRUSTED, raw))
    out = attack(tmp_path, data)
    assert_refused(out, "malformed")
    if case not in ("backslash", "too_long"):  # those fail the string grammar first
        assert "path" in out.last["detail"], out.last
    # Refused from the manifest: no byte of the files was even asked for.
    assert all(r.start < manifest_end(data) for r in out.server.requests)
    assert not list((out.flash / "slots" / "b").rglob("*.py"))


@pytest.mark.parametrize("case", ["unsorted", "duplicate", "file_and_directory"])
def test_manifest_file_list_tricks(case: str, tmp_path: Path) -> None:
    """Signed file lists that could make two entries land on one file: refused as malformed."""
    info = b"VERSION = 'evil'\nHEALTHY = True\n"
    if case == "unsorted":
        entries = [("lib/z.py", b"z = 1\n"), ("lib/app_info.py", info)]
    elif case == "duplicate":
        entries = [("lib/app_info.py", b"VERSION = 'a'\n"), ("lib/app_info.py", info)]
    else:
        entries = [("lib", b"x"), ("lib/app_info.py", info)]
    doc = manifest_doc({}, version=NEW, sequence=SEQ, signer=key_id(TRUSTED))
    doc["files"] = [{"path": p, "sha256": hashlib.sha256(b).hexdigest(), "size": len(b)}
                    for p, b in entries]
    doc["total_size"] = sum(len(b) for _, b in entries)
    raw = canonical(doc)
    data = assemble(raw, b"".join(b for _, b in entries), kid=key_id(TRUSTED),
                    signature=sign_raw(TRUSTED, raw))
    assert_refused(attack(tmp_path, data), "malformed")


# -- the node after a refusal ------------------------------------------------------------------


def test_refused_rollout_is_not_retried_once_reported(tmp_path: Path) -> None:
    """After the refusal reached the server, the same offer is ignored (no second download)."""
    out = attack(tmp_path, bundle(key=STRANGER))
    assert out.states[-1] == "refused"
    with FakeServer(bundle(key=STRANGER), sequence=SEQ) as server:
        identity = json.loads((out.flash / "identity.json").read_text())
        identity["server"] = server.url
        (out.flash / "identity.json").write_text(json.dumps(identity))
        server.finished = lambda device: False  # a confused server keeps offering it
        run_driver(out.flash, rounds=4)
        assert server.states() == [] and server.requests == []
    state = json.loads((out.flash / "update" / "state.json").read_text())
    assert state["phase"] == "idle" and state["rollout_id"] == 7


@pytest.mark.parametrize(("ooms", "ends"), [(2, "committed"), (6, "failed")])
def test_running_out_of_memory_is_retried_then_given_up(ooms: int, ends: str,
                                                        tmp_path: Path) -> None:
    """Fragmentation can fail one manifest check: it is retried; only a persistent failure is
    final, and either way the running release stays until a verified one commits."""
    out = attack(tmp_path, bundle(), rounds=12,
                 fail_hook=["updater.client", "Updater._verify_manifest", ooms])
    assert out.returncode == 0, out.stderr
    assert out.states[-1] == ends, out.states
    if ends == "failed":
        assert out.last["detail"] == "out of memory in downloading"
        assert slot_matches(out.flash, "a", app_files(FACTORY_VERSION))
        assert flash_tree(out.flash.parent) == out.before
