"""Release keys: generation, key ids, PEM/raw files, the key ring, and its chain of statements.

A key id is the first 8 bytes of SHA-256 of the raw 32-byte public key, as 16 hex digits.
A key ring has a `serial`: 0 as provisioned, then the serial of the last statement applied to it.
Statements form one chain: a rotation (signed by the old key) introduces a new key, a revocation
(signed by a trusted key) names key ids that must no longer be accepted, and each applies only
as the very next serial. Both are canonical JSON documents inside a small signed envelope; what
`apply_statement` refuses is a StatementError whose `reason` is the node's code for it (see
docs/update-format.md).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ota.errors import BadSignature, KeyFileError, RevokedKey, StatementError, UnknownKey
from ota.signing import REVOCATION_TAG, ROTATION_TAG, sign_tagged, verify_tagged

KEY_ID_HEX_LENGTH = 16
MAX_SERIAL = 2147483647  # a statement serial, like a manifest sequence
MAX_TIME = 4294967295
MAX_REVOKED = 16  # key ids in one revocation
STATEMENT_KINDS = ("rotation", "revocation")
_TAGS = {"rotation": ROTATION_TAG, "revocation": REVOCATION_TAG}
_KEY_ID = re.compile(r"[0-9a-f]{16}")
_PUBLIC_KEY = re.compile(r"[0-9a-f]{64}")
_SIGNATURE = re.compile(r"[0-9a-f]{128}")
_ENVELOPE_KEYS = {"key_id", "signature", "statement"}
_DOCUMENT_KEYS = {
    "rotation": {"created", "format", "new_key_id", "new_public_key", "old_key_id", "retire_old",
                 "serial", "type"},
    "revocation": {"created", "format", "revoked", "serial", "type"},
}


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
    """The keys a verifier trusts (key id -> raw public key), the key ids it refuses, and the
    serial of the last statement applied (0: as provisioned)."""

    keys: dict[str, bytes] = field(default_factory=dict)
    revoked: set[str] = field(default_factory=set)
    serial: int = 0

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

    def usable(self) -> list[str]:
        """Ids of the keys that are trusted and not revoked."""
        return sorted(k for k in self.keys if k not in self.revoked)

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON form (keys as hex) for storing or provisioning nodes (/keys.json)."""
        return {
            "keys": {kid: raw.hex() for kid, raw in sorted(self.keys.items())},
            "revoked": sorted(self.revoked),
            "serial": self.serial,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> KeyRing:
        """Inverse of to_json (older files say "revocation_serial"); checks every key id."""
        serial = data.get("serial", data.get("revocation_serial", 0))
        if type(serial) is not int or not 0 <= serial <= MAX_SERIAL:
            raise KeyFileError(f"key ring serial {serial!r} is not an integer 0..{MAX_SERIAL}")
        ring = cls(revoked=set(data.get("revoked", [])), serial=serial)
        for kid, hexkey in data.get("keys", {}).items():
            if ring.add(bytes.fromhex(hexkey)) != kid:
                raise KeyFileError(f"key ring entry {kid} does not match its public key")
        return ring


def refusal(reason: str, message: str) -> StatementError:
    """A StatementError carrying the node's reason code (`reason`) and `detail` (the message)."""
    exc = StatementError(f"{reason}: {message}")
    exc.reason = reason
    exc.detail = message  # type: ignore[attr-defined]
    return exc


# -- making statements ----------------------------------------------------------------------


def _check_serial(serial: int) -> None:
    if type(serial) is not int or not 1 <= serial <= MAX_SERIAL:
        raise ValueError(f"a statement serial is an integer 1..{MAX_SERIAL}")


def _created(created: int | None) -> int:
    value = int(time.time()) if created is None else created
    if type(value) is not int or not 0 <= value <= MAX_TIME:
        raise ValueError(f"created is an integer 0..{MAX_TIME}")
    return value


def _envelope(document: dict[str, Any], tag: bytes, signer: Ed25519PrivateKey) -> bytes:
    payload = canonical_json(document).decode("ascii")
    return canonical_json({
        "key_id": key_id(signer),
        "signature": sign_tagged(signer, tag, payload.encode("ascii")).hex(),
        "statement": payload,
    })


def make_rotation(old_key: Ed25519PrivateKey, new_public_key: bytes, *, serial: int,
                  retire_old: bool = True, created: int | None = None) -> bytes:
    """Statement `serial` of the chain, signed by the old key: `new_public_key` is a release key
    from now on (and, with retire_old, the old one no longer is). Returns the envelope."""
    _check_serial(serial)
    if len(new_public_key) != 32:
        raise ValueError("a raw Ed25519 public key is 32 bytes")
    document = {
        "created": _created(created),
        "format": 1,
        "new_key_id": key_id(bytes(new_public_key)),
        "new_public_key": bytes(new_public_key).hex(),
        "old_key_id": key_id(old_key),
        "retire_old": bool(retire_old),
        "serial": serial,
        "type": "rotation",
    }
    return _envelope(document, ROTATION_TAG, old_key)


def make_revocation(signer: Ed25519PrivateKey, revoked: list[str], *, serial: int,
                    created: int | None = None) -> bytes:
    """Statement `serial` of the chain, signed by a trusted key: these key ids are revoked.

    1..16 distinct key ids (16 lowercase hex digits); they are listed sorted. Returns the
    envelope.
    """
    _check_serial(serial)
    ids = sorted(set(revoked))
    if not 1 <= len(ids) <= MAX_REVOKED:
        raise ValueError(f"a revocation names 1..{MAX_REVOKED} distinct key ids")
    bad = [k for k in ids if not isinstance(k, str) or not _KEY_ID.fullmatch(k)]
    if bad:
        raise ValueError(f"not key ids (16 lowercase hex digits): {', '.join(map(str, bad))}")
    document = {
        "created": _created(created),
        "format": 1,
        "revoked": ids,
        "serial": serial,
        "type": "revocation",
    }
    return _envelope(document, REVOCATION_TAG, signer)


# -- reading statements ---------------------------------------------------------------------


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json object_pairs_hook: an object that names a key twice is malformed (ValueError)."""
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            raise ValueError(f"key {key!r} appears twice")
        document[key] = value
    return document


def _parse_envelope(envelope: bytes | str) -> tuple[str, bytes, str]:
    """(signer key id, 64-byte signature, statement text) of any JSON encoding of an envelope."""
    try:
        outer = json.loads(envelope, object_pairs_hook=unique_keys)
    except (ValueError, TypeError, RecursionError):
        raise refusal("malformed", "not a signed statement envelope (JSON)") from None
    if not isinstance(outer, dict) or set(outer) != _ENVELOPE_KEYS:
        raise refusal("malformed", "a statement envelope has exactly key_id, signature and "
                                   "statement")
    kid, signature, statement = outer["key_id"], outer["signature"], outer["statement"]
    if not (isinstance(kid, str) and _KEY_ID.fullmatch(kid) and isinstance(signature, str)
            and _SIGNATURE.fullmatch(signature) and isinstance(statement, str)):
        raise refusal("malformed", "key id or signature has the wrong form")
    return kid, bytes.fromhex(signature), statement


def open_envelope(envelope: bytes | str) -> tuple[str, bytes, str]:
    """(signer key id, 64-byte signature, statement text) of an envelope; `malformed` otherwise.

    The envelope is canonical JSON with exactly key_id (16 lowercase hex digits), signature
    (128) and statement (a string), as a node reads it.
    """
    kid, signature, statement = _parse_envelope(envelope)
    raw = envelope.encode() if isinstance(envelope, str) else bytes(envelope)
    if raw != _encode_envelope(kid, signature, statement):
        raise refusal("malformed", "a statement envelope is canonical JSON (sorted keys, no "
                                   "spaces)")
    return kid, signature, statement


def _encode_envelope(kid: str, signature: bytes, statement: str) -> bytes:
    return canonical_json({"key_id": kid, "signature": signature.hex(), "statement": statement})


def canonical_envelope(envelope: bytes | str) -> str:
    """The envelope re-encoded canonically (the statement text, and so its signature, kept)."""
    return _encode_envelope(*_parse_envelope(envelope)).decode("ascii")


def _kind_by_suffix(statement: str) -> str | None:
    """The statement's kind as a node tells it: canonical documents end with their type."""
    for kind in STATEMENT_KINDS:
        if statement.endswith(f'"type":"{kind}"}}'):
            return kind
    return None


def _int_in(value: Any, low: int, high: int) -> bool:
    return type(value) is int and low <= value <= high


def parse_statement(statement: str) -> tuple[str, dict[str, Any]]:
    """(kind, document) of a canonical version-1 statement document; `malformed` otherwise.

    The same strict grammar as manifests: exactly the kind's keys, each of its type (integers
    are ints, never bools or floats), and the text is its own canonical form (sorted keys, no
    whitespace, no escapes, ASCII only, no key twice).
    """
    try:
        document = json.loads(statement, object_pairs_hook=unique_keys)
    except (ValueError, TypeError, RecursionError):
        raise refusal("malformed", "statement is not a JSON document") from None
    if not isinstance(document, dict):
        raise refusal("malformed", "statement is not a JSON object")
    kind = document.get("type")
    if kind not in STATEMENT_KINDS:
        raise refusal("malformed", "statement type is neither rotation nor revocation")
    if set(document) != _DOCUMENT_KEYS[kind]:
        raise refusal("malformed", f"a {kind} statement has exactly the keys "
                                   f"{', '.join(sorted(_DOCUMENT_KEYS[kind]))}")
    if type(document["format"]) is not int or document["format"] != 1:
        raise refusal("malformed", "statement format is not the integer 1")
    if not _int_in(document["created"], 0, MAX_TIME):
        raise refusal("malformed", f"created is not an integer 0..{MAX_TIME}")
    if not _int_in(document["serial"], 0, MAX_SERIAL):
        raise refusal("malformed", f"serial is not an integer 0..{MAX_SERIAL}")
    if kind == "rotation":
        for name, pattern in (("new_key_id", _KEY_ID), ("old_key_id", _KEY_ID),
                              ("new_public_key", _PUBLIC_KEY)):
            value = document[name]
            if not isinstance(value, str) or not pattern.fullmatch(value):
                raise refusal("malformed", f"{name} is not lowercase hex of the right length")
        if type(document["retire_old"]) is not bool:
            raise refusal("malformed", "retire_old is not true or false")
    else:
        ids = document["revoked"]
        if not isinstance(ids, list) or not 1 <= len(ids) <= MAX_REVOKED:
            raise refusal("malformed", f"revoked is not a list of 1..{MAX_REVOKED} key ids")
        if not all(isinstance(k, str) and _KEY_ID.fullmatch(k) for k in ids):
            raise refusal("malformed", "revoked names something that is not a key id")
        if any(a >= b for a, b in zip(ids, ids[1:], strict=False)):
            raise refusal("malformed", "revoked key ids are not sorted, or one is listed twice")
    if canonical_json(document).decode("ascii") != statement:
        raise refusal("malformed", "statement is not in canonical form")
    return kind, document


def _loose_document(envelope: bytes | str) -> dict[str, Any]:
    _, _, statement = open_envelope(envelope)
    try:
        document = json.loads(statement)
    except (ValueError, RecursionError):
        document = None
    if not isinstance(document, dict):
        raise refusal("malformed", "statement is not a JSON object")
    return document


def statement_serial(envelope: bytes | str) -> int:
    """The serial a statement claims (unverified: for messages and listings)."""
    serial = _loose_document(envelope).get("serial")
    if not _int_in(serial, 0, MAX_SERIAL):
        raise refusal("malformed", "statement has no serial")
    return serial


def statement_kind(envelope: bytes | str) -> str:
    """"rotation" or "revocation", as the statement says (unverified)."""
    kind = _loose_document(envelope).get("type")
    if kind not in STATEMENT_KINDS:
        raise refusal("malformed", "statement type is neither rotation nor revocation")
    return kind


# -- applying statements --------------------------------------------------------------------


def check_statement(ring: KeyRing, envelope: bytes | str,
                    expect: str | None = None) -> tuple[str, dict[str, Any], str]:
    """(kind, document, signer) of a statement that applies to `ring` now; StatementError else.

    The node's order: envelope form; kind (by the statement's last key, or `expect`); signer
    revoked (`revoked_key`) or unknown (`unknown_key`); signature (`bad_signature`); grammar
    (`malformed`); then the chain: serial exactly ring.serial + 1 (`replayed` if lower,
    `out_of_order` if higher); a rotation is signed by its old key and introduces a key not
    known yet (`replayed`); a revocation leaves a usable key (`no_key_left`). `ring` is not
    changed.
    """
    kid, signature, statement = open_envelope(envelope)
    kind = expect or _kind_by_suffix(statement)
    if kind not in STATEMENT_KINDS:
        raise refusal("malformed", "not a rotation or a revocation")
    try:
        public = ring.public_key(kid)
        verify_tagged(public, _TAGS[kind], statement.encode("utf-8"), signature)
    except RevokedKey:
        raise refusal("revoked_key", f"statement signed by revoked key {kid}") from None
    except UnknownKey:
        raise refusal("unknown_key", f"statement signed by {kid}, not a trusted key") from None
    except BadSignature:
        raise refusal("bad_signature", f"the {kind} signature by {kid} does not match") from None
    except UnicodeEncodeError:
        raise refusal("malformed", "statement is not text") from None
    parsed, document = parse_statement(statement)
    if parsed != kind:
        raise refusal("malformed", f"statement is a {parsed}, not a {kind}")
    serial = document["serial"]
    if serial <= ring.serial:
        raise refusal("replayed", f"statement {serial}, key set at {ring.serial}")
    if serial != ring.serial + 1:
        raise refusal("out_of_order", f"statement {serial}, key set at {ring.serial}")
    if kind == "rotation":
        new_id = document["new_key_id"]
        if document["old_key_id"] != kid:
            raise refusal("malformed", "rotation not signed by the key it replaces")
        if key_id(bytes.fromhex(document["new_public_key"])) != new_id:
            raise refusal("malformed", "rotation's new key id does not match its key")
        if new_id in ring.keys or new_id in ring.revoked:
            raise refusal("replayed", f"key {new_id} is known already")
    else:
        revoked = set(document["revoked"])
        if not [k for k in ring.usable() if k not in revoked]:
            raise refusal("no_key_left", "the revocation would revoke every release key")
    return kind, document, kid


def apply_statement(ring: KeyRing, envelope: bytes | str) -> tuple[str, dict[str, Any]]:
    """Check a statement (see check_statement) and apply it to `ring`; (kind, document).

    Rotation: its new key is trusted, and with retire_old its old key revoked. Revocation: its
    key ids are revoked (known or not). Then ring.serial is the statement's serial. A refused
    statement leaves `ring` as it was.
    """
    kind, document, _ = check_statement(ring, envelope)
    _apply(ring, kind, document)
    return kind, document


def _apply(ring: KeyRing, kind: str, document: dict[str, Any]) -> None:
    if kind == "rotation":
        ring.add(bytes.fromhex(document["new_public_key"]))
        if document["retire_old"]:
            ring.revoked.add(document["old_key_id"])
    else:
        ring.revoked.update(document["revoked"])
    ring.serial = document["serial"]


def apply_rotation(ring: KeyRing, envelope: bytes | str) -> str:
    """Apply a rotation statement (nothing else: another kind fails its signature check);
    returns the new key id."""
    kind, document, _ = check_statement(ring, envelope, expect="rotation")
    _apply(ring, kind, document)
    return document["new_key_id"]


def apply_revocation(ring: KeyRing, envelope: bytes | str) -> list[str]:
    """Apply a revocation statement (nothing else: another kind fails its signature check);
    returns the key ids it revokes."""
    kind, document, _ = check_statement(ring, envelope, expect="revocation")
    _apply(ring, kind, document)
    return list(document["revoked"])
