"""Provision one node over its REPL (mpremote): identity, config, key ring, fleet CA, Wi-Fi, A/B
app layout."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.firmware_tree import APP_DIRS, APP_SLOT, FIRMWARE_DIR, STABLE_ROOT_FILES
from tools.technician.node_scripts import node_script

MARKER = "provisioning.json"  # written first, removed last: its presence means "half done"
IDENTITY = "identity.json"
KEYS = "keys.json"
CONFIG = "config.json"
FLEET_CA = "fleet_ca.der"  # the fleet CA (DER) the node checks its server against (http_client)
WIFI = "wifi.json"  # the street's Wi-Fi (tools.technician.wifi): {"ssid": ..., "password": ...}
SLOT_POINTER = "slot.json"
FACTORY_SEQUENCE = 0
CHUNK = 512


class ProvisionError(Exception):
    """Provisioning cannot go on; the message says what the technician should do."""


@dataclass
class Site:
    """Where the node is mounted, as the fleet server registers it."""

    pole_id: str
    district: str = ""
    group: str = "default"
    lat: float | None = None
    lon: float | None = None
    tags: list[str] = field(default_factory=list)

    def registration(self, board: str) -> dict[str, Any]:
        body: dict[str, Any] = {"pole_id": self.pole_id, "district": self.district,
                                "group": self.group, "board": board, "tags": self.tags}
        if self.lat is not None:
            body["lat"] = self.lat
        if self.lon is not None:
            body["lon"] = self.lon
        return body


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def app_files(app_dir: Path = FIRMWARE_DIR, compiled: bool = True,
              version: str = "factory", *, board: str) -> dict[str, bytes]:
    """The app laid out as `board` boots it: root scripts plus slot a (lib/, boards/).

    Slot a holds the files of the board's manifest (boards/<board>.manifest) when the app has
    manifests, so an ESP32 carries no emulated-board files; an app without manifests ships
    all of lib/ and boards/. With `compiled`, they ship as .mpy (an ESP32 has no heap to
    compile them).
    """
    from tools.emulator.launcher import build_firmware, slot_files

    source = Path(app_dir)
    built = build_firmware(source, board=board) if compiled else source
    files: dict[str, bytes] = {}
    for name in STABLE_ROOT_FILES:
        path = source / name
        if path.exists():
            files[name] = path.read_bytes()
    suffix = ".mpy" if compiled else ".py"
    for name in slot_files(built, board):
        if name.endswith(suffix) and name.split("/", 1)[0] in APP_DIRS:
            files[f"{APP_SLOT}/{name}"] = (built / name).read_bytes()
    if not any(p.startswith(f"{APP_SLOT}/lib/") for p in files):
        raise ProvisionError(f"{source} holds no app (expected lib/ and boards/ with the firmware)")
    files[f"{APP_SLOT}/app_version.json"] = json.dumps(
        {"version": version, "sequence": FACTORY_SEQUENCE}).encode()
    return files


def board_of_platform(platform: str) -> str:
    """The board a node is, from its sys.platform (as `provision` registers it)."""
    return "emulated" if platform in ("linux", "darwin") else "esp32_devkitc"


def slot_pointer() -> bytes:
    return json.dumps({"active": "a", "previous": None, "pending": None, "rolled_back": None,
                       "committed_sequence": FACTORY_SEQUENCE}).encode()


def load_key_ring(path: Path) -> dict[str, Any]:
    """The key ring JSON the node pins: a ring file (release keyring) or one public key file."""
    from ota.keys import KeyFileError, KeyRing, load_public_key

    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ProvisionError(f"cannot read release keys {path}: {exc.strerror}") from None
    try:
        doc = json.loads(raw)
    except ValueError:
        doc = None
    try:
        if isinstance(doc, dict) and "keys" in doc:
            ring = KeyRing.from_json(doc)
        else:
            ring = KeyRing()
            ring.add(load_public_key(Path(path)))
    except (KeyFileError, ValueError) as exc:
        raise ProvisionError(f"release keys {path}: {exc}") from None
    if not ring.keys:
        raise ProvisionError(f"release keys {path}: the key ring trusts no key")
    return ring.to_json()


INSECURE_WARNING = (
    "WARNING: {server} is plain http://: this node will send its readings, its signed requests "
    "and (for a factory image) its one-time enrollment code unencrypted, to whoever answers at "
    "that address. Use this only for a lab or test server, never on a street.")


def load_fleet_ca(path: Path) -> bytes:
    """The fleet CA certificate at `path` (PEM or DER), in DER as the node pins it."""
    from fleet.core.tls import ca_der_of

    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ProvisionError(f"cannot read the fleet CA {path}: {exc.strerror}") from None
    try:
        return ca_der_of(raw)
    except ValueError as exc:
        raise ProvisionError(f"the fleet CA {path}: {exc}") from None


def default_fleet_ca() -> Path | None:
    """This machine's fleet CA (DATA_DIR/tls/ca.pem, `lamplighter server init-tls`), if made."""
    from fleet.core.tls import default_tls_files

    path = default_tls_files().ca_cert
    return path if path.is_file() else None


def check_link(server: str, ca_der: bytes | None, insecure: bool) -> dict[str, Any]:
    """What the node's identity (or enrollment) says about its link to `server`.

    An https:// server needs the fleet CA to pin; an http:// server is refused unless
    `insecure` (then the document says "insecure_http": true, and the caller warns).
    """
    if server.startswith("https://"):
        if ca_der is None:
            raise ProvisionError(
                f"the node must pin the fleet CA to check {server}'s certificate, and there is "
                "none: run `lamplighter server init-tls` on the fleet server (it makes "
                "DATA_DIR/tls/ca.pem) or pass --ca PATH (the CA certificate, PEM or DER)")
        return {}
    if server.startswith("http://"):
        if not insecure:
            raise ProvisionError(
                f"refusing the plain http:// server {server}: the node would talk to it "
                "unencrypted and could not tell it from an impostor. Give the https:// URL "
                "(`lamplighter server init-tls`, then `server run`), or pass --insecure for a "
                "lab or test server")
        return {"insecure_http": True}
    raise ProvisionError(f"the server URL must start with https:// (or http:// with "
                         f"--insecure): {server}")


def node_files(identity: dict[str, Any], key_ring: dict[str, Any] | None,
               config: dict[str, Any] | None, app: dict[str, bytes],
               ca_der: bytes | None = None, wifi: bytes | None = None) -> dict[str, bytes]:
    """Every file provisioning writes, in write order: app first, then the key ring, config,
    fleet CA and Wi-Fi credentials (`wifi`, the wifi.json bytes), identity last (a node with
    an identity has all it needs to use it)."""
    files = dict(app)
    files[SLOT_POINTER] = slot_pointer()
    if key_ring is not None:
        files[KEYS] = json.dumps(key_ring).encode()
    if config is not None:
        files[CONFIG] = json.dumps(config).encode()
    if ca_der is not None:
        files[FLEET_CA] = ca_der
    if wifi is not None:
        files[WIFI] = wifi
    files[IDENTITY] = json.dumps(identity).encode()
    return files


class NodeLink:
    """One node's raw REPL over mpremote's serial transport (a board's USB port or a pty)."""

    def __init__(self, port: str, baud: int = 115200) -> None:
        from mpremote.transport import TransportError
        from mpremote.transport_serial import SerialTransport

        check_port(port)
        try:
            self.transport = SerialTransport(port, baudrate=baud, timeout=2)
        except TransportError as exc:
            raise ProvisionError(f"cannot open {port}: {exc}. Is another program (a serial "
                                 "monitor, Thonny, mpremote) using it?") from None
        try:
            self.transport.enter_raw_repl(soft_reset=True)
        except TransportError:
            self.transport.close()
            raise ProvisionError(
                f"no MicroPython REPL answers on {port}: is MicroPython flashed "
                "(`lamplighter device flash`) and the board out of download mode "
                "(tap EN/RESET)?") from None

    def exec(self, code: str, timeout: float = 30) -> str:
        from mpremote.transport import TransportError

        try:
            out, err = self.transport.exec_raw(code, timeout=timeout)
        except TransportError as exc:
            raise ProvisionError(f"the node stopped answering: {exc}") from None
        if err:
            raise ProvisionError(f"the node reported an error:\n{err.decode(errors='replace')}")
        return out.decode(errors="replace")

    def exec_json(self, code: str, timeout: float = 30) -> Any:
        """Run `code`, whose last output line is JSON, and return it parsed."""
        lines = [line for line in self.exec(code, timeout).splitlines() if line.strip()]
        if not lines:
            raise ProvisionError("the node printed nothing")
        return json.loads(lines[-1])

    def hashes(self, paths: list[str]) -> dict[str, str | None]:
        found: dict[str, str | None] = {}
        for i in range(0, len(paths), 40):  # bounded device-side dicts
            found.update(self.exec_json(node_script("file_hashes",
                                                     f"file_hashes({paths[i:i + 40]!r})")))
        return found

    def write_file(self, path: str, data: bytes) -> None:
        """Write a file atomically: a temp file over the REPL, then rename over the old one."""
        parts = path.split("/")
        for i in range(1, len(parts)):
            folder = "/".join(parts[:i])
            self.exec(f"import os\ntry:\n os.mkdir({folder!r})\nexcept OSError:\n pass")
        tmp = path + ".part"
        self.exec(f"f=open({tmp!r},'wb')\nw=f.write")
        for i in range(0, len(data), CHUNK):
            self.exec(f"w({data[i:i + CHUNK]!r})")
        self.exec(f"f.close()\nimport os\ntry:\n os.remove({path!r})\nexcept OSError:\n pass\n"
                  f"os.rename({tmp!r},{path!r})")

    def remove(self, path: str) -> None:
        self.exec(f"import os\ntry:\n os.remove({path!r})\nexcept OSError:\n pass")

    def wipe(self) -> None:
        self.exec(node_script("wipe", "wipe('')"), timeout=60)

    def selftest(self) -> dict[str, Any]:
        return self.exec_json(node_script("selftest", "selftest()"), timeout=60)

    def close(self) -> None:
        try:
            self.transport.exit_raw_repl()
        finally:
            self.transport.close()


def check_port(port: str) -> None:
    """Fail with an actionable message when the serial port is missing or not ours to open."""
    from tools.technician.flashing import port_problem

    problem = port_problem(port)
    if problem:
        raise ProvisionError(problem)


@dataclass
class ProvisionResult:
    identity: dict[str, Any]
    registered: bool  # a new registration on the server (False: an existing one reused)
    resumed: bool  # a half-provisioned node was finished
    written: list[str]
    skipped: list[str]
    selftest: dict[str, Any] | None


Register = Callable[[dict[str, Any]], dict[str, Any]]


def provision(link: NodeLink, site: Site, server: str, register: Register,
              app: dict[str, bytes] | Callable[[str], dict[str, bytes]],
              key_ring: dict[str, Any] | None = None,
              config: dict[str, Any] | None = None, clean: bool = False,
              run_selftest: bool = True, ca_der: bytes | None = None,
              insecure_http: bool = False,
              wifi: bytes | Callable[[str], bytes | None] | None = None,
              on_file: Callable[[str, int, int], None] | None = None,
              say: Callable[[str], None] = print) -> ProvisionResult:
    """Bring the node on `link` to a verified, provisioned state for `site`.

    The registration is reused when the node (or its half-done marker) already holds an
    identity for this pole; only otherwise is `register(body)` called. Files that already
    match are not rewritten. The marker is written before the first file and removed after
    everything was read back and matched.

    `app` is the app's files, or a function of the node's board that gives them (the board is
    read with the node's state, in the same round trip).
    `ca_der` (the fleet CA, DER) is pinned as /fleet_ca.der: an https:// `server` needs it.
    An http:// `server` is refused unless `insecure_http`, which the identity then records.
    `wifi` is the node's wifi.json (tools.technician.wifi), or a function of the node's board
    that gives it (or None: no wifi.json), called before any registration; it is written like
    every other file and never shown (`on_file` and `say` get its path only).
    """
    link_fields = check_link(server, ca_der, insecure_http)
    state = link.exec_json(node_script("node_state", f"node_state({IDENTITY!r}, {MARKER!r})"))
    board = board_of_platform(state["platform"])
    app_files_now = app if isinstance(app, dict) else app(board)  # before any registration
    wifi_now = wifi(board) if callable(wifi) else wifi
    held = None
    resumed = False
    for source in (state.get("marker"), state.get("identity")):
        if isinstance(source, dict) and source.get("device_id") and source.get("secret"):
            held = source
            break
    marker_present = isinstance(state.get("marker"), dict)
    if held is not None and held.get("pole_id") != site.pole_id and not clean:
        raise ProvisionError(
            f"this node is provisioned as pole {held.get('pole_id')} (device "
            f"{held.get('device_id')}); pass --clean to wipe it and provision it as pole "
            f"{site.pole_id}")
    if clean:
        say("wiping the node's filesystem (--clean)")
        link.wipe()
    elif marker_present:
        resumed = True
        say(f"this node was cut off half-way through provisioning (pole "
            f"{state['marker'].get('pole_id')}): finishing it")
    registered = False
    if held is not None and held.get("pole_id") == site.pole_id:
        identity = {k: held[k] for k in ("device_id", "secret", "key_version", "pole_id")
                    if k in held}
        say(f"reusing the registration of pole {site.pole_id}: device {identity['device_id']}")
    else:
        creds = register(site.registration(board))
        registered = True
        identity = {"device_id": creds["device_id"], "secret": creds["secret"],
                    "key_version": creds.get("key_version", 1), "pole_id": site.pole_id}
        say(f"registered pole {site.pole_id} as device {identity['device_id']}")
    identity.update(server=server.rstrip("/"), district=site.district, group=site.group,
                    lat=site.lat, lon=site.lon, tags=site.tags, **link_fields)
    files = node_files(identity, key_ring, config, app_files_now, ca_der, wifi_now)
    marker = dict(identity, started=int(time.time()), files=sorted(files))
    link.write_file(MARKER, json.dumps(marker).encode())
    on_node = link.hashes(list(files))
    written, skipped = [], []
    total = sum(len(d) for d in files.values())
    done = 0
    for path, data in files.items():
        if on_node.get(path) == sha256_hex(data):
            skipped.append(path)
        else:
            link.write_file(path, data)
            written.append(path)
        done += len(data)
        if on_file:
            on_file(path, done, total)
    back = link.hashes(list(files))
    bad = [p for p, d in files.items() if back.get(p) != sha256_hex(d)]
    if bad:
        raise ProvisionError(f"read-back mismatch on the node for {', '.join(bad[:5])}: "
                             "re-run provisioning (the node is marked half-provisioned)")
    link.remove(MARKER)
    result = ProvisionResult(identity, registered, resumed, written, skipped, None)
    if run_selftest:
        result.selftest = link.selftest()
    return result
