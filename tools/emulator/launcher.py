"""Start one emulated lamppost: a world plus a MicroPython node process with its own flash dir."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from ota.board_manifest import board_files, has_manifests
from ota.bundle import MPY_CROSS_FLAGS, MPY_SOURCE_NAME, mpy_cross_compile
from tools.emulator.micropython import ESP32_HEAP_KB, micropython_executable
from tools.emulator.power import Powered, PowerSupply
from tools.emulator.scenario import Scenario
from tools.emulator.world import World
from tools.firmware_tree import FIRMWARE_DIR, STABLE_ROOT_FILES

# The unix port is 64-bit: every object word and GC block is twice an ESP32's, so the ~100 KB an
# ESP32 has free is modelled by a heap twice that size.
NODE_HEAP_KB = 2 * ESP32_HEAP_KB

# What a device does at power-up: run boot.py, then main.py, in the same globals.
BOOT_AND_MAIN = "exec(open('boot.py').read())\nexec(open('main.py').read())\n"


BUILD_ROOT = Path(tempfile.gettempdir()) / "lamplighter-emulator-build"

CA_FILE = "fleet_ca.der"  # the pinned fleet CA at the flash root (net/http_client._CA_FILE)

BOARD = "emulated"  # the emulator's board: its slot holds what boards/emulated.manifest lists
SLOT_DIRS = ("lib", "boards")  # a slot's directories (boot.py puts them on sys.path)


FACTORY_SEQUENCE = 1  # the app a node leaves the depot with; every release signs a higher one


def firmware_version(source: Path = FIRMWARE_DIR) -> str:
    """FW_VERSION as written in the node's source (the version of an unreleased build)."""
    node = source / "lib" / "core" / "node.py"
    match = re.search(r'^FW_VERSION = "([^"]+)"', node.read_text(), re.M)
    return match.group(1) if match else "0.0.0"


def slot_files(app_dir: Path, board: str = BOARD) -> list[str]:
    """The files of app_dir (a source tree or a build) that slot a holds on `board`: those of
    the board's manifest when app_dir has manifests (a source tree), else all of lib/ and
    boards/ (a build, which build_firmware made for one board)."""
    if has_manifests(app_dir):
        return [n for n in board_files(app_dir, [board]) if n.split("/", 1)[0] in SLOT_DIRS]
    return sorted((p.relative_to(app_dir).as_posix() for sub in SLOT_DIRS
                   for p in (app_dir / sub).rglob("*")
                   if p.is_file() and "__pycache__" not in p.parts),
                  key=lambda n: n.split("/"))


def install_factory_app(flash_dir: Path, build: Path, keys: dict | None = None,
                        board: str = BOARD) -> bool:
    """Lay a node's flash out as a depot leaves it: root files, the app in slot a (only
    `board`'s files: see slot_files).

    A node that already has slots keeps them (its app may have been updated since, or a
    technician provisioned it), unless slot a still holds an older build this function
    installed (its app_version.json names the build) and no update was ever committed: then
    the build is refreshed, so a developer's changes reach a reused emulated node. Returns
    whether anything was (re)installed.
    """
    flash_dir.mkdir(parents=True, exist_ok=True)
    if keys is not None and not (flash_dir / "keys.json").exists():
        # pinned once; later rotations and revocations change it over the air, never this
        (flash_dir / "keys.json").write_text(json.dumps(keys))
    version_file = flash_dir / "slots" / "a" / "app_version.json"
    pointer = flash_dir / "slot.json"
    if version_file.exists():
        current = json.loads(version_file.read_text())
        committed = json.loads(pointer.read_text()).get("committed_sequence", 0) \
            if pointer.exists() else FACTORY_SEQUENCE
        if ("build" not in current  # provisioned, or installed by an update: the node's own
                or current.get("build") == build.name or committed > FACTORY_SEQUENCE):
            return False
    for name in STABLE_ROOT_FILES:
        shutil.copyfile(build / name, flash_dir / name)
    slot = flash_dir / "slots" / "a"
    shutil.rmtree(slot, ignore_errors=True)
    for name in slot_files(build, board):
        (slot / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(build / name, slot / name)
    (slot / "app_version.json").write_text(json.dumps(
        {"version": firmware_version(), "sequence": FACTORY_SEQUENCE, "build": build.name}))
    return True


def own_release(flash_dir: Path) -> str | None:
    """The version in slot a when the node's release is its own (provisioned, or installed by
    an update) rather than a build the emulator laid out; else None."""
    version_file = Path(flash_dir) / "slots" / "a" / "app_version.json"
    try:
        current = json.loads(version_file.read_text())
    except (OSError, ValueError):
        return None
    return None if "build" in current else str(current.get("version", "?"))


def pin_fleet_ca(flash_dir: Path, ca_der: bytes) -> None:
    """Write the fleet CA (DER) the node checks its server's certificate against, as
    provisioning does: a temp file, then a rename."""
    flash_dir.mkdir(parents=True, exist_ok=True)
    tmp = flash_dir / (CA_FILE + ".part")
    tmp.write_bytes(ca_der)
    tmp.replace(flash_dir / CA_FILE)


def mpy_cross_executable() -> str:
    beside = Path(micropython_executable()).parent / "mpy-cross"
    return str(beside) if beside.exists() else (shutil.which("mpy-cross") or "mpy-cross")


def build_firmware(source: Path = FIRMWARE_DIR, root: Path = BUILD_ROOT,
                   board: str | None = BOARD) -> Path:
    """Compile firmware/ to .mpy the way a release bundle ships it (the same mpy-cross call and
    flags); return the build dir.

    The build holds the stable root files plus the files of `board`'s manifest
    (boards/<board>.manifest) when the source has manifests; with `board` None, or a source
    without manifests, every .py file. The root files (boot.py, main.py, bootsel.py) stay
    source (a device runs them as scripts). The build is cached by the board and the content
    of the sources.
    """
    files = sorted(p for p in source.rglob("*.py") if "__pycache__" not in p.parts)
    if board is not None and has_manifests(source):
        picked = set(board_files(source, [board]))
        files = [p for p in files
                 if p.parent == source or p.relative_to(source).as_posix() in picked]
    digest = hashlib.sha256(" ".join((*MPY_CROSS_FLAGS, "-s", MPY_SOURCE_NAME)).encode())
    digest.update(f"board={board}".encode())
    for p in files:
        digest.update(str(p.relative_to(source)).encode() + b"\0" + p.read_bytes())
    dest = root / digest.hexdigest()[:16]
    if (dest / "main.py").exists():
        return dest
    tmp = root / (dest.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    for p in files:
        rel = p.relative_to(source)
        out = tmp / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        if rel.parent == Path("."):
            shutil.copyfile(p, out)
        else:
            mpy_cross_compile(p, out.with_suffix(".mpy"), rel.as_posix())
    try:
        tmp.rename(dest)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)  # built meanwhile by another process
    return dest


def app_image_kb(app_dir: Path) -> int:
    """Heap to add for the code image the emulated node packs at boot (app_image.py).

    A device memory-maps the image from flash; the unix port holds it in one heap buffer,
    which the node reports apart from the app's heap. A quarter is added for a bigger
    release installed later in the same run.
    """
    total = sum(p.stat().st_size for sub in SLOT_DIRS for p in (app_dir / sub).rglob("*.mpy"))
    return (total * 5 // 4) // 1024 + 8 if total else 0


def parse_log_line(line: str) -> tuple[int, str, str, dict[str, str]] | None:
    """Split a node log line `<ms> <LEVEL> <event> k=v ...` (None if it is not one)."""
    parts = line.split(" ", 3)
    if len(parts) < 3 or not parts[0].isdigit():
        return None
    fields: dict[str, str] = {}
    if len(parts) == 4:
        for item in parts[3].split(" "):
            key, _, value = item.partition("=")
            fields[key] = value.strip('"')
    return int(parts[0]), parts[1], parts[2], fields


class Launcher(Powered):
    """Runs the firmware in firmware/ on the unix port against a world.

    The node reboots (a new process) whenever it exits by itself (watchdog, reset command);
    power_cut() kills it with SIGKILL and it stays off until power_restore().
    `config` (a dict) is written to the node's flash as its saved configuration before boot.
    `ca_der` (the fleet CA, DER) is pinned on the node's flash as /fleet_ca.der: a node whose
    identity names an https:// server refuses it without one.
    `wifi` ({"ssid", "password"}) is written as the node's /wifi.json: the node then joins the
    world's access point (and rides its faults) before it reaches the network; without it the
    emulated node is wired.
    """

    def __init__(self, flash_dir: Path, scenario: Scenario | None = None, speed: float = 0.0,
                 end_ms: int | None = None, heap_kb: int = NODE_HEAP_KB,
                 config: dict | None = None, measure_raw: bool = False,
                 on_line: Callable[[str], None] | None = None, keep_lines: int = 200000,
                 compiled: bool = True, keys: dict | None = None,
                 ca_der: bytes | None = None, wifi: dict | None = None) -> None:
        self.flash_dir = Path(flash_dir)
        self.wifi = wifi
        self.ca_der = ca_der
        self.app_dir = build_firmware() if compiled else FIRMWARE_DIR
        self.keys = keys  # release key set pinned in keys.json when the flash has none yet
        self.world = World(scenario, speed=speed, end_ms=end_ms)
        self.heap_kb = heap_kb
        self.config = config
        self.measure_raw = measure_raw
        self.on_line = on_line
        self.lines: deque[str] = deque(maxlen=keep_lines)
        self.exit_codes: list[int] = []
        self.power = PowerSupply(self._spawn, "launcher", on_exit=self.exit_codes.append,
                                 may_reboot=lambda: not self.world.halted.is_set())

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> Launcher:
        install_factory_app(self.flash_dir, self.app_dir, self.keys)
        if self.ca_der is not None:
            pin_fleet_ca(self.flash_dir, self.ca_der)
        if self.config is not None:
            (self.flash_dir / "config.json").write_text(json.dumps(self.config))
        if self.wifi is not None:
            (self.flash_dir / "wifi.json").write_text(json.dumps(self.wifi))
        self.world.start()
        self.power.start()
        return self

    def _spawn(self) -> subprocess.Popen[str]:
        env = dict(os.environ)
        env.update({
            "LAMPLIGHTER_WORLD": str(self.world.port),
            "LAMPLIGHTER_FLASH": str(self.flash_dir.resolve()),
            "LAMPLIGHTER_MEASURE_RAW": "1" if self.measure_raw else "0",
            "MICROPYPATH": ".frozen",
        })
        heap_kb = self.heap_kb + app_image_kb(self.app_dir)
        cmd = [micropython_executable(), "-X", f"heapsize={heap_kb}k", "-c", BOOT_AND_MAIN]
        proc = subprocess.Popen(cmd, cwd=self.flash_dir, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, bufsize=1)
        threading.Thread(target=self._read, args=(proc,), daemon=True).start()
        return proc

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            self.lines.append(line)
            if self.on_line:
                self.on_line(line)

    def wait_done(self, timeout: float | None = None) -> bool:
        """Wait until the world's run is over (its end_ms reached); True if it was."""
        done = self.world.halted.wait(timeout)
        if done:
            deadline = time.monotonic() + 10
            while self.running() and time.monotonic() < deadline:
                time.sleep(0.02)
        return done

    def wait_virtual(self, ms: int, timeout: float = 120.0) -> bool:
        """Wait until the world's virtual clock reaches `ms` (True) or `timeout` real seconds."""
        deadline = time.monotonic() + timeout
        while self.world.now_ms < ms:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    def stop(self) -> None:
        self.power.stop()
        self.world.stop()

    def __enter__(self) -> Launcher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what the node said -----------------------------------------------------------------
    def events(self, name: str) -> list[tuple[int, dict[str, str]]]:
        """(ms, fields) of every log line of event `name` so far."""
        out = []
        for line in list(self.lines):
            parsed = parse_log_line(line)
            if parsed and parsed[2] == name:
                out.append((parsed[0], parsed[3]))
        return out
