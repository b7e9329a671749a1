"""Node-side checks of a signed release manifest (and key statements) before anything is written.

check_manifest() returns the parsed manifest or raises ManifestRejected whose `reason` is one of
REASONS. The signature is checked over the exact manifest bytes received (Ed25519 over
b"LLv1-manifest" + SHA-256(bytes)); only then are the bytes parsed. read_header() parses the
86-byte bundle header (see docs/update-format.md); FileCheck guards each file streamed after
the manifest: never more bytes than declared, and the SHA-256 must match.
"""

import binascii
import hashlib
import json
import struct

from micropython import const

MAGIC = b"LLBUNDLE"
BUNDLE_FORMAT = const(1)
HEADER_SIZE = const(86)  # magic 8, format 2, manifest length 4, key id 8, signature 64
MAX_MANIFEST_SIZE = const(16384)
MANIFEST_TAG = b"LLv1-manifest"
ROTATION_TAG = b"LLv1-rotation"
REVOCATION_TAG = b"LLv1-revocation"
# A clock before 2024-01-01 has not been set: expiry cannot be judged, so nothing is installed.
MIN_VALID_CLOCK = const(1704067200)

REASONS = (
    "malformed", "unknown_key", "revoked_key", "bad_signature", "expired", "clock_unset",
    "rollback", "wrong_board", "wrong_hardware", "file_too_long", "file_truncated",
    "bad_file_hash",
)
_FIELDS = ("format", "version", "sequence", "board", "created", "expires", "key_id", "kind",
           "files", "total_size")


class ManifestRejected(ValueError):
    """A refused update; `reason` is a short code from REASONS, `detail` says more."""

    def __init__(self, reason, detail=""):
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail


def read_header(header):
    """(manifest length, key id hex, 64-byte signature) from an 86-byte bundle header."""
    if len(header) != HEADER_SIZE:
        raise ManifestRejected("malformed", "short bundle header")
    magic, fmt, length, kid, signature = struct.unpack(">8sHI8s64s", header)
    if magic != MAGIC or fmt != BUNDLE_FORMAT:
        raise ManifestRejected("malformed", "not a version-1 bundle")
    if length > MAX_MANIFEST_SIZE or length < 2:
        raise ManifestRejected("malformed", "bad manifest length")
    return length, binascii.hexlify(kid).decode(), signature


def _is_hex(text, length):
    """Whether text is exactly `length` lowercase hex digits (one small allocation)."""
    if not isinstance(text, str) or len(text) != length or text.lower() != text:
        return False
    try:
        binascii.unhexlify(text)
    except ValueError:
        return False
    return True


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _check_signature(payload, kid, signature, tag, trusted, revoked):
    """Raise unless `signature` by trusted, unrevoked key `kid` covers the exact `payload`."""
    _check_digest(hashlib.sha256(payload).digest(), kid, signature, tag, trusted, revoked)


def verify_manifest_digest(digest, kid, signature, trusted, revoked):
    """Raise unless `signature` covers a manifest whose SHA-256 is `digest`.

    For a manifest on flash: hash it in chunks, verify, and only then read it into RAM, so the
    verifier and the manifest text are never in the heap together.
    """
    _check_digest(digest, kid, signature, MANIFEST_TAG, trusted, revoked)


def _check_digest(digest, kid, signature, tag, trusted, revoked):
    if not _is_hex(kid, 16) or len(signature) != 64:
        raise ManifestRejected("malformed", "key id or signature has the wrong form")
    if kid in revoked:
        raise ManifestRejected("revoked_key", kid)
    public = trusted.get(kid)
    if public is None:
        raise ManifestRejected("unknown_key", kid)
    message = tag + digest
    import ed25519  # loaded only to verify, and unloaded again (about 17 KB of heap)

    try:
        ed25519.verify(public, message, signature)
    except ed25519.BadSignature as exc:
        raise ManifestRejected("bad_signature", str(exc))
    finally:
        ed25519 = None
        _unload_verifier()


def _unload_verifier():
    """Drop the verifier's modules and tables so the manifest is parsed in the freed heap."""
    import gc
    import sys

    for name in ("ed25519", "sha512"):
        if name in sys.modules:
            del sys.modules[name]
    gc.collect()


def _open_statement(envelope, tag, trusted, revoked):
    """(document, signer key id) of a signed JSON statement envelope (rotation, revocation)."""
    try:
        outer = json.loads(envelope)
        payload = outer["statement"]
        kid = outer["key_id"]
        signature = binascii.unhexlify(outer["signature"])
    except (ValueError, KeyError, TypeError):
        raise ManifestRejected("malformed", "not a signed statement envelope")
    if not isinstance(payload, str):
        raise ManifestRejected("malformed", "statement is not a string")
    del outer
    _check_signature(payload, kid, signature, tag, trusted, revoked)
    try:
        return json.loads(payload), kid
    except ValueError:
        raise ManifestRejected("malformed", "statement is not JSON")


def _check_fields(m):
    """Raise 'malformed' unless the manifest has every field with the right type."""
    if not isinstance(m, dict):
        raise ManifestRejected("malformed", "manifest is not an object")
    for name in _FIELDS:
        if name not in m:
            raise ManifestRejected("malformed", "missing " + name)
    if m["format"] != 1 or not isinstance(m["version"], str):
        raise ManifestRejected("malformed", "format or version")
    for name in ("sequence", "created", "expires", "total_size"):
        if not _is_int(m[name]) or m[name] < 0:
            raise ManifestRejected("malformed", name)
    if m["kind"] not in ("app", "firmware"):
        raise ManifestRejected("malformed", "kind")
    if not isinstance(m["board"], list) or not m["board"]:
        raise ManifestRejected("malformed", "board")
    hardware = m.get("hardware")
    if hardware is not None and not isinstance(hardware, list):
        raise ManifestRejected("malformed", "hardware")
    files = m["files"]
    if not isinstance(files, list) or not files:
        raise ManifestRejected("malformed", "files")
    total = 0
    for f in files:
        if not isinstance(f, dict) or not _is_int(f.get("size")) or f["size"] < 0:
            raise ManifestRejected("malformed", "file size")
        path = f.get("path")
        if (not isinstance(path, str) or not path or path[0] == "/" or ".." in path
                or "\\" in path):
            raise ManifestRejected("malformed", "file path")
        if not _is_hex(f.get("sha256"), 64):
            raise ManifestRejected("malformed", "file sha256")
        total += f["size"]
    if total != m["total_size"]:
        raise ManifestRejected("malformed", "total_size")


def check_manifest(manifest, kid, signature, trusted, revoked, installed_sequence, board, now,
                   hardware=None):
    """The manifest dict of a signed manifest this node may install, or ManifestRejected.

    manifest: the canonical manifest exactly as received (bytes, or str from a JSON reply);
    kid: signer key id (16 hex); signature: 64 bytes (from read_header, or unhexlified);
    trusted: {key_id: 32-byte public key} pinned at provisioning; revoked: key ids refused;
    installed_sequence: sequence of the running release; board: this node's board name;
    now: the node's clock (epoch seconds); hardware: this node's hardware revision, if known.
    """
    _check_signature(manifest, kid, signature, MANIFEST_TAG, trusted, revoked)
    return check_manifest_fields(manifest, kid, installed_sequence, board, now, hardware)


def check_manifest_fields(manifest, kid, installed_sequence, board, now, hardware=None):
    """The parsed manifest if its fields allow this node to install it (signature checked
    already, by check_manifest or verify_manifest_digest), else ManifestRejected."""
    try:
        m = json.loads(manifest)
    except ValueError:
        raise ManifestRejected("malformed", "manifest is not JSON")
    _check_fields(m)
    if m["key_id"] != kid:
        raise ManifestRejected("malformed", "manifest key_id differs from the signer")
    if now < MIN_VALID_CLOCK:
        raise ManifestRejected("clock_unset", "clock not set")
    if now >= m["expires"]:
        raise ManifestRejected("expired", "expired at %d" % m["expires"])
    if m["sequence"] <= installed_sequence:
        raise ManifestRejected("rollback", "sequence %d is not newer than %d"
                               % (m["sequence"], installed_sequence))
    if board not in m["board"]:
        raise ManifestRejected("wrong_board", board)
    if m.get("hardware") is not None and hardware is not None and hardware not in m["hardware"]:
        raise ManifestRejected("wrong_hardware", hardware)
    return m


def check_rotation(envelope, trusted, revoked):
    """(new key id, new 32-byte key, retire_old) from a rotation statement signed by the old key."""
    doc, kid = _open_statement(envelope, ROTATION_TAG, trusted, revoked)
    try:
        new_hex = doc["new_public_key"]
        ok = doc["type"] == "rotation" and doc["old_key_id"] == kid and _is_hex(new_hex, 64)
    except (ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        raise ManifestRejected("malformed", "rotation statement")
    new_key = binascii.unhexlify(new_hex)
    new_id = binascii.hexlify(hashlib.sha256(new_key).digest()[:8]).decode()
    if new_id != doc.get("new_key_id"):
        raise ManifestRejected("malformed", "rotation key id")
    return new_id, new_key, doc.get("retire_old") is True


def check_revocation(envelope, trusted, revoked, last_serial):
    """(serial, [key ids]) of a revocation list newer than `last_serial`."""
    doc, _ = _open_statement(envelope, REVOCATION_TAG, trusted, revoked)
    try:
        serial = doc["serial"]
        ids = doc["revoked"]
        ok = doc["type"] == "revocation" and _is_int(serial) and isinstance(ids, list)
    except (ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        raise ManifestRejected("malformed", "revocation list")
    if serial <= last_serial:
        raise ManifestRejected("rollback", "revocation serial %d is not newer" % serial)
    return serial, ids


class FileCheck:
    """Size and SHA-256 guard for one file as it streams in; call update() then finish()."""

    def __init__(self, entry):
        self.path = entry["path"]
        self.size = entry["size"]
        self._sha = entry["sha256"]
        self._hash = hashlib.sha256()
        self.received = 0

    def update(self, chunk):
        """Account for a chunk before it is written; refuses any byte past the declared size."""
        n = len(chunk)
        if self.received + n > self.size:
            raise ManifestRejected("file_too_long", self.path)
        self.received += n
        self._hash.update(chunk)

    def finish(self):
        """Raise unless exactly `size` bytes arrived and they hash to the declared SHA-256."""
        if self.received != self.size:
            raise ManifestRejected("file_truncated", self.path)
        digest = binascii.hexlify(self._hash.digest()).decode()
        if digest != self._sha:
            raise ManifestRejected("bad_file_hash", self.path)
