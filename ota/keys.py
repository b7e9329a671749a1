"""Release keys: generation, key ids, PEM/raw files, the trusted key ring, rotation and revocation.

A key id is the first 8 bytes of SHA-256 of the raw 32-byte public key, as 16 hex digits.
A rotation statement (signed by the old key) introduces a new key; a revocation list (signed by a
trusted key) names key ids that must no longer be accepted. Both are JSON documents in canonical
form inside a small signed envelope, like manifests (see docs/update-format.md).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ota.errors import KeyFileError, RevokedKey, StatementError, UnknownKey
from ota.signing import REVOCATION_TAG, ROTATION_TAG, sign_tagged, verify_tagged

KEY_ID_HEX_LENGTH = 16


def canonical_json(document: dict[str, Any]) -> bytes:
    """Sorted keys, no whitespace, ASCII only: the one byte form of a document that gets signed."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode(
        "ascii"
    )


def generate_private_key() -> Ed25519PrivateKey:
    """A fresh Ed25519 release key."""
    return Ed25519PrivateKey.generate()


def raw_public_key(key: Ed25519PublicKey | Ed25519PrivateKey) -> bytes:
    """The 32-byte encoding of a public key (or of a private key's public half)."""
    if isinstance(key, Ed25519PrivateKey):
        key = key.public_key()
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(key: Ed25519PublicKey | Ed25519PrivateKey | bytes) -> str:
    """First 8 bytes of SHA-256 of the raw public key, as lowercase hex."""
    raw = key if isinstance(key, bytes) else raw_public_key(key)
    if len(raw) != 32:
        raise ValueError("a raw Ed25519 public key is 32 bytes")
    return hashlib.sha256(raw).digest()[:8].hex()


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write `data` to a temporary file beside `path`, then rename it over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_private_key(key: Ed25519PrivateKey, path: Path, password: bytes | None = None) -> None:
    """PKCS#8 PEM, encrypted when a password is given; file mode 0600."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password) if password
        else serialization.NoEncryption()
    )
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            encryption)
    _write_atomic(Path(path), pem, 0o600)


PUBLIC_KEY_ENCODINGS = ("pem", "raw", "hex")


def save_public_key(key: Ed25519PublicKey | Ed25519PrivateKey, path: Path,
                    encoding: str = "pem") -> None:
    """Write a public key as SubjectPublicKeyInfo PEM, 32 raw bytes, or 64 hex digits."""
    if isinstance(key, Ed25519PrivateKey):
        key = key.public_key()
    if encoding == "pem":
        data = key.public_bytes(serialization.Encoding.PEM,
                                serialization.PublicFormat.SubjectPublicKeyInfo)
    elif encoding == "raw":
        data = raw_public_key(key)
    elif encoding == "hex":
        data = raw_public_key(key).hex().encode("ascii") + b"\n"
    else:
        raise ValueError(f"encoding must be one of {', '.join(PUBLIC_KEY_ENCODINGS)}")
    _write_atomic(Path(path), data, 0o644)


def load_private_key(path: Path, password: bytes | None = None) -> Ed25519PrivateKey:
    """Read a PEM private key; KeyFileError if missing, not Ed25519, or the password is wrong."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read private key {path}: {exc.strerror}") from None
    try:
        key = serialization.load_pem_private_key(data, password=password or None)
    except TypeError:
        raise KeyFileError(f"{path} is encrypted: give its password") from None
    except ValueError:
        raise KeyFileError(f"{path} is not a PEM private key, or the password is wrong") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path} is not an Ed25519 key")
    return key


def parse_public_key(data: bytes, source: str = "public key") -> bytes:
    """Raw 32-byte public key from PEM, 32 raw bytes, or 64 hex digits."""
    text = data.strip()
    if text.startswith(b"-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(text)
        except ValueError:
            raise KeyFileError(f"{source} is not a valid PEM public key") from None
        if not isinstance(key, Ed25519PublicKey):
            raise KeyFileError(f"{source} is not an Ed25519 key")
        return raw_public_key(key)
    if len(data) == 32:
        return bytes(data)
    try:
        raw = bytes.fromhex(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raw = b""
    if len(raw) != 32:
        raise KeyFileError(f"{source} is neither PEM, 32 raw bytes, nor 64 hex digits")
    return raw


def load_public_key(path: Path) -> bytes:
    """Raw 32-byte public key from a file holding PEM, raw bytes or hex."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read public key {path}: {exc.strerror}") from None
    return parse_public_key(data, str(path))


@dataclass
class KeyRing:
    """The keys a verifier trusts (key id -> raw public key) and the key ids it refuses."""

    keys: dict[str, bytes] = field(default_factory=dict)
    revoked: set[str] = field(default_factory=set)
    revocation_serial: int = 0

    def add(self, public_key: bytes) -> str:
        """Trust a raw public key; returns its key id."""
        kid = key_id(public_key)
        self.keys[kid] = bytes(public_key)
        return kid

    def public_key(self, kid: str) -> bytes:
        """The trusted key with id `kid`; RevokedKey or UnknownKey otherwise."""
        if kid in self.revoked:
            raise RevokedKey(f"key {kid} has been revoked")
        try:
            return self.keys[kid]
        except KeyError:
            raise UnknownKey(f"key {kid} is not a trusted release key") from None

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON form (keys as hex) for storing or provisioning nodes."""
        return {
            "keys": {kid: raw.hex() for kid, raw in sorted(self.keys.items())},
            "revoked": sorted(self.revoked),
            "revocation_serial": self.revocation_serial,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> KeyRing:
        """Inverse of to_json; checks that every key id matches its key."""
        ring = cls(revoked=set(data.get("revoked", [])),
                   revocation_serial=int(data.get("revocation_serial", 0)))
        for kid, hexkey in data.get("keys", {}).items():
            if ring.add(bytes.fromhex(hexkey)) != kid:
                raise KeyFileError(f"key ring entry {kid} does not match its public key")
        return ring


def _envelope(document: dict[str, Any], field_name: str, tag: bytes,
              signer: Ed25519PrivateKey) -> bytes:
    payload = canonical_json(document).decode("ascii")
    return canonical_json({
        field_name: payload,
        "key_id": key_id(signer),
        "signature": sign_tagged(signer, tag, payload.encode("ascii")).hex(),
    })


def _open_envelope(envelope: bytes, field_name: str, tag: bytes,
                   ring: KeyRing) -> tuple[dict[str, Any], str]:
    """Verify a signed statement against `ring`; return (document, signer key id)."""
    try:
        outer = json.loads(envelope)
        payload = outer[field_name]
        kid = outer["key_id"]
        signature = bytes.fromhex(outer["signature"])
        document = json.loads(payload)
    except (ValueError, KeyError, TypeError):
        raise StatementError(f"not a signed {field_name} envelope") from None
    if not isinstance(document, dict) or not isinstance(kid, str):
        raise StatementError(f"not a signed {field_name} envelope")
    verify_tagged(ring.public_key(kid), tag, payload.encode("ascii"), signature)
    return document, kid


def make_rotation(old_key: Ed25519PrivateKey, new_public_key: bytes, *,
                  retire_old: bool = True, created: int | None = None) -> bytes:
    """A statement, signed by the old key, that `new_public_key` is a release key from now on."""
    document = {
        "type": "rotation",
        "format": 1,
        "old_key_id": key_id(old_key),
        "new_key_id": key_id(new_public_key),
        "new_public_key": new_public_key.hex(),
        "retire_old": retire_old,
        "created": int(time.time()) if created is None else created,
    }
    return _envelope(document, "statement", ROTATION_TAG, old_key)


def apply_rotation(ring: KeyRing, envelope: bytes) -> str:
    """Check a rotation statement against `ring` and trust its new key; returns the new key id.

    The statement must be signed by the key it names as old, which must be trusted and not
    revoked. With retire_old the old key is revoked once the new one is in.
    """
    document, signer = _open_envelope(envelope, "statement", ROTATION_TAG, ring)
    try:
        if document["type"] != "rotation" or document["format"] != 1:
            raise StatementError("not a version-1 rotation statement")
        new_raw = bytes.fromhex(document["new_public_key"])
        old_id = document["old_key_id"]
        retire = document["retire_old"] is True
    except (KeyError, TypeError, ValueError):
        raise StatementError("rotation statement is missing fields") from None
    if old_id != signer:
        raise StatementError("rotation statement is not signed by the key it retires")
    if len(new_raw) != 32 or key_id(new_raw) != document.get("new_key_id"):
        raise StatementError("rotation statement's new key does not match its key id")
    new_id = ring.add(new_raw)
    if retire and old_id != new_id:
        ring.revoked.add(old_id)
    return new_id


def make_revocation(signer: Ed25519PrivateKey, revoked: list[str], serial: int, *,
                    created: int | None = None) -> bytes:
    """A revocation list signed by a trusted key; `serial` must grow with every new list."""
    document = {
        "type": "revocation",
        "format": 1,
        "serial": serial,
        "revoked": sorted(set(revoked)),
        "created": int(time.time()) if created is None else created,
    }
    return _envelope(document, "statement", REVOCATION_TAG, signer)


def apply_revocation(ring: KeyRing, envelope: bytes) -> list[str]:
    """Check a revocation list against `ring` and revoke its key ids; returns them.

    A list whose serial is not above the last one applied is refused (no replay of an old list).
    """
    document, _ = _open_envelope(envelope, "statement", REVOCATION_TAG, ring)
    try:
        if document["type"] != "revocation" or document["format"] != 1:
            raise StatementError("not a version-1 revocation list")
        serial = document["serial"]
        revoked = document["revoked"]
    except (KeyError, TypeError):
        raise StatementError("revocation list is missing fields") from None
    if type(serial) is not int or not isinstance(revoked, list):
        raise StatementError("revocation list is malformed")
    if not all(isinstance(k, str) and len(k) == KEY_ID_HEX_LENGTH for k in revoked):
        raise StatementError("revocation list names something that is not a key id")
    if serial <= ring.revocation_serial:
        raise StatementError(
            f"revocation list serial {serial} is not newer than {ring.revocation_serial}"
        )
    ring.revoked.update(revoked)
    ring.revocation_serial = serial
    return list(revoked)
