"""The street's Wi-Fi credentials for a node's wifi.json: from a file or a prompt, never shown."""

from __future__ import annotations

import json
import os
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

WIFI_FILE = "wifi.json"  # at the node's flash root: {"ssid": "<name>", "password": "<passphrase>"}
SSID_MAX_BYTES = 32
HEX_DIGITS = frozenset("0123456789abcdefABCDEF")

FILE_FORMAT = (
    'either JSON {"ssid": "<network name>", "password": "<passphrase>"} or two lines '
    "ssid=<network name> and password=<passphrase> (an empty passphrase: an open network)")
OPEN_WARNING = (
    "WARNING: {ssid!r} is an OPEN Wi-Fi network (no passphrase): anyone in range can join it "
    "and see which hosts the node talks to. The node's link to the fleet server is still "
    "TLS, but use an open network only if the street really has no other.")


class WifiError(ValueError):
    """The credentials are missing or not usable; the message never holds the passphrase."""


@dataclass(frozen=True)
class WifiCredentials:
    """One network for a node. The passphrase is left out of repr() (and so of tracebacks)."""

    ssid: str
    password: str = field(repr=False)

    @property
    def open(self) -> bool:
        return self.password == ""

    def wifi_json(self) -> bytes:
        """The node's /wifi.json, UTF-8 JSON."""
        return json.dumps({"ssid": self.ssid, "password": self.password},
                          ensure_ascii=False).encode("utf-8")

    def describe(self) -> str:
        """What may be shown: the network's name and its kind, never the passphrase."""
        if self.open:
            return f"Wi-Fi network {self.ssid!r} (open, no passphrase)"
        kind = "a 64-hex-digit key" if len(self.password) == 64 else "a WPA2 passphrase"
        return f"Wi-Fi network {self.ssid!r} (with {kind})"


def ssid_problem(ssid: str) -> str | None:
    """Why `ssid` cannot be a network name (1-32 bytes of UTF-8, no control characters)."""
    size = len(ssid.encode("utf-8"))
    if size == 0:
        return "the network name (SSID) is empty"
    if size > SSID_MAX_BYTES:
        return (f"the network name (SSID) is {size} bytes of UTF-8; a Wi-Fi network name has at "
                f"most {SSID_MAX_BYTES}")
    if any(ord(c) < 32 or ord(c) == 127 for c in ssid):
        return "the network name (SSID) holds a control character (a tab, a line break, ...)"
    return None


def password_problem(password: str) -> str | None:
    """Why `password` is not a WPA2 passphrase (8-63 printable ASCII characters), a 64-hex-digit
    key or empty (an open network). The answer never quotes the passphrase."""
    if password == "":
        return None
    if len(password) == 64 and set(password) <= HEX_DIGITS:
        return None
    if not all(32 <= ord(c) <= 126 for c in password):
        return ("the passphrase holds a character that is not printable ASCII (letters, digits, "
                "space and punctuation only: WPA2 allows no other)")
    if not 8 <= len(password) <= 63:
        return (f"the passphrase is {len(password)} characters long: a WPA2 passphrase has 8 to "
                "63 characters (or is a key of exactly 64 hex digits; empty for an open network)")
    return None


def check(ssid: str, password: str) -> WifiCredentials:
    """The credentials, once both parts pass; else WifiError saying which part is wrong."""
    problem = ssid_problem(ssid) or password_problem(password)
    if problem:
        raise WifiError(problem)
    return WifiCredentials(ssid, password)


def _parse_json(text: str) -> tuple[str, str] | None:
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    if (isinstance(doc, dict) and set(doc) == {"ssid", "password"}
            and all(isinstance(v, str) for v in doc.values())):
        return doc["ssid"], doc["password"]
    return None


def _parse_lines(text: str) -> tuple[str, str] | None:
    found: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or key not in ("ssid", "password") or key in found:
            return None
        found[key] = value  # as written: a passphrase may start or end with a space
    if set(found) != {"ssid", "password"}:
        return None
    return found["ssid"], found["password"]


def read_file(path: Path) -> WifiCredentials:
    """The credentials in `path`: JSON {"ssid", "password"} or ssid=/password= lines."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise WifiError(f"cannot read the Wi-Fi file {path}: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise WifiError(f"{path} is not UTF-8 text; write it as {FILE_FORMAT}") from None
    parts = _parse_json(text) if text.lstrip().startswith("{") else _parse_lines(text)
    if parts is None:
        raise WifiError(f"{path} is not a Wi-Fi credentials file: write it as {FILE_FORMAT}")
    try:
        return check(*parts)
    except WifiError as exc:
        raise WifiError(f"{path}: {exc}") from None


def readable_by_others(path: Path) -> bool:
    """True when `path` is readable by its group or by everyone (POSIX modes only)."""
    if os.name != "posix":
        return False
    try:
        return bool(Path(path).stat().st_mode & (stat.S_IRGRP | stat.S_IROTH))
    except OSError:
        return False


def stdin_is_terminal() -> bool:
    """Whether the credentials can be asked for (stdin is a terminal)."""
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


ATTEMPTS = 3


def ask(say: Callable[[str], None], attempts: int = ATTEMPTS) -> WifiCredentials:
    """Ask on the terminal: the network name, then the passphrase twice, hidden."""
    import typer

    for _ in range(attempts):
        ssid = typer.prompt("Wi-Fi network name (SSID) the node joins")
        problem = ssid_problem(ssid)
        if problem:
            say(problem)
            continue
        break
    else:
        raise WifiError("no usable Wi-Fi network name (SSID) was given")
    for _ in range(attempts):
        password = typer.prompt("Wi-Fi passphrase (hidden; empty for an open network)",
                                default="", show_default=False, hide_input=True,
                                confirmation_prompt="Once more, to check")
        problem = password_problem(password)
        if problem:
            say(problem)
            continue
        if password == "" and not typer.confirm(
                f"{ssid!r} is an open network, with no passphrase. Is that right?",
                default=False):
            continue
        return WifiCredentials(ssid, password)
    raise WifiError("no usable Wi-Fi passphrase was given")


def no_credentials_message(target: str) -> str:
    return (f"{target} needs the street's Wi-Fi network, and there is no terminal to ask for it "
            "on: pass --wifi FILE, a file holding " + FILE_FORMAT + " (keep it chmod 600), or "
            "--no-wifi for a node that deliberately gets no wifi.json. The passphrase is never "
            "taken on the command line.")
