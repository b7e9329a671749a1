"""Shared kit for the update-client tests: bundles, a provisioned flash, a fake server, a driver."""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ota.bundle import BUNDLE_FORMAT, HEADER, MAGIC, mpy_cross_compile
from ota.keys import key_id, raw_public_key
from ota.manifest import FileEntry, Manifest, sign_manifest
from tools.micropython import FIRMWARE_DIR, FIRMWARE_LIB, micropython_command, micropython_env

FACTORY_VERSION = "1.0.0"
FACTORY_SEQUENCE = 10


def app_files(version: str, *, healthy: bool = True, pad: int = 300) -> dict[str, bytes]:
    """A tiny app release: its version module (importable from the slot) plus a filler file."""
    info = f"VERSION = {version!r}\nHEALTHY = {healthy!r}\n".encode()
    filler = (f"# filler of release {version}\n" * (pad // 20 + 1)).encode()[:pad]
    return {"lib/app_info.py": info, "lib/filler.py": filler}


def pack_bundle(files: dict[str, bytes], *, version: str, sequence: int,
                key: Ed25519PrivateKey, board: tuple[str, ...] = ("emulated",),
                expires: int | None = None, created: int | None = None,
                declared: dict[str, bytes] | None = None, kind: str = "app") -> bytes:
    """A signed bundle carrying `files`; the manifest describes `declared` (default: the same).

    Declaring other contents than the bytes shipped is how the tests forge a bundle whose
    files do not match their signed hashes.
    """
    now = int(time.time())
    described = declared if declared is not None else files
    entries = [FileEntry(path=p, size=len(b), sha256=hashlib.sha256(b).hexdigest())
               for p, b in described.items()]
    manifest = Manifest.create(version=version, sequence=sequence, board=list(board),
                               files=entries, kind=kind,
                               expires=expires if expires is not None else now + 86400,
                               created=created if created is not None else now - 60)
    signed = sign_manifest(manifest, key)
    head = HEADER.pack(MAGIC, BUNDLE_FORMAT, len(signed.manifest_bytes),
                       bytes.fromhex(signed.key_id), signed.signature)
    return head + signed.manifest_bytes + b"".join(files.values())


def provision_flash(flash: Path, trusted: list[Ed25519PrivateKey], *, revoked: list[str] = (),
                    server: str = "http://127.0.0.1:9", identity: dict | None = None) -> None:
    """Lay out a node's flash as the factory does: bootsel at the root, app in slot a."""
    flash.mkdir(parents=True, exist_ok=True)
    shutil.copy(FIRMWARE_DIR / "bootsel.py", flash / "bootsel.py")
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
        {"keys": keys, "revoked": list(revoked), "revocation_serial": 0}))
    ident = identity or {"device_id": "node-test", "secret": "00" * 32, "server": server}
    (flash / "identity.json").write_text(json.dumps(ident))


def slot_matches(flash: Path, slot: str, files: dict[str, bytes]) -> bool:
    """Whether every file of a release is in `slot` byte for byte."""
    base = flash / "slots" / slot
    return all((base / p).is_file() and (base / p).read_bytes() == b for p, b in files.items())


# The node as the tests run it: boot through bootsel, then check in and update in a loop.
# It prints one JSON line per event; reset() ends the process like a reboot does.
DRIVER = r"""
import sys, json, time
import bootsel
ROOT = "."
app = bootsel.select(ROOT)
sys.path.insert(0, app + "/lib")
import app_info
print(json.dumps({"event": "boot", "slot": app, "version": app_info.VERSION}))
from uplink import Uplink
from updater import Updater
cfg = json.load(open("driver.json"))
identity = json.load(open("identity.json"))
clock = lambda: time.time() + cfg.get("clock_offset_s", 0)
def reset():
    print(json.dumps({"event": "reset"}))
    sys.exit(3)
ota = None
if cfg.get("fake_ota"):
    import fake_ota
    fake_ota.bootloader()
    ota = fake_ota.FakeOta()
if cfg.get("oom_checks"):  # the manifest check runs out of memory this many times
    import updater as _upd
    _real_check = _upd.Updater._check_download
    _left = [cfg["oom_checks"]]
    def _check(self, path):
        if _left[0] > 0:
            _left[0] -= 1
            raise MemoryError("memory allocation failed")
        return _real_check(self, path)
    _upd.Updater._check_download = _check
up = Uplink(identity, clock)
u = Updater(up, cfg.get("board", "emulated"), clock, reset, root=ROOT, ota=ota,
            health_timeout_s=cfg.get("health_timeout_s", 3))
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
        u.offer(reply.get("update"))
        if app_info.HEALTHY and cfg.get("healthy", True):
            u.healthy()
    u.step()  # one phase per round, so each state reaches the server
    u.poll(uptime)
st = u.state or {}
print(json.dumps({"event": "end", "version": app_info.VERSION, "phase": st.get("phase"),
                  "detail": st.get("detail")}))
"""


_COMPILED: list[Path] = []


def compiled_lib() -> Path:
    """firmware/lib compiled to .mpy once per test run, as a release ships it to a node."""
    if not _COMPILED:
        out = Path(tempfile.mkdtemp(prefix="lamplighter-lib-"))
        for source in sorted(FIRMWARE_LIB.glob("*.py")):
            mpy_cross_compile(source, out / (source.stem + ".mpy"), source.name)
        _COMPILED.append(out)
    return _COMPILED[0]


def driver_command(flash: Path, heap_kb: int = 100) -> tuple[list[str], dict[str, str]]:
    """Command line and environment that run the driver in `flash` (written there).

    The library is the compiled one (as on a node); bootsel.py comes from the flash root.
    """
    (flash / "driver.py").write_text(DRIVER)
    env = micropython_env([compiled_lib(), Path(".")])
    return micropython_command("driver.py", heap_kb), env


class FakeServer:
    """Check-ins and bundle downloads as the fleet server answers them, minus the database.

    Each device is offered `assignment` until it reports a final state; every report is kept.
    `endless` streams the bundle followed by garbage forever, with no Content-Length.
    """

    FINAL = ("committed", "failed", "rolled_back", "refused")

    def __init__(self, bundle: bytes, *, rollout_id: int = 7, release_id: int = 3,
                 version: str = "1.1.0", sequence: int = 11, size: int | None = None,
                 endless: bool = False, chunk_delay_s: float = 0.0):
        self.bundle = bundle
        self.endless = endless
        self.chunk_delay_s = chunk_delay_s  # pause per 4 KB sent: a slow link
        self.assignment: dict[str, Any] = {
            "rollout_id": rollout_id, "release_id": release_id, "version": version,
            "sequence": sequence, "size": len(bundle) if size is None else size,
            "sha256": hashlib.sha256(bundle).hexdigest(),
            "url": f"/device/v1/releases/{release_id}/bundle"}
        self.reports: dict[str, list[dict]] = {}
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

    def finished(self, device: str) -> bool:
        return any(s in self.FINAL for s in self.states(device))

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
                    if body.get("update"):
                        fake.reports.setdefault(device, []).append(body["update"])
                    offer = None if fake.finished(device) else fake.assignment
                reply = json.dumps({"server_time": int(time.time()), "next_checkin_s": 60,
                                    "commands": [], "update": offer}).encode()
                self._send(200, reply, {"Content-Type": "application/json",
                                        "Content-Length": str(len(reply))})

            def do_GET(self) -> None:
                data = fake.bundle
                start = 0
                rng = self.headers.get("Range")
                if rng:
                    start = int(rng.removeprefix("bytes=").rstrip("-"))
                    fake.range_starts.append(start)
                    if start >= len(data):
                        self._send(416, b"", {"Content-Length": "0"})
                        return
                if fake.endless:
                    self.send_response(200)
                    self.send_header("Connection", "close")
                    self.end_headers()
                    try:
                        self.wfile.write(data[start:])
                        for _ in range(100_000):
                            self.wfile.write(b"\xa5" * 4096)
                    except OSError:
                        pass
                    return
                status = 206 if rng else 200
                if not fake.chunk_delay_s:
                    self._send(status, data[start:], {
                        "Content-Type": "application/octet-stream",
                        "Content-Length": str(len(data) - start)})
                    return
                self._send(status, b"", {"Content-Type": "application/octet-stream",
                                         "Content-Length": str(len(data) - start)})
                try:
                    for at in range(start, len(data), 4096):
                        self.wfile.write(data[at:at + 4096])
                        self.wfile.flush()
                        time.sleep(fake.chunk_delay_s)
                except OSError:
                    pass

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
