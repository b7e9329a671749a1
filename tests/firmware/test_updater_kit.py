"""Shared kit for the update-client tests: bundles, a provisioned flash, a fake server, a driver.

Bundles are built here by hand (canonical manifest bytes, signed with ota.signing), not with
the host's manifest builder, so a test can also sign what the host would never build: paths
that climb out of the slot, unsorted files, anything a stolen or misused key could sign.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ota.bundle import mpy_cross_compile
from ota.keys import key_id, raw_public_key
from ota.signing import sign_tagged
from tests.rigs.device_signing import reply_headers
from tests.rigs.micropython import micropython_command, micropython_env
from tools.firmware_tree import FIRMWARE_DIR, FIRMWARE_LIB

FACTORY_VERSION = "1.0.0"
FACTORY_SEQUENCE = 10
MAGIC = b"LLBUNDLE"
BUNDLE_FORMAT = 1
HEADER = struct.Struct(">8sHI8s64s")  # magic, format, manifest length, key id, signature
HEADER_SIZE = HEADER.size  # 86
MANIFEST_TAG = b"LLv1-manifest"
WINDOW = 16 * 1024  # the most one download request may ask for
FINAL = ("committed", "failed", "rolled_back", "refused")
# Every reason a refusal or failure may start with (docs/update-format.md).
REASONS = frozenset({
    "malformed", "revoked_key", "unknown_key", "bad_signature", "clock_unset", "expired",
    "rollback", "wrong_board", "wrong_hardware", "file_too_long", "file_truncated",
    "bad_file_hash", "over_budget", "too_many_attempts", "not_announced"})
# The files at the flash root that no app update may change.
STABLE_ROOT = ("bootsel.py", "keys.json", "identity.json", "boot.py", "main.py")
FACTORY_BOOT_PY = b"# factory boot.py: runs bootsel, never replaced by an app update\n"
FACTORY_MAIN_PY = b"# factory main.py: starts the node from the selected slot\n"


def app_files(version: str, *, healthy: bool = True, pad: int = 300) -> dict[str, bytes]:
    """A tiny app release: its version module (importable from the slot) plus a filler file."""
    info = f"VERSION = {version!r}\nHEALTHY = {healthy!r}\n".encode()
    filler = (f"# filler of release {version}\n" * (pad // 20 + 1)).encode()[:pad]
    return {"lib/app_info.py": info, "lib/filler.py": filler}


# -- bundles ---------------------------------------------------------------------------------


def path_order(path: str) -> list[str]:
    """The manifest's file order: by the list of parts ('/' before every other character)."""
    return path.split("/")


def canonical(doc: dict[str, Any]) -> bytes:
    """Canonical JSON: sorted keys, no whitespace, ASCII. Nothing about the values is checked."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def file_entries(files: dict[str, bytes], *, sort: bool = True) -> list[dict[str, Any]]:
    paths = sorted(files, key=path_order) if sort else list(files)
    return [{"path": p, "sha256": hashlib.sha256(files[p]).hexdigest(), "size": len(files[p])}
            for p in paths]


def manifest_doc(files: dict[str, bytes], *, version: str, sequence: int, signer: str,
                 board: tuple[str, ...] = ("emulated",), expires: int | None = None,
                 created: int | None = None, kind: str = "app",
                 hardware: tuple[str, ...] | None = None, sort: bool = True) -> dict[str, Any]:
    """The manifest of a release carrying `files` (in manifest order unless sort=False)."""
    now = int(time.time())
    entries = file_entries(files, sort=sort)
    doc: dict[str, Any] = {
        "board": list(board), "created": now - 60 if created is None else created,
        "expires": now + 86400 if expires is None else expires, "files": entries,
        "format": 1, "key_id": signer, "kind": kind, "sequence": sequence,
        "total_size": sum(e["size"] for e in entries), "version": version}
    if hardware is not None:
        doc["hardware"] = list(hardware)
    return doc


def sign_raw(key: Ed25519PrivateKey, raw: bytes) -> bytes:
    """The signature a release key makes over manifest bytes, whatever they say."""
    return sign_tagged(key, MANIFEST_TAG, raw)


def assemble(raw: bytes, body: bytes, *, kid: str, signature: bytes) -> bytes:
    """Header + manifest bytes + file bytes."""
    return HEADER.pack(MAGIC, BUNDLE_FORMAT, len(raw), bytes.fromhex(kid), signature) + raw + body


def pack_bundle(files: dict[str, bytes], *, version: str, sequence: int,
                key: Ed25519PrivateKey, board: tuple[str, ...] = ("emulated",),
                expires: int | None = None, created: int | None = None,
                declared: dict[str, bytes] | None = None, kind: str = "app",
                hardware: tuple[str, ...] | None = None, sort: bool = True) -> bytes:
    """A signed bundle carrying `files`; the manifest describes `declared` (default: the same).

    Declaring other contents than the bytes shipped is how the tests forge a bundle whose
    files do not match their signed hashes (same paths and sizes, other bytes).
    """
    kid = key_id(key)
    described = declared if declared is not None else files
    doc = manifest_doc(described, version=version, sequence=sequence, signer=kid, board=board,
                       expires=expires, created=created, kind=kind, hardware=hardware, sort=sort)
    raw = canonical(doc)
    order = [e["path"] for e in doc["files"]]
    body = b"".join(files[p] for p in order)
    return assemble(raw, body, kid=kid, signature=sign_raw(key, raw))


def signed_manifest_bundle(doc: dict[str, Any], body: bytes, key: Ed25519PrivateKey) -> bytes:
    """A bundle whose manifest is exactly `doc` (canonical), signed by `key`, then `body`."""
    raw = canonical(doc)
    return assemble(raw, body, kid=key_id(key), signature=sign_raw(key, raw))


def unsigned_bundle(files: dict[str, bytes], *, version: str, sequence: int, kid: str,
                    **manifest: Any) -> bytes:
    """A bundle with a well-formed manifest naming key `kid` but no valid signature."""
    doc = manifest_doc(files, version=version, sequence=sequence, signer=kid, **manifest)
    raw = canonical(doc)
    body = b"".join(files[e["path"]] for e in doc["files"])
    return assemble(raw, body, kid=kid, signature=bytes(64))


def manifest_of(bundle: bytes) -> dict[str, Any]:
    """The manifest a bundle carries (parsed, unchecked)."""
    length = HEADER.unpack(bundle[:HEADER_SIZE])[2]
    return json.loads(bundle[HEADER_SIZE:HEADER_SIZE + length])


def files_of(bundle: bytes) -> dict[str, bytes]:
    """The files a bundle carries, cut as its manifest says."""
    length = HEADER.unpack(bundle[:HEADER_SIZE])[2]
    at = HEADER_SIZE + length
    out = {}
    for entry in manifest_of(bundle)["files"]:
        out[entry["path"]] = bundle[at:at + entry["size"]]
        at += entry["size"]
    return out


@dataclass
class Release:
    """A bundle with what it was made from, to check a slot against."""

    version: str
    sequence: int
    files: dict[str, bytes]
    bundle: bytes

    @classmethod
    def make(cls, key: Ed25519PrivateKey, version: str, sequence: int, **opts: Any) -> Release:
        files = opts.pop("files", None) or app_files(version)
        return cls(version, sequence, files,
                   pack_bundle(files, version=version, sequence=sequence, key=key, **opts))


# -- the node's flash -------------------------------------------------------------------------


def provision_flash(flash: Path, trusted: list[Ed25519PrivateKey], *, revoked: list[str] = (),
                    server: str = "http://127.0.0.1:9", identity: dict | None = None) -> None:
    """Lay out a node's flash as the factory does: boot files at the root, app in slot a."""
    flash.mkdir(parents=True, exist_ok=True)
    shutil.copy(FIRMWARE_DIR / "bootsel.py", flash / "bootsel.py")
    (flash / "boot.py").write_bytes(FACTORY_BOOT_PY)
    (flash / "main.py").write_bytes(FACTORY_MAIN_PY)
    slot = flash / "slots" / "a"
    for path, data in app_files(FACTORY_VERSION).items():
        (slot / path).parent.mkdir(parents=True, exist_ok=True)
        (slot / path).write_bytes(data)
    (slot / "app_version.json").write_text(json.dumps(
        {"version": FACTORY_VERSION, "sequence": FACTORY_SEQUENCE}))
    (flash / "slot.json").write_text(json.dumps(
        {"active": "a", "previous": None, "pending": None, "rolled_back": None,
         "committed_sequence": FACTORY_SEQUENCE}))
    keys = {key_id(k): raw_public_key(k).hex() for k in trusted}
    (flash / "keys.json").write_text(json.dumps(
        {"keys": keys, "revoked": list(revoked), "serial": 0}))
    # a plain-HTTP test server (TLS is tests/firmware/test_tls_link.py's)
    ident = identity or {"device_id": "node-test", "secret": "00" * 32, "server": server,
                         "insecure_http": True}
    (flash / "identity.json").write_text(json.dumps(ident))


def slot_matches(flash: Path, slot: str, files: dict[str, bytes]) -> bool:
    """Whether every file of a release is in `slot` byte for byte."""
    base = flash / "slots" / slot
    return all((base / p).is_file() and (base / p).read_bytes() == b for p, b in files.items())


def slot_files(flash: Path, slot: str) -> dict[str, bytes]:
    """Every file in a slot, by its path inside the slot."""
    base = flash / "slots" / slot
    return {p.relative_to(base).as_posix(): p.read_bytes()
            for p in sorted(base.rglob("*")) if p.is_file()}


def flash_tree(root: Path, *, flash: str = "flash",
               skip: tuple[str, ...] = ("slots/b/", "update/", "driver.")) -> dict[str, bytes]:
    """Every file under `root` (the flash's parent, so that a path climbing out of the flash
    shows too) except, inside the flash, those starting with `skip` (by default the inactive
    slot, the client's /update and the test driver)."""
    prefixes = tuple(f"{flash}/{s}" for s in skip)
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and not rel.startswith(prefixes):
            out[rel] = path.read_bytes()
    return out


# -- the node as the tests run it ---------------------------------------------------------------

# Boot through bootsel, then check in and update in a loop; one JSON line per event.
# reset() ends the process like a reboot does (exit 3), or, with "reboots" in driver.json,
# boots again inside the same process (bootsel, the slot's app_info, a new Updater) so one
# process can take an update from offer to commit.
# The node's clock is real time plus an offset the driver moves on by "advance_s" (60 s) per
# round: retry back-offs pass without waiting, and manifests still expire in real time.
# driver.json: rounds, reboots, steps (per round), advance_s, clock_offset_s, clock_set
# ({round: offset}), stop_when_reported, board, hardware, stall_s, health_timeout_s, healthy,
# fake_ota, fail_hook ([module, "Class.attr", n]: MemoryError n times), dns_failures.
DRIVER = r"""
import sys, json, time
import bootsel
from net.uplink import Uplink
from updater.client import Updater
ROOT = "."
cfg = json.load(open("driver.json"))
identity = json.load(open("identity.json"))
FINAL = ("committed", "refused", "failed", "rolled_back")
skew = [cfg.get("clock_offset_s", 0)]
def clock():
    return time.time() + skew[0]
class Reboot(Exception):
    pass
boots = [0]
def reset():
    print(json.dumps({"event": "reset"}))
    if boots[0] <= cfg.get("reboots", 0):
        raise Reboot()
    sys.exit(3)
# The watchdog: counts feeds, and feeds from inside a download request.
inside = [False]
feeds = [0, 0]
def feed():
    feeds[0] += 1
    if inside[0]:
        feeds[1] += 1
up = Uplink(identity, time.time, root=ROOT)  # requests signed with the real time
_get = up.get
gets = [0]
def get(*args, **kw):
    gets[0] += 1
    inside[0] = True
    if cfg.get("dns_failures"):
        up.addr = None  # resolve the server again, as after any failed connection
    try:
        return _get(*args, **kw)
    finally:
        inside[0] = False
up.get = get
if cfg.get("dns_failures"):  # name resolution fails this many times inside downloads
    from net import http_client
    import socket as _socket
    class _Resolver:
        SOCK_STREAM = _socket.SOCK_STREAM
        socket = _socket.socket
    _dns_left = [cfg["dns_failures"]]
    def _getaddrinfo(*args):
        if inside[0] and _dns_left[0] > 0:
            _dns_left[0] -= 1
            raise OSError(-3)  # EAI_AGAIN: temporary failure in name resolution
        return _socket.getaddrinfo(*args)
    _Resolver.getaddrinfo = staticmethod(_getaddrinfo)
    http_client.socket = _Resolver  # http_client stays loaded: it was imported here
if cfg.get("fail_hook"):  # this function raises MemoryError its first n calls
    mod_name, attr, n = cfg["fail_hook"]
    owner = __import__(mod_name, None, None, ["x"])
    path = attr.split(".")
    for part in path[:-1]:
        owner = getattr(owner, part)
    real = getattr(owner, path[-1])
    left = [n]
    def failing(*args, **kw):
        if left[0] > 0:
            left[0] -= 1
            raise MemoryError("memory allocation failed")
        return real(*args, **kw)
    setattr(owner, path[-1], failing)
extra = {}
for name in ("stall_s", "hardware"):
    if name in cfg:
        extra[name] = cfg[name]
steps = cfg.get("steps", 64)
last = [None]
def phase(u):
    st = getattr(u, "state", None)
    return st.get("phase") if isinstance(st, dict) else None
def run_boot():
    boots[0] += 1
    app = bootsel.select(ROOT)
    for p in [p for p in sys.path if p.startswith("./slots/")]:
        sys.path.remove(p)
    sys.path.insert(0, app + "/lib")
    sys.modules.pop("app_info", None)
    import app_info
    print(json.dumps({"event": "boot", "slot": app, "version": app_info.VERSION}))
    ota = None
    if cfg.get("fake_ota"):
        import fake_ota
        fake_ota.bootloader()
        ota = fake_ota.FakeOta()
    u = Updater(up, cfg.get("board", "emulated"), clock, reset, root=ROOT, ota=ota,
                feed=feed, health_timeout_s=cfg.get("health_timeout_s", 3), **extra)
    for uptime in range(cfg.get("rounds", 10)):
        body = {"fw_version": app_info.VERSION, "uptime_s": uptime}
        r = u.report()
        if r is not None:
            body["update"] = r
        try:
            reply = up.checkin(body)
        except OSError:
            reply = None  # server unreachable: carry on with the running release
        if reply is not None:
            if r is not None:
                last[0] = r
            u.offer(reply.get("update"))
            if app_info.HEALTHY and cfg.get("healthy", True):
                u.healthy()
        # As the node's loop does: step() while busy(), here until the phase changes (so each
        # phase reaches the server) or a step changes nothing (backing off).
        before = phase(u)
        for _ in range(steps):
            if not u.busy():
                break
            snap = json.dumps(u.state)
            more = u.step()
            if phase(u) != before or (not more and json.dumps(u.state) == snap):
                break
        u.poll(uptime)
        skew[0] += cfg.get("advance_s", 60)
        step_to = cfg.get("clock_set", {}).get(str(uptime))
        if step_to is not None:  # the clock is set (NTP, the server's time): it jumps
            skew[0] = step_to
        if cfg.get("stop_when_reported") and reply is not None and r is not None \
                and r.get("state") in FINAL:
            break
    return u, app_info.VERSION
while True:
    try:
        u, version = run_boot()
        break
    except Reboot:
        pass
st = getattr(u, "state", None) or {}
print(json.dumps({"event": "end", "version": version, "phase": st.get("phase"),
                  "detail": st.get("detail"), "last_report": last[0], "boots": boots[0],
                  "gets": gets[0], "feeds": feeds[0], "feeds_in_download": feeds[1]}))
"""


_COMPILED: list[Path] = []


def compiled_lib() -> Path:
    """firmware/lib (packages included) compiled to .mpy once per test run, as a release ships
    it to a node."""
    if not _COMPILED:
        out = Path(tempfile.mkdtemp(prefix="lamplighter-lib-"))
        for source in sorted(FIRMWARE_LIB.rglob("*.py")):
            rel = source.relative_to(FIRMWARE_LIB)
            if "__pycache__" in rel.parts:
                continue
            target = out / rel.with_suffix(".mpy")
            target.parent.mkdir(parents=True, exist_ok=True)
            mpy_cross_compile(source, target, rel.as_posix())
        _COMPILED.append(out)
    return _COMPILED[0]


def driver_command(flash: Path, heap_kb: int = 100) -> tuple[list[str], dict[str, str]]:
    """Command line and environment that run the driver in `flash` (written there).

    The library is the compiled one (as on a node); bootsel.py comes from the flash root.
    """
    (flash / "driver.py").write_text(DRIVER)
    env = micropython_env([compiled_lib(), Path(".")])
    return micropython_command("driver.py", heap_kb), env


def run_driver(flash: Path, timeout: float = 120, heap_kb: int = 100,
               **cfg: Any) -> tuple[subprocess.CompletedProcess[str], list[dict]]:
    """Boot the node once with driver.json = cfg; the finished process and its event lines."""
    (flash / "driver.json").write_text(json.dumps(cfg))
    cmd, env = driver_command(flash, heap_kb)
    proc = subprocess.run(cmd, cwd=flash, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)
    return proc, list(events(proc.stdout))


# -- the server -------------------------------------------------------------------------------


@dataclass
class Answer:
    """How the server answers one bundle request (default: honestly, from `data`).

    data: the bytes served (None: the server's bundle); status: forced status (None: 200,
    206 for a Range request, 416 for a Range past the end); ignore_range: serve from byte 0;
    cut: close after this many body bytes (Content-Length still announces them all);
    extra: bytes sent after the slice (and counted in Content-Length); stall_s/stall_after:
    sleep that long once that many body bytes are out; forever: after the slice, garbage
    with no Content-Length until the node hangs up; length: "exact", "none" (no
    Content-Length, close at the end); piece/delay_s: written `piece` bytes at a time with a
    pause after each.
    """

    data: bytes | None = None
    status: int | None = None
    ignore_range: bool = False
    cut: int | None = None
    extra: bytes = b""
    stall_s: float = 0.0
    stall_after: int = 0
    forever: bool = False
    length: str = "exact"
    piece: int = 4096  # bytes written at a time
    delay_s: float = 0.0  # pause after each piece: a slow (or trickling) link
    content_range: str | None = None  # a Content-Range header to send instead of the true one
    limit: int | None = None  # send at most this many bytes of the slice (a short, clean answer)
    shift: int = 0  # serve the range from this many bytes later (earlier when negative)
    lie_range: bool = False  # ... while the Content-Range names the range asked for
    max_s: float = 0.0  # give up writing (hang up) after this long
    raw_header: bytes = b""  # one more header line, sent as these bytes
    header_flood: bool = False  # after the status line, one header line that never ends
    header_trickle_s: float = 0.0  # ... or one sent a byte per this many seconds (for 5 s)


@dataclass
class Request:
    """One bundle request as the server saw it."""

    range: str | None
    start: int
    end: int | None  # inclusive, None: to the end
    status: int = 0
    sent: int = 0
    at: float = field(default_factory=time.monotonic)
    ended: float = 0.0  # when the server was done with it (or the node hung up)


def parse_range(header: str | None) -> tuple[int, int | None]:
    if not header:
        return 0, None
    first, _, last = header.removeprefix("bytes=").partition("-")
    return int(first or 0), int(last) if last.strip() else None


class FakeServer:
    """Check-ins and bundle downloads as the fleet server answers them, minus the database.

    Each device is offered `assignment` until it reports a final state; every report is kept.
    `endless` streams the bundle followed by garbage forever, with no Content-Length.
    `script(server, request)` returns the Answer to a bundle request (None: an honest one).
    Every bundle request is kept in `requests`.
    """

    def __init__(self, bundle: bytes, *, rollout_id: int = 7, release_id: int = 3,
                 version: str = "1.1.0", sequence: int = 11, size: int | None = None,
                 endless: bool = False, chunk_delay_s: float = 0.0,
                 script: Callable[[FakeServer, Request], Answer | None] | None = None):
        self.bundle = bundle
        self.secret_hex = "00" * 32  # the key of the identities this kit writes
        self.endless = endless
        self.chunk_delay_s = chunk_delay_s  # pause per 4 KB sent: a slow link
        self.script = script
        self.assignment: dict[str, Any] = {
            "rollout_id": rollout_id, "release_id": release_id, "version": version,
            "sequence": sequence, "size": len(bundle) if size is None else size,
            "sha256": hashlib.sha256(bundle).hexdigest(),
            "url": f"/device/v1/releases/{release_id}/bundle"}
        self.reports: dict[str, list[dict]] = {}
        self.checkins = 0
        self.requests: list[Request] = []
        self.errors: list[str] = []  # exceptions raised by `script`
        self.range_starts: list[int] = []  # the offset of every resumed download
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def states(self, device: str = "node-test") -> list[str]:
        return [r["state"] for r in self.reports.get(device, [])]

    def last(self, device: str = "node-test") -> dict:
        return self.reports[device][-1]

    def finished(self, device: str) -> bool:
        return any(s in FINAL for s in self.states(device))

    def answer(self, request: Request) -> Answer:
        if self.script is not None:
            answer = self.script(self, request)
            if answer is not None:
                return answer
        if self.endless:
            return Answer(forever=True, status=200, ignore_range=True)
        return Answer(delay_s=self.chunk_delay_s)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
                device = self.headers.get("X-Device-Id", "?")
                with fake.lock:
                    fake.checkins += 1
                    if body.get("update"):
                        fake.reports.setdefault(device, []).append(body["update"])
                    offer = None if fake.finished(device) else fake.assignment
                reply = json.dumps({"server_time": int(time.time()), "next_checkin_s": 60,
                                    "commands": [], "update": offer}).encode()
                self._send(200, reply, {"Content-Type": "application/json",
                                        "Content-Length": str(len(reply)),
                                        **self._signed(200, reply)})

            def _signed(self, status: int, body: bytes = b"",
                        bundle: bytes | None = None) -> dict[str, str]:
                """The reply signature the fleet server adds (the node refuses replies
                without it), under the devices' test key."""
                sha = None if bundle is None else hashlib.sha256(bundle).hexdigest()
                return reply_headers(fake.secret_hex, self.headers.get("X-Nonce", ""), status,
                                     body, sha)

            def do_GET(self) -> None:
                header = self.headers.get("Range")
                start, end = parse_range(header)
                request = Request(header, start, end)
                with fake.lock:
                    fake.requests.append(request)
                    if header and start:
                        fake.range_starts.append(start)
                try:
                    answer = fake.answer(request)
                except Exception as exc:  # a broken script must fail the test, not the node
                    fake.errors.append(repr(exc))
                    raise
                try:
                    self._serve(request, answer)
                except OSError:
                    pass  # the node hung up
                finally:
                    request.ended = time.monotonic()

            def _bad_head(self, request: Request, a: Answer) -> None:
                """A status line, then one header line that never ends (fast or trickled)."""
                request.status = a.status or 206
                self.wfile.write(b"HTTP/1.1 %d Partial Content\r\nX-Pad: " % request.status)
                if a.header_flood:
                    for _ in range(256):  # 1 MB, ten times a node's heap
                        self.wfile.write(b"a" * 4096)
                        request.sent += 4096
                    return
                stop = time.monotonic() + 5
                while time.monotonic() < stop:
                    self.wfile.write(b"a")
                    self.wfile.flush()
                    request.sent += 1
                    time.sleep(a.header_trickle_s)

            def _serve(self, request: Request, a: Answer) -> None:
                if a.header_flood or a.header_trickle_s:
                    self._bad_head(request, a)
                    return
                data = fake.bundle if a.data is None else a.data
                if request.range and not a.ignore_range:
                    if request.start >= len(data) and a.status in (None, 416):
                        request.status = 416
                        self._send(416, b"", {"Content-Length": "0",
                                              "Content-Range": f"bytes */{len(data)}",
                                              **self._signed(416)})
                        return
                    last = len(data) - 1 if request.end is None else min(request.end,
                                                                         len(data) - 1)
                    first = max(0, request.start + a.shift)
                    piece = data[first:last + 1 + a.shift]
                    status = 206
                    said = request.start if a.lie_range else first
                    span = f"bytes {said}-{said + len(piece) - 1}/{len(data)}"
                else:
                    piece, status, span = data, 200, None
                if a.status == 416:
                    piece = b""  # a refusal carries no data (only what `extra` adds)
                if a.limit is not None:
                    piece = piece[:a.limit]
                status = a.status or status
                request.status = status
                body = piece + a.extra
                self.send_response(status)
                if a.content_range is not None:
                    self.send_header("Content-Range", a.content_range)
                elif span and status == 206:
                    self.send_header("Content-Range", span)
                if a.raw_header:
                    self._headers_buffer.append(a.raw_header + b"\r\n")
                if not a.forever and a.length == "exact":
                    self.send_header("Content-Length", str(len(body)))
                signed = self._signed(status, body) if a.status == 416 else \
                    self._signed(status, bundle=data)
                for name, value in signed.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                if a.cut is not None:
                    body = body[:a.cut]
                self._write(request, body, a)
                if a.forever:
                    garbage = b"\xa5" * 4096
                    for _ in range(25_000):  # 100 MB: far more than any node may take
                        self.wfile.write(garbage)
                        request.sent += len(garbage)
                self.wfile.flush()
                if a.cut is not None:
                    # close without a proper end, as a dropped link does
                    self.connection.shutdown(socket.SHUT_RDWR)

            def _write(self, request: Request, body: bytes, a: Answer) -> None:
                if not a.stall_s:
                    self._pieces(request, body, a)
                    return
                self._pieces(request, body[:a.stall_after], a)
                self.wfile.flush()
                time.sleep(a.stall_s)
                self._pieces(request, body[a.stall_after:], a)

            def _pieces(self, request: Request, data: bytes, a: Answer) -> None:
                for at in range(0, len(data), a.piece):
                    if a.max_s and time.monotonic() - request.at > a.max_s:
                        self.wfile.flush()
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return
                    self.wfile.write(data[at:at + a.piece])
                    request.sent += len(data[at:at + a.piece])
                    if a.delay_s:
                        self.wfile.flush()
                        time.sleep(a.delay_s)

        return Handler

    def __enter__(self) -> FakeServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def events(stdout: str) -> Iterator[dict]:
    """The driver's JSON event lines."""
    for line in stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            yield json.loads(line)
