"""The node's update verifier: bytes in, a verdict out (a Manifest, or Refused), and no I/O.

A manifest is read by a strict grammar over its exact bytes rather than by a JSON parser: the
format is canonical JSON (sorted keys, no whitespace, no escapes, ASCII), so one grammar both
refuses every other encoding (duplicate or unknown keys, `1.0`, `true`, spaces, `\\u` escapes)
and needs no parsed copy of the manifest in the heap. Check order and reasons:
docs/update-format.md. The signature is checked over SHA-256 of the exact bytes first
(check_signature takes that digest, so a caller can hash a manifest on flash in chunks).
"""

import binascii
import gc
import hashlib
import json
import struct

from micropython import const

from updater.format import (
    BUNDLE_FORMAT,
    FIRMWARE_FILE,
    HEADER_SIZE,
    MAGIC,
    MANIFEST_TAG,
    MAX_FILE_SIZE,
    MAX_FILES,
    MAX_MANIFEST_SIZE,
    MAX_NAME,
    MAX_NAMES,
    MAX_REVOKED,
    MAX_SEQUENCE,
    MAX_TIME,
    MIN_MANIFEST_SIZE,
    MIN_VALID_CLOCK,
    REVOCATION_TAG,
    ROTATION_TAG,
    Refused,
    check_path,
    is_part,
)

_QUOTE = const(0x22)
_BACKSLASH = const(0x5C)


def read_header(header):
    """(manifest length, signer key id as hex, 64-byte signature) of an 86-byte bundle header."""
    if len(header) != HEADER_SIZE:
        raise Refused("malformed", "short bundle header")
    magic, fmt, length, kid, signature = struct.unpack(">8sHI8s64s", header)
    if magic != MAGIC or fmt != BUNDLE_FORMAT:
        raise Refused("malformed", "not a version-1 bundle")
    if length > MAX_MANIFEST_SIZE or length < MIN_MANIFEST_SIZE:
        raise Refused("malformed", "manifest length %d" % length)
    return length, binascii.hexlify(kid).decode(), signature


def is_hex(text, length):
    """Whether `text` is exactly `length` lowercase hex digits."""
    if not isinstance(text, str) or len(text) != length:
        return False
    for c in text:
        if not ("0" <= c <= "9" or "a" <= c <= "f"):
            return False
    return True


def check_signature(digest, kid, signature, tag, trusted, revoked):
    """Raise Refused unless `signature` by trusted, unrevoked key `kid` covers a document of
    kind `tag` whose SHA-256 is `digest`.

    The Ed25519 verifier (about 17 KB of heap) is loaded for this check only and dropped
    again, so whatever the caller reads next has that heap back.
    """
    if not is_hex(kid, 16) or len(signature) != 64:
        raise Refused("malformed", "key id or signature has the wrong form")
    if kid in revoked:
        raise Refused("revoked_key", kid)
    public = trusted.get(kid)
    if public is None:
        raise Refused("unknown_key", kid)
    from core import ondemand

    try:
        ondemand.call("crypto.ed25519", "verify", public, tag + digest, signature)
    except ValueError as exc:  # ed25519.BadSignature
        raise Refused("bad_signature", str(exc))
    finally:
        gc.collect()


# -- the grammar ---------------------------------------------------------------------------


class _Reader:
    """A cursor over canonical JSON bytes; every mismatch is Refused('malformed', what)."""

    def __init__(self, raw, at=0):
        self.raw = raw
        self.at = at

    def fail(self, what):
        raise Refused("malformed", "%s at byte %d" % (what, self.at))

    def lit(self, text):
        """Consume the exact bytes `text`."""
        if not self.raw.startswith(text, self.at):
            self.fail("expected " + text.decode())
        self.at += len(text)

    def peek(self, text):
        return self.raw.startswith(text, self.at)

    def string(self, limit):
        """A string of at most `limit` characters: printable ASCII without '"' or '\\'."""
        raw = self.raw
        self.lit(b'"')
        start = at = self.at
        end = len(raw)
        while True:
            if at >= end or at - start > limit:
                self.fail("string too long or unterminated")
            c = raw[at]
            if c == _QUOTE:
                break
            if c < 0x20 or c > 0x7E or c == _BACKSLASH:
                self.at = at
                self.fail("character not allowed")
            at += 1
        self.at = at + 1
        return raw[start:at].decode()

    def integer(self, limit):
        """A canonical non-negative integer (no sign, fraction, exponent or leading zero)."""
        raw = self.raw
        start = at = self.at
        end = len(raw)
        while at < end and 0x30 <= raw[at] <= 0x39:
            at += 1
        if at == start or at - start > 10 or (raw[start] == 0x30 and at - start > 1):
            self.fail("not a canonical integer")
        value = int(raw[start:at])
        if value > limit:
            self.fail("integer out of range")
        self.at = at
        return value

    def names(self, upper):
        """A list of 1..8 names (board names in lower case; hardware names with `upper`)."""
        out = []
        self.lit(b"[")
        while True:
            name = self.string(MAX_NAME)
            if not is_part(name, MAX_NAME, upper):
                self.fail("bad name")
            out.append(name)
            if len(out) > MAX_NAMES:
                self.fail("too many names")
            if not self.peek(b","):
                break
            self.at += 1
        self.lit(b"]")
        return out

    def hex_string(self, length):
        text = self.string(length)
        if not is_hex(text, length):
            self.fail("not %d lowercase hex digits" % length)
        return text

    def end(self):
        if self.at != len(self.raw):
            self.fail("bytes after the document")


def is_semver(text):
    """MAJOR.MINOR.PATCH (no leading zeros), optional -pre.release and +build identifiers."""
    if not 0 < len(text) <= MAX_NAME:
        return False
    core, plus, build = text.partition("+")
    core, dash, pre = core.partition("-")
    if (dash and not _identifiers(pre)) or (plus and not _identifiers(build)):
        return False
    numbers = core.split(".")
    if len(numbers) != 3:
        return False
    for n in numbers:
        if not n or (len(n) > 1 and n[0] == "0"):
            return False
        for c in n:
            if not "0" <= c <= "9":
                return False
    return True


def _identifiers(text):
    for ident in text.split("."):
        if not ident:
            return False
        for c in ident:
            if not ("0" <= c <= "9" or "a" <= c <= "z" or "A" <= c <= "Z" or c == "-"):
                return False
    return True


def _path_before(a, b):
    """Whether path `a` sorts before `b` with '/' before every other character."""
    n = min(len(a), len(b))
    for i in range(n):
        x, y = a[i], b[i]
        if x != y:
            return x == "/" or (y != "/" and x < y)
    return len(a) < len(b)


class Manifest:
    """A manifest that passed the grammar: its fields, and its files read from `raw` on demand.

    Holds the manifest's bytes (a node has at most 16 KB of them) instead of a parsed list, so
    an install keeps one file entry in the heap at a time.
    """

    def __init__(self, raw):
        r = _Reader(raw)
        r.lit(b'{"board":')
        self.board = r.names(False)
        r.lit(b',"created":')
        self.created = r.integer(MAX_TIME)
        r.lit(b',"expires":')
        self.expires = r.integer(MAX_TIME)
        r.lit(b',"files":[')
        self.raw = raw
        self._files_at = r.at
        count = total = 0
        prev = None
        for path, size, _ in self._entries(r):
            count += 1
            if count > MAX_FILES:
                r.fail("more than %d files" % MAX_FILES)
            if prev is not None:
                if not _path_before(prev, path):
                    r.fail("files out of order or listed twice")
                if path.startswith(prev) and path[len(prev)] == "/":
                    r.fail("a file is the directory of another")
            prev = path
            total += size
        r.lit(b',"format":1,')
        self.hardware = None
        if r.peek(b'"hardware":'):
            r.at += 11
            self.hardware = r.names(True)
            r.lit(b",")
        r.lit(b'"key_id":')
        self.key_id = r.hex_string(16)
        r.lit(b',"kind":')
        self.kind = r.string(8)
        r.lit(b',"sequence":')
        self.sequence = r.integer(MAX_SEQUENCE)
        r.lit(b',"total_size":')
        self.total_size = r.integer(MAX_FILE_SIZE)
        r.lit(b',"version":')
        self.version = r.string(MAX_NAME)
        r.lit(b"}")
        r.end()
        self.count = count
        if self.expires <= self.created:
            r.fail("expires is not after created")
        if not is_semver(self.version):
            r.fail("version is not a semantic version")
        if self.kind == "firmware":
            if count != 1 or prev != FIRMWARE_FILE:
                r.fail("a firmware release is one file, " + FIRMWARE_FILE)
        elif self.kind != "app":
            r.fail("kind")
        if total != self.total_size:
            r.fail("total_size is not the sum of the file sizes")

    def _entries(self, r):
        """(path, size, sha256 hex) of each file, read from the manifest's bytes by `r`."""
        while True:
            r.lit(b'{"path":')
            path = r.string(96)
            check_path(path)
            r.lit(b',"sha256":')
            sha = r.hex_string(64)
            r.lit(b',"size":')
            size = r.integer(MAX_FILE_SIZE)
            r.lit(b"}")
            yield path, size, sha
            if not r.peek(b","):
                break
            r.at += 1
        r.lit(b"]")

    def files(self):
        """(path, size, sha256 hex) of each file, in bundle order."""
        return self._entries(_Reader(self.raw, self._files_at))


def parse_manifest(raw):
    """The Manifest of canonical manifest bytes (signature not checked), or Refused."""
    if not MIN_MANIFEST_SIZE <= len(raw) <= MAX_MANIFEST_SIZE:
        raise Refused("malformed", "manifest size")
    return Manifest(raw)


def check_policy(m, kid, installed_sequence, board, now, hardware=None):
    """Raise Refused unless this node may install manifest `m` signed by `kid`."""
    if m.key_id != kid:
        raise Refused("malformed", "manifest key_id differs from the signer")
    if now < MIN_VALID_CLOCK:
        raise Refused("clock_unset", "clock not set")
    if now >= m.expires:
        raise Refused("expired", "expired at %d" % m.expires)
    if m.sequence <= installed_sequence:
        raise Refused("rollback", "sequence %d is not newer than %d"
                      % (m.sequence, installed_sequence))
    if board not in m.board:
        raise Refused("wrong_board", board)
    if m.hardware is not None and hardware not in m.hardware:
        # a node that does not know its revision cannot show that it is one of those listed
        raise Refused("wrong_hardware", hardware or "unknown")


def check_manifest(raw, kid, signature, trusted, revoked, installed_sequence, board, now,
                   hardware=None):
    """The Manifest of signed manifest bytes this node may install, or Refused.

    raw: the manifest exactly as received; kid: signer key id (16 hex); signature: 64 bytes;
    trusted: {key id: 32-byte public key}; revoked: key ids refused; installed_sequence: the
    running release's; board, hardware: this node's; now: its clock (epoch seconds).
    """
    check_signature(hashlib.sha256(raw).digest(), kid, signature, MANIFEST_TAG, trusted,
                    revoked)
    m = parse_manifest(raw)
    check_policy(m, kid, installed_sequence, board, now, hardware)
    return m


class FileCheck:
    """Size and SHA-256 guard for one file as it streams: update() each chunk, then finish()."""

    def __init__(self, path, size, sha256):
        self.path = path
        self.left = size
        self.sha256 = sha256
        self._hash = hashlib.sha256()

    def update(self, chunk):
        """Account for a chunk before it is written; refuses any byte past the declared size."""
        n = len(chunk)
        if n > self.left:
            raise Refused("file_too_long", self.path)
        self.left -= n
        self._hash.update(chunk)

    def finish(self):
        """Raise unless exactly the declared size arrived and it hashes to the declared SHA-256."""
        if self.left:
            raise Refused("file_truncated", self.path)
        if binascii.hexlify(self._hash.digest()).decode() != self.sha256:
            raise Refused("bad_file_hash", self.path)


class BundleCheck:
    """A whole bundle's verdict from its bytes, fed in chunks of any size.

    feed() raises Refused at the first byte that cannot be installed; finish() returns the
    Manifest once the bundle ended exactly after its last file. (The update client applies the
    same checks while it writes; this class serves whole-bundle checks and the conformance
    vectors.)
    """

    def __init__(self, trusted, revoked, installed_sequence, board, now, hardware=None):
        self._policy = (trusted, revoked, installed_sequence, board, now, hardware)
        self._head = b""
        self._need = HEADER_SIZE
        self.manifest = None
        self._files = None
        self._file = None

    def feed(self, chunk):
        at = 0
        n = len(chunk)
        while at < n:
            if self.manifest is None:
                take = min(self._need - len(self._head), n - at)
                self._head += bytes(chunk[at:at + take])
                at += take
                if len(self._head) == self._need:
                    self._header_done()
                continue
            if self._file is None:
                self._next_file()
                if self._file is None:
                    raise Refused("file_too_long", "bytes after the last file")
            f = self._file
            take = min(f.left, n - at)
            f.update(chunk[at:at + take])
            at += take
            if not f.left:
                f.finish()
                self._file = None

    def _header_done(self):
        if self._need == HEADER_SIZE:
            self._length, self._kid, self._sig = read_header(self._head)
            self._need = HEADER_SIZE + self._length
            return
        trusted, revoked, installed, board, now, hardware = self._policy
        self.manifest = check_manifest(self._head[HEADER_SIZE:], self._kid, self._sig, trusted,
                                       revoked, installed, board, now, hardware)
        self._head = None
        self._files = self.manifest.files()

    def _next_file(self):
        for path, size, sha in self._files:
            self._file = FileCheck(path, size, sha)
            if size:
                return
            self._file.finish()
            self._file = None

    def finish(self):
        """The Manifest when the bundle is complete; Refused('file_truncated') otherwise."""
        if self.manifest is None:
            raise Refused("file_truncated", "bundle ends before its manifest")
        if self._file is not None:
            raise Refused("file_truncated", self._file.path)
        self._next_file()
        if self._file is not None:
            raise Refused("file_truncated", self._file.path)
        return self.manifest


# -- key statements ------------------------------------------------------------------------


def open_envelope(envelope):
    """(signer key id, 64-byte signature, statement text) of a canonical statement envelope.

    Encoded again and compared, so a duplicate key, other spacing or key order is refused.
    """
    try:
        outer = json.loads(envelope)
        kid = outer["key_id"]
        sig_hex = outer["signature"]
        statement = outer["statement"]
        ok = (len(outer) == 3 and isinstance(statement, str) and isinstance(kid, str)
              and is_hex(sig_hex, 128))
    except (ValueError, KeyError, TypeError):
        ok = False
    if ok:
        raw = envelope.encode() if isinstance(envelope, str) else bytes(envelope)
        ok = raw == ('{"key_id":%s,"signature":%s,"statement":%s}' % (
            json.dumps(kid), json.dumps(sig_hex), json.dumps(statement))).encode()
    if not ok:
        raise Refused("malformed", "not a canonical signed statement envelope")
    return kid, binascii.unhexlify(sig_hex), statement


def parse_statement(text):
    """(kind, document) of a canonical rotation or revocation statement, or Refused."""
    raw = text.encode() if isinstance(text, str) else text
    r = _Reader(raw)
    doc = {}
    r.lit(b'{"created":')
    doc["created"] = r.integer(MAX_TIME)
    r.lit(b',"format":1,')
    if r.peek(b'"new_key_id":'):
        kind = "rotation"
        r.at += 13
        doc["new_key_id"] = r.hex_string(16)
        r.lit(b',"new_public_key":')
        doc["new_public_key"] = r.hex_string(64)
        r.lit(b',"old_key_id":')
        doc["old_key_id"] = r.hex_string(16)
        r.lit(b',"retire_old":')
        retire = r.peek(b"true")
        r.lit(b"true" if retire else b"false")
        doc["retire_old"] = retire
    else:
        kind = "revocation"
        r.lit(b'"revoked":[')
        ids = []
        while True:
            kid = r.hex_string(16)
            if ids and kid <= ids[-1]:
                r.fail("revoked ids out of order or listed twice")
            ids.append(kid)
            if len(ids) > MAX_REVOKED:
                r.fail("more than %d revoked ids" % MAX_REVOKED)
            if not r.peek(b","):
                break
            r.at += 1
        r.lit(b"]")
        doc["revoked"] = ids
    r.lit(b',"serial":')
    doc["serial"] = r.integer(MAX_SEQUENCE)
    r.lit(b',"type":"' + kind.encode() + b'"}')
    r.end()
    return kind, doc


def check_statement(envelope, keys):
    """(kind, document) of a statement that applies to key set `keys`, else Refused.

    keys: {"keys": {key id: hex}, "revoked": [key ids], "serial": n}, as /keys.json holds it.
    Signer trusted and unrevoked, signature, grammar, then the chain: exactly serial n + 1.
    """
    kid, signature, statement = open_envelope(envelope)
    raw = statement.encode()
    if raw.endswith(b'"type":"rotation"}'):
        tag = ROTATION_TAG
    elif raw.endswith(b'"type":"revocation"}'):
        tag = REVOCATION_TAG
    else:
        raise Refused("malformed", "not a rotation or a revocation")
    trusted = {}
    hexkeys = keys.get("keys", {})
    if kid in hexkeys and is_hex(hexkeys[kid], 64):
        trusted[kid] = binascii.unhexlify(hexkeys[kid])
    revoked = keys.get("revoked", [])
    check_signature(hashlib.sha256(raw).digest(), kid, signature, tag, trusted, revoked)
    kind, doc = parse_statement(raw)
    serial = key_serial(keys)
    if doc["serial"] <= serial:
        raise Refused("replayed", "statement %d, key set at %d" % (doc["serial"], serial))
    if doc["serial"] != serial + 1:
        raise Refused("out_of_order", "statement %d, key set at %d" % (doc["serial"], serial))
    if kind == "rotation":
        new_id = doc["new_key_id"]
        if doc["old_key_id"] != kid:
            raise Refused("malformed", "rotation not signed by the key it replaces")
        digest = hashlib.sha256(binascii.unhexlify(doc["new_public_key"])).digest()
        if binascii.hexlify(digest[:8]).decode() != new_id:
            raise Refused("malformed", "rotation key id does not match its key")
        if new_id in hexkeys or new_id in revoked:
            raise Refused("replayed", "key %s is known already" % new_id)
    else:
        left = 0
        for other in hexkeys:
            if other not in revoked and other not in doc["revoked"]:
                left += 1
        if not left:
            raise Refused("no_key_left", "the list would revoke every release key")
    return kind, doc


def key_serial(keys):
    """The serial of the last statement a key set reflects (0: as provisioned)."""
    serial = keys.get("serial", keys.get("revocation_serial", 0))
    return serial if isinstance(serial, int) else 0
