"""The release manifest: data model, the strict canonical grammar, and its signed envelope.

A manifest travels only as canonical JSON (see docs/update-format.md, "Manifest"): printable
ASCII, keys sorted, separators "," and ":", no whitespace, no escapes, canonical integers, the
exact key sets, and the limits below. `Manifest.from_canonical` refuses every other byte form of
the same content with MalformedManifest (reason `malformed`), exactly as a node does.

The standalone signed envelope (a check-in reply, `<bundle>.manifest.json`) is itself JSON:
    {"key_id": "<16 hex>", "manifest": "<canonical manifest as a string>", "signature": "<hex>"}
The signature covers b"LLv1-manifest" + SHA-256(canonical manifest bytes) (see ota.signing);
a node verifies it over the exact bytes it received, then parses them.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field, replace
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ota.errors import ExpiredManifest, MalformedManifest
from ota.keys import KeyRing, canonical_json, key_id, unique_keys
from ota.signing import MANIFEST_TAG, sign_tagged, verify_tagged

FORMAT = 1
KINDS = ("app", "firmware")
FIRMWARE_IMAGE_NAME = "firmware.bin"  # the one file of a firmware release
RESERVED_PATH = "app_version.json"  # written by the node's installer; never in a release

MIN_MANIFEST_SIZE = 2
MAX_MANIFEST_SIZE = 16384  # a node holds the manifest in RAM
MAX_FILES = 255
MAX_PATH = 96
MAX_FILE_SIZE = 16777216
MAX_TOTAL_SIZE = 16777216
MAX_NAMES = 8  # board and hardware lists
MAX_NAME = 32  # a board or hardware name
MAX_VERSION = 32
MAX_SEQUENCE = 2147483647
MAX_TIME = 4294967295

TOP_LEVEL_KEYS = ("board", "created", "expires", "files", "format", "hardware", "key_id",
                  "kind", "sequence", "total_size", "version")
OPTIONAL_KEYS = ("hardware",)
FILE_KEYS = ("path", "sha256", "size")

# Every pattern is matched with fullmatch over ASCII text (no `$`-before-newline, no Unicode
# digits): the manifest's bytes are checked to be printable ASCII before anything is parsed.
_IDENT = r"[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*"
SEMVER = re.compile(r"(?:0|[1-9][0-9]*)\.(?:0|[1-9][0-9]*)\.(?:0|[1-9][0-9]*)"
                    rf"(?:-{_IDENT})?(?:\+{_IDENT})?", re.ASCII)
PATH_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", re.ASCII)
BOARD_NAME = re.compile(r"[a-z0-9_][a-z0-9_.-]*", re.ASCII)
HARDWARE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", re.ASCII)
SHA256_HEX = re.compile(r"[0-9a-f]{64}", re.ASCII)
KEY_ID = re.compile(r"[0-9a-f]{16}", re.ASCII)


def _is_int(value: Any) -> bool:
    """An integer and not a bool (`true` is never an integer; `1.0` is never parsed as one)."""
    return type(value) is int


def _int_in(value: Any, low: int, high: int) -> bool:
    return _is_int(value) and low <= value <= high


def path_key(path: str) -> list[str]:
    """The sort key of a file path: its parts, so '/' sorts before every other character."""
    return path.split("/")


def check_path(path: Any) -> str:
    """A safe app-relative file path, or MalformedManifest.

    1..96 characters; '/'-separated parts each matching [A-Za-z0-9_][A-Za-z0-9_.-]* (so no
    empty part, no leading '/', no part starting with '.', '-' or a space, no '..'); and not
    the reserved top-level `app_version.json`.
    """
    if not isinstance(path, str) or not 0 < len(path) <= MAX_PATH:
        raise MalformedManifest(f"file path {path!r} is empty, too long or not a string")
    if not all(PATH_PART.fullmatch(part) for part in path.split("/")):
        raise MalformedManifest(f"file path {path!r} is not a plain relative path")
    if path == RESERVED_PATH:
        raise MalformedManifest(f"file path {path!r} is reserved for the node's installer")
    return path


def check_file_order(paths: list[str]) -> None:
    """MalformedManifest unless the paths strictly increase in path order ('/' first) and none
    is a directory of another (in that order such a pair is always adjacent)."""
    for before, after in zip(paths, paths[1:], strict=False):
        if path_key(before) >= path_key(after):
            raise MalformedManifest(
                f"files {before!r} and {after!r} are out of order or listed twice")
        if after.startswith(before + "/"):
            raise MalformedManifest(f"file {before!r} is also a directory ({after!r})")


def _check_names(names: Any, pattern: re.Pattern[str], what: str) -> None:
    if not isinstance(names, tuple | list) or not 0 < len(names) <= MAX_NAMES:
        raise MalformedManifest(f"{what} must be a list of 1..{MAX_NAMES} names")
    for name in names:
        if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME \
                or not pattern.fullmatch(name):
            raise MalformedManifest(f"{what} name {name!r} is not allowed")


def _no_float(text: str) -> Any:
    raise MalformedManifest(f"{text} is not a canonical integer")


def _no_constant(text: str) -> Any:
    raise MalformedManifest(f"{text} is not JSON")


def loads_strict(data: bytes | str) -> Any:
    """JSON with duplicate keys, fractions, exponents and NaN/Infinity refused (MalformedManifest).

    Only the parse: the canonical byte form is checked by the caller.
    """
    try:
        return json.loads(data, object_pairs_hook=unique_keys, parse_float=_no_float,
                          parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise MalformedManifest(f"not JSON: {exc}") from None


def check_canonical_bytes(data: bytes) -> None:
    """MalformedManifest unless every byte is printable ASCII (0x20..0x7e) and none is '\\'.

    No string of the format may hold '"' or '\\', so a backslash anywhere is an escape.
    """
    bad = next((i for i, b in enumerate(data) if not 0x20 <= b <= 0x7E), None)
    if bad is not None:
        raise MalformedManifest(f"byte {bad} (0x{data[bad]:02x}) is not printable ASCII")
    escape = data.find(b"\\")
    if escape >= 0:
        raise MalformedManifest(f"escape at byte {escape}: no string may hold a backslash")


@dataclass(frozen=True)
class FileEntry:
    """One file of a release: where it goes in the app, how big it is, and its SHA-256."""

    path: str
    size: int
    sha256: str

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "size": self.size}


@dataclass(frozen=True)
class Manifest:
    """What a release is and who may install it. Build with `Manifest.create` or `from_json`."""

    version: str
    sequence: int
    board: tuple[str, ...]
    created: int
    expires: int
    files: tuple[FileEntry, ...]
    kind: str = "app"
    key_id: str = ""
    hardware: tuple[str, ...] | None = None
    format: int = FORMAT
    total_size: int = field(default=-1)

    @classmethod
    def create(cls, *, version: str, sequence: int, board: list[str], files: list[FileEntry],
               expires: int, created: int | None = None, kind: str = "app",
               hardware: list[str] | None = None, key_id: str = "") -> Manifest:
        """A validated manifest; files sorted in path order, total_size computed from them."""
        ordered = sorted(files, key=lambda f: path_key(f.path) if isinstance(f.path, str)
                         else [])
        manifest = cls(
            version=version, sequence=sequence, board=tuple(board),
            created=int(time.time()) if created is None else created, expires=expires,
            files=tuple(ordered), kind=kind, key_id=key_id,
            hardware=tuple(hardware) if hardware is not None else None,
            total_size=sum(f.size for f in files if _is_int(f.size)),
        )
        manifest.validate()
        return manifest

    def validate(self, *, signed: bool = False) -> None:
        """Raise MalformedManifest unless every field is well-formed and consistent.

        An unsigned (staged) manifest may leave key_id empty; with `signed` it must be set.
        """
        if not _is_int(self.format) or self.format != FORMAT:
            raise MalformedManifest(f"unsupported manifest format {self.format!r}")
        if not isinstance(self.version, str) or not 0 < len(self.version) <= MAX_VERSION \
                or not SEMVER.fullmatch(self.version):
            raise MalformedManifest(
                f"version {self.version!r} is not a semantic version of at most "
                f"{MAX_VERSION} characters")
        if not _int_in(self.sequence, 0, MAX_SEQUENCE):
            raise MalformedManifest(f"sequence must be an integer 0..{MAX_SEQUENCE}")
        _check_names(self.board, BOARD_NAME, "board")
        if self.hardware is not None:
            _check_names(self.hardware, HARDWARE_NAME, "hardware")
        if not (_int_in(self.created, 0, MAX_TIME) and _int_in(self.expires, 0, MAX_TIME)):
            raise MalformedManifest(f"created and expires must be integers 0..{MAX_TIME}")
        if self.expires <= self.created:
            raise MalformedManifest("expires must be later than created")
        if self.kind not in KINDS:
            raise MalformedManifest(f"kind must be one of {', '.join(KINDS)}")
        if not isinstance(self.key_id, str) or not (
                KEY_ID.fullmatch(self.key_id) or (self.key_id == "" and not signed)):
            raise MalformedManifest("key_id must be 16 lowercase hex digits")
        if not isinstance(self.files, tuple | list) or not 0 < len(self.files) <= MAX_FILES:
            raise MalformedManifest(f"a release has 1..{MAX_FILES} files")
        for f in self.files:
            check_path(f.path)
            if not _int_in(f.size, 0, MAX_FILE_SIZE):
                raise MalformedManifest(f"file {f.path} has a bad size")
            if not isinstance(f.sha256, str) or not SHA256_HEX.fullmatch(f.sha256):
                raise MalformedManifest(f"file {f.path} sha256 must be 64 lowercase hex digits")
        check_file_order([f.path for f in self.files])
        if self.kind == "firmware" and [f.path for f in self.files] != [FIRMWARE_IMAGE_NAME]:
            raise MalformedManifest(
                f"a firmware release carries exactly one image file, {FIRMWARE_IMAGE_NAME}")
        if not _is_int(self.total_size) or self.total_size != sum(f.size for f in self.files):
            raise MalformedManifest("total_size is not the sum of the file sizes")
        if self.total_size > MAX_TOTAL_SIZE:
            raise MalformedManifest(f"a release holds at most {MAX_TOTAL_SIZE} bytes")

    def to_json(self) -> dict[str, Any]:
        """The manifest as a JSON object (field names as in docs/update-format.md)."""
        data: dict[str, Any] = {
            "format": self.format,
            "version": self.version,
            "sequence": self.sequence,
            "board": list(self.board),
            "created": self.created,
            "expires": self.expires,
            "key_id": self.key_id,
            "kind": self.kind,
            "files": [f.to_json() for f in self.files],
            "total_size": self.total_size,
        }
        if self.hardware is not None:
            data["hardware"] = list(self.hardware)
        return data

    def canonical(self) -> bytes:
        """The canonical bytes: the only form that is ever signed."""
        self.validate()
        return canonical_json(self.to_json())

    @classmethod
    def from_json(cls, data: Any, *, signed: bool = False) -> Manifest:
        """Validate a parsed JSON object field by field; MalformedManifest on any deviation.

        Exactly the documented keys (hardware optional), exact types (`true` is not an integer).
        """
        if not isinstance(data, dict):
            raise MalformedManifest("manifest must be a JSON object")
        unknown = set(data) - set(TOP_LEVEL_KEYS)
        if unknown:
            raise MalformedManifest(f"unknown manifest field(s): {', '.join(sorted(unknown))}")
        missing = set(TOP_LEVEL_KEYS) - set(OPTIONAL_KEYS) - set(data)
        if missing:
            raise MalformedManifest(
                f"manifest is missing required field(s): {', '.join(sorted(missing))}")
        files, board, hardware = data["files"], data["board"], data.get("hardware", None)
        if not isinstance(files, list):
            raise MalformedManifest("files must be a list")
        if not isinstance(board, list) or ("hardware" in data and not isinstance(hardware, list)):
            raise MalformedManifest("board and hardware must be lists")
        entries = []
        for f in files:
            if not isinstance(f, dict) or set(f) != set(FILE_KEYS):
                raise MalformedManifest("each file needs exactly path, sha256 and size")
            entries.append(FileEntry(path=f["path"], size=f["size"], sha256=f["sha256"]))
        manifest = cls(
            format=data["format"], version=data["version"], sequence=data["sequence"],
            board=tuple(board), created=data["created"], expires=data["expires"],
            key_id=data["key_id"], kind=data["kind"], files=tuple(entries),
            total_size=data["total_size"],
            hardware=tuple(hardware) if hardware is not None else None,
        )
        manifest.validate(signed=signed)
        return manifest

    @classmethod
    def from_canonical(cls, data: bytes, *, signed: bool = True) -> Manifest:
        """Parse canonical bytes, refusing any other encoding of the same content.

        `signed=False` admits an empty key_id (a staged, not yet signed manifest).
        """
        data = bytes(data)
        if not MIN_MANIFEST_SIZE <= len(data) <= MAX_MANIFEST_SIZE:
            raise MalformedManifest(
                f"manifest is {len(data)} bytes; {MIN_MANIFEST_SIZE}..{MAX_MANIFEST_SIZE} allowed")
        check_canonical_bytes(data)
        manifest = cls.from_json(loads_strict(data), signed=signed)
        if canonical_json(manifest.to_json()) != data:
            raise MalformedManifest("manifest bytes are not in canonical form")
        return manifest

    def is_expired(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) >= self.expires


@dataclass(frozen=True)
class SignedManifest:
    """Canonical manifest bytes with the Ed25519 signature over them and the signer's key id."""

    manifest_bytes: bytes
    key_id: str
    signature: bytes

    @property
    def manifest(self) -> Manifest:
        """The parsed manifest (no signature check: use verify_manifest for that)."""
        return Manifest.from_canonical(self.manifest_bytes)

    def to_bytes(self) -> bytes:
        """The envelope in canonical JSON."""
        return canonical_json({
            "key_id": self.key_id,
            "manifest": self.manifest_bytes.decode("ascii"),
            "signature": self.signature.hex(),
        })

    @classmethod
    def from_bytes(cls, data: bytes) -> SignedManifest:
        """Parse an envelope; MalformedManifest if it is not one (duplicate keys refused too)."""
        outer = loads_strict(data)
        if not isinstance(outer, dict) or set(outer) != {"key_id", "manifest", "signature"}:
            raise MalformedManifest("envelope needs exactly key_id, manifest and signature")
        manifest, signature, kid = outer["manifest"], outer["signature"], outer["key_id"]
        if not (isinstance(manifest, str) and isinstance(signature, str)
                and isinstance(kid, str)):
            raise MalformedManifest("envelope key_id, manifest and signature must be strings")
        if not re.fullmatch(r"[0-9a-f]{128}", signature, re.ASCII):
            raise MalformedManifest("envelope signature must be 128 lowercase hex digits")
        try:
            raw = manifest.encode("ascii")
        except UnicodeEncodeError:
            raise MalformedManifest("manifest is not ASCII") from None
        return cls(manifest_bytes=raw, key_id=kid, signature=bytes.fromhex(signature))


def sign_manifest(manifest: Manifest, private_key: Ed25519PrivateKey) -> SignedManifest:
    """Stamp the signer's key id into the manifest and sign its canonical bytes."""
    kid = key_id(private_key)
    stamped = replace(manifest, key_id=kid)
    data = stamped.canonical()
    return SignedManifest(manifest_bytes=data, key_id=kid,
                          signature=sign_tagged(private_key, MANIFEST_TAG, data))


def verify_manifest(signed: SignedManifest | bytes, ring: KeyRing,
                    now: float | None = None) -> Manifest:
    """The manifest if its signature is valid under a trusted, unrevoked key.

    The node's order: key id or signature of the wrong form (MalformedManifest), RevokedKey,
    UnknownKey, BadSignature, then the grammar and the manifest's key_id against the signer
    (MalformedManifest). With `now`, also ExpiredManifest when it has expired at that time;
    the rest of what a node checks before installing is ota.policy.check_install.
    """
    if not isinstance(signed, SignedManifest):
        signed = SignedManifest.from_bytes(signed)
    if not isinstance(signed.key_id, str) or not KEY_ID.fullmatch(signed.key_id) \
            or len(signed.signature) != 64:
        raise MalformedManifest("signer key id or signature has the wrong form")
    public = ring.public_key(signed.key_id)
    verify_tagged(public, MANIFEST_TAG, signed.manifest_bytes, signed.signature)
    manifest = Manifest.from_canonical(signed.manifest_bytes)
    if manifest.key_id != signed.key_id:
        raise MalformedManifest("manifest key_id differs from the signer's key id")
    if now is not None and manifest.is_expired(now):
        raise ExpiredManifest(f"manifest expired at {manifest.expires}")
    return manifest
