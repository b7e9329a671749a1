"""The release manifest: data model, validation, canonical encoding, and its signed envelope.

Canonical encoding: JSON with sorted keys, no whitespace (separators "," and ":"), ASCII only.
The signed envelope is itself canonical JSON:
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
from ota.keys import KEY_ID_HEX_LENGTH, KeyRing, canonical_json, key_id
from ota.signing import MANIFEST_TAG, sign_tagged, verify_tagged

FORMAT = 1
KINDS = ("app", "firmware")
SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$"
)
# A file path inside the app: relative, '/'-separated, no '..', a conservative character set.
PATH_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
BOARD_NAME = re.compile(r"^[a-z0-9_][a-z0-9_.-]*$")
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
KEY_ID = re.compile(r"^[0-9a-f]{" + str(KEY_ID_HEX_LENGTH) + "}$")
MAX_PATH = 96


def _is_int(value: Any) -> bool:
    return type(value) is int


def check_path(path: Any) -> str:
    """A safe app-relative file path, or MalformedManifest."""
    if not isinstance(path, str) or not 0 < len(path) <= MAX_PATH:
        raise MalformedManifest(f"file path {path!r} is empty, too long or not a string")
    parts = path.split("/")
    if not all(PATH_PART.match(part) for part in parts):
        raise MalformedManifest(f"file path {path!r} is not a plain relative path")
    return path


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
        """A validated manifest; total_size is computed from the files."""
        manifest = cls(
            version=version, sequence=sequence, board=tuple(board),
            created=int(time.time()) if created is None else created, expires=expires,
            files=tuple(files), kind=kind, key_id=key_id,
            hardware=tuple(hardware) if hardware is not None else None,
            total_size=sum(f.size for f in files),
        )
        manifest.validate()
        return manifest

    def validate(self) -> None:
        """Raise MalformedManifest unless every field is well-formed and consistent."""
        if self.format != FORMAT:
            raise MalformedManifest(f"unsupported manifest format {self.format!r}")
        if not isinstance(self.version, str) or not SEMVER.match(self.version):
            raise MalformedManifest(f"version {self.version!r} is not a semantic version")
        if not _is_int(self.sequence) or self.sequence < 0:
            raise MalformedManifest("sequence must be a non-negative integer")
        if not self.board or not all(isinstance(b, str) and BOARD_NAME.match(b)
                                     for b in self.board):
            raise MalformedManifest("board must be a non-empty list of board names")
        if self.hardware is not None and not all(isinstance(h, str) and h
                                                 for h in self.hardware):
            raise MalformedManifest("hardware must be a list of non-empty strings")
        if not (_is_int(self.created) and _is_int(self.expires)) or self.created < 0:
            raise MalformedManifest("created and expires must be epoch seconds")
        if self.expires <= self.created:
            raise MalformedManifest("expires must be later than created")
        if self.kind not in KINDS:
            raise MalformedManifest(f"kind must be one of {', '.join(KINDS)}")
        if self.key_id and not KEY_ID.match(self.key_id):
            raise MalformedManifest("key_id must be 16 lowercase hex digits")
        if not self.files:
            raise MalformedManifest("a release has at least one file")
        seen = set()
        for f in self.files:
            check_path(f.path)
            if f.path in seen:
                raise MalformedManifest(f"file {f.path} is listed twice")
            seen.add(f.path)
            if not _is_int(f.size) or f.size < 0:
                raise MalformedManifest(f"file {f.path} has a bad size")
            if not isinstance(f.sha256, str) or not SHA256_HEX.match(f.sha256):
                raise MalformedManifest(f"file {f.path} sha256 must be 64 lowercase hex digits")
        if self.kind == "firmware" and len(self.files) != 1:
            raise MalformedManifest("a firmware release carries exactly one image file")
        if self.total_size != sum(f.size for f in self.files):
            raise MalformedManifest("total_size is not the sum of the file sizes")

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
    def from_json(cls, data: Any) -> Manifest:
        """Parse and validate a JSON object; MalformedManifest on any deviation."""
        if not isinstance(data, dict):
            raise MalformedManifest("manifest must be a JSON object")
        allowed = {"format", "version", "sequence", "board", "created", "expires", "key_id",
                   "kind", "files", "total_size", "hardware"}
        unknown = set(data) - allowed
        if unknown:
            raise MalformedManifest(f"unknown manifest field(s): {', '.join(sorted(unknown))}")
        try:
            files = []
            for f in data["files"]:
                if not isinstance(f, dict) or set(f) != {"path", "size", "sha256"}:
                    raise MalformedManifest("each file needs exactly path, size and sha256")
                files.append(FileEntry(path=f["path"], size=f["size"], sha256=f["sha256"]))
            board, hardware = data["board"], data.get("hardware")
            if not isinstance(board, list) or not (hardware is None or isinstance(hardware, list)):
                raise MalformedManifest("board and hardware must be lists")
            manifest = cls(
                format=data["format"], version=data["version"], sequence=data["sequence"],
                board=tuple(board), created=data["created"], expires=data["expires"],
                key_id=data["key_id"], kind=data["kind"], files=tuple(files),
                total_size=data["total_size"],
                hardware=tuple(hardware) if hardware is not None else None,
            )
        except (KeyError, TypeError):
            raise MalformedManifest("manifest is missing required fields") from None
        manifest.validate()
        return manifest

    @classmethod
    def from_canonical(cls, data: bytes) -> Manifest:
        """Parse canonical bytes, refusing any other encoding of the same content."""
        try:
            manifest = cls.from_json(json.loads(data.decode("ascii")))
        except (UnicodeDecodeError, ValueError) as exc:
            if isinstance(exc, MalformedManifest):
                raise
            raise MalformedManifest("manifest is not ASCII JSON") from None
        if manifest.canonical() != bytes(data):
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
        """Parse an envelope; MalformedManifest if it is not one."""
        try:
            outer = json.loads(data)
            if not isinstance(outer, dict) or set(outer) != {"key_id", "manifest", "signature"}:
                raise MalformedManifest("envelope needs exactly key_id, manifest and signature")
            manifest = outer["manifest"].encode("ascii")
            signature = bytes.fromhex(outer["signature"])
            kid = outer["key_id"]
        except (ValueError, TypeError, AttributeError, UnicodeError) as exc:
            if isinstance(exc, MalformedManifest):
                raise
            raise MalformedManifest("not a signed manifest envelope") from None
        if not isinstance(kid, str) or len(signature) != 64:
            raise MalformedManifest("envelope key_id or signature is malformed")
        return cls(manifest_bytes=manifest, key_id=kid, signature=signature)


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

    Raises UnknownKey, RevokedKey, BadSignature, MalformedManifest; with `now`, also
    ExpiredManifest when the manifest has expired at that time.
    """
    if not isinstance(signed, SignedManifest):
        signed = SignedManifest.from_bytes(signed)
    public = ring.public_key(signed.key_id)
    verify_tagged(public, MANIFEST_TAG, signed.manifest_bytes, signed.signature)
    manifest = Manifest.from_canonical(signed.manifest_bytes)
    if manifest.key_id != signed.key_id:
        raise MalformedManifest("manifest key_id differs from the envelope's key_id")
    if now is not None and manifest.is_expired(now):
        raise ExpiredManifest(f"manifest expired at {manifest.expires}")
    return manifest
