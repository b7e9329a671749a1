"""Writes the update format v1 conformance vectors: tests/conformance/update_format/*.json.

    .venv/bin/python tests/conformance/make_vectors.py

Deterministic: fixed Ed25519 seeds, fixed times, fixed file bodies (Ed25519 signatures are
deterministic too), so running it again gives the same bytes; a test checks that the committed
files are what this script writes. Built with json, hashlib and cryptography only, never with
ota/: the vectors are bytes made by hand to the rules of docs/update-format.md, so they judge
the host (ota) and the node (firmware/lib/updater) alike.

One JSON file per vector. Every vector has `name`, `shows` (the rule it pins down), `type`
("bundle" or "statement") and `expect`: "ok" or the reason code a verifier must refuse with.

Bundle vectors: `bundle` (hex of the whole bundle), the verifier's state (`trusted`: {key id:
public key hex}; `revoked`: [key id]; `now`, `installed_sequence`, `board`, `hardware` (or
null)), and `manifest_text` (the manifest bytes as text, for people; the bundle is what counts).
An "ok" vector adds `expect_manifest` (kind, sequence, version, file paths in bundle order).
Every signed manifest is really signed, malformed ones included, over exactly their bytes: a
refusal for `malformed` comes from the grammar, never from the signature.

Statement vectors: `envelope` (the string a check-in reply carries) and `keys` (the key set it
is applied to, as /keys.json holds it); an "ok" vector adds `expect_keys`, the key set after
it (revoked ids sorted).
"""

from __future__ import annotations

import hashlib
import json
import struct
import sys
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

OUT_DIR = Path(__file__).resolve().parent / "update_format"

MAGIC = b"LLBUNDLE"
MANIFEST_TAG = b"LLv1-manifest"
ROTATION_TAG = b"LLv1-rotation"
REVOCATION_TAG = b"LLv1-revocation"
ED25519_L = 2**252 + 27742317777372353535851937790883648493

CREATED = 1767225600  # 2026-01-01T00:00:00Z
EXPIRES = CREATED + 90 * 86400
NOW = CREATED + 86400
MIN_VALID_CLOCK = 1704067200  # 2024-01-01
SEQUENCE = 12
INSTALLED = 11
BOARDS = ["emulated", "esp32_devkitc"]
NODE_BOARD = "esp32_devkitc"
NODE_HARDWARE = "rev-b"


class Key:
    """A release key made from a fixed seed."""

    def __init__(self, name: str, seed_byte: int):
        self.name = name
        self.private = Ed25519PrivateKey.from_private_bytes(bytes([seed_byte]) * 32)
        self.public = self.private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.kid_raw = hashlib.sha256(self.public).digest()[:8]
        self.kid = self.kid_raw.hex()

    def sign(self, tag: bytes, payload: bytes) -> bytes:
        return self.private.sign(tag + hashlib.sha256(payload).digest())


A = Key("A", 0xA1)  # the release key
B = Key("B", 0xB2)  # a second trusted key
R = Key("R", 0xC3)  # a revoked key
U = Key("U", 0xD4)  # a key nobody trusts
N = Key("N", 0xE5)  # a new key, introduced by rotations
EXTRA = [Key(f"X{i}", 0x10 + i) for i in range(17)]  # ids for long revocation lists


def canon(document: Any) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=True).encode("ascii")


def body(path: str) -> bytes:
    """A file's fixed content: some text and every byte value, so hashes catch any change."""
    seed = hashlib.sha256(path.encode("utf-8", "surrogateescape")).digest()
    return b"# " + path.encode("utf-8", "surrogateescape") + b"\n" + seed + bytes(range(7))


BASE_FILES = [("boot.py", body("boot.py")), ("lib/greet.mpy", body("lib/greet.mpy")),
              ("main.py", body("main.py"))]

DELETE = object()


def entry(path: str, data: bytes) -> dict[str, Any]:
    return {"path": path, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def manifest(contents: list[tuple[str, bytes]] | None = None, signer: Key = A,
             **changes: Any) -> tuple[bytes, bytes]:
    """(canonical manifest bytes, the files' bytes in listed order) of the base release made of
    `contents` (path, bytes), with `changes` to its fields (DELETE drops one). The files are
    listed in the order given, not sorted."""
    contents = BASE_FILES if contents is None else contents
    doc: dict[str, Any] = {
        "board": list(BOARDS), "created": CREATED, "expires": EXPIRES,
        "files": [entry(p, d) for p, d in contents], "format": 1, "key_id": signer.kid,
        "kind": "app", "sequence": SEQUENCE, "total_size": sum(len(d) for _, d in contents),
        "version": "1.4.0",
    }
    for name, value in changes.items():
        if value is DELETE:
            doc.pop(name, None)
        else:
            doc[name] = value
    return canon(doc), b"".join(d for _, d in contents)


def edit(data: bytes, old: bytes, new: bytes) -> bytes:
    """`data` with the one occurrence of `old` replaced by `new`."""
    assert data.count(old) == 1, (old, data)
    return data.replace(old, new)


def bundle(manifest_bytes: bytes, files: bytes, signer: Key = A, *, header_kid: bytes | None = None,
           signature: bytes | None = None, magic: bytes = MAGIC, fmt: int = 1,
           length: int | None = None) -> bytes:
    signature = signer.sign(MANIFEST_TAG, manifest_bytes) if signature is None else signature
    header = struct.pack(">8sHI8s64s", magic, fmt,
                         len(manifest_bytes) if length is None else length,
                         signer.kid_raw if header_kid is None else header_kid, signature)
    return header + manifest_bytes + files


def trusted(*keys: Key) -> dict[str, str]:
    return {k.kid: k.public.hex() for k in keys}


class Vectors:
    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}

    def _add(self, name: str, vector: dict[str, Any]) -> None:
        assert name not in self.items, name
        self.items[name] = vector

    def bundle(self, name: str, shows: str, expect: str, data: bytes, *,
               trust: tuple[Key, ...] = (A, B), revoked: tuple[Key, ...] = (R,),
               now: int = NOW, installed_sequence: int = INSTALLED, board: str = NODE_BOARD,
               hardware: str | None = NODE_HARDWARE) -> None:
        vector: dict[str, Any] = {
            "name": name, "shows": shows, "type": "bundle", "expect": expect,
            "trusted": trusted(*trust), "revoked": sorted(k.kid for k in revoked),
            "now": now, "installed_sequence": installed_sequence, "board": board,
            "hardware": hardware,
        }
        length = struct.unpack(">I", data[10:14])[0] if len(data) >= 86 else 0
        if 2 <= length <= 16384:
            vector["manifest_text"] = data[86:86 + length].decode("utf-8", "backslashreplace")
        if expect == "ok":
            doc = json.loads(data[86:86 + struct.unpack(">I", data[10:14])[0]])
            vector["expect_manifest"] = {
                "kind": doc["kind"], "sequence": doc["sequence"], "version": doc["version"],
                "files": [f["path"] for f in doc["files"]]}
        vector["bundle"] = data.hex()
        self._add(name, vector)

    def signed(self, name: str, shows: str, expect: str, manifest_bytes: bytes, files: bytes,
               signer: Key = A, **state: Any) -> None:
        """A bundle of `manifest_bytes` really signed by `signer`, then the files."""
        self.bundle(name, shows, expect, bundle(manifest_bytes, files, signer), **state)

    def statement(self, name: str, shows: str, expect: str, envelope: str,
                  keys: dict[str, Any], expect_keys: dict[str, Any] | None = None) -> None:
        vector = {"name": name, "shows": shows, "type": "statement", "expect": expect,
                  "keys": keys, "envelope": envelope}
        if expect == "ok":
            assert expect_keys is not None
            vector["expect_keys"] = expect_keys
        self._add(name, vector)


# -- bundles ---------------------------------------------------------------------------------


def ok_vectors(v: Vectors) -> None:
    v.signed("ok_app", "an app release a node may install: three files, header, signature",
             "ok", *manifest())
    fw = [("firmware.bin", bytes(range(256)) * 3)]
    v.signed("ok_firmware", "a firmware release: exactly one file, firmware.bin", "ok",
             *manifest(fw, kind="firmware", board=["esp32_devkitc"], version="1.29.0"))
    v.signed("ok_hardware_listed", "hardware listed and the node's among it", "ok",
             *manifest(hardware=["rev-a", "rev-b"]))
    v.signed("ok_no_hardware_listed_node_hardware_unknown",
             "no hardware listed: any node, one that does not know its hardware too", "ok",
             *manifest(), hardware=None)
    v.signed("ok_second_trusted_key", "any trusted, unrevoked key may sign", "ok",
             *manifest(signer=B), signer=B)
    v.signed("ok_revoked_list_names_other_keys", "revoking other keys does not touch this one",
             "ok", *manifest(), revoked=(R, U))
    files = [(p, body(p)) for p in ("lib/a.py", "lib/b/c.py", "lib-x.txt", "lib.txt",
                                    "main.py")]
    v.signed("ok_path_order_slash_first",
             "'/' sorts before every other character: lib/... before lib-x.txt and lib.txt "
             "(plain string order would put lib-x.txt first)", "ok", *manifest(files))
    files = [("a.py", b""), ("b.py", body("b.py")), ("c.py", b"")]
    v.signed("ok_empty_files", "files of size 0 are fine, first and last", "ok",
             *manifest(files))
    v.signed("ok_only_empty_files", "total_size 0: the bundle ends right after the manifest",
             "ok", *manifest([("a.py", b""), ("b.py", b"")]))
    v.signed("ok_version_prerelease_and_build", "semantic version with -pre.release and +build",
             "ok", *manifest(version="2.0.0-rc.1+build.5"))
    v.signed("ok_version_32_chars", "a version of exactly 32 characters", "ok",
             *manifest(version="10.20.30-alpha.beta-" + "x" * 12))
    long_path = "lib/" + "d" * 40 + "/" + "f" * 48 + ".py"
    assert len(long_path) == 96
    v.signed("ok_path_96_chars", "a path of exactly 96 characters", "ok",
             *manifest([(long_path, body(long_path)), ("main.py", body("main.py"))]))
    v.signed("ok_reserved_name_below_top",
             "only the top-level app_version.json is reserved; lib/app_version.json is a file",
             "ok", *manifest([("lib/app_version.json", b"{}"), ("main.py", body("main.py"))]))
    v.signed("ok_integer_limits",
             "created 0, expires 4294967295, sequence 2147483647: the largest values", "ok",
             *manifest(created=0, expires=4294967295, sequence=2147483647),
             installed_sequence=2147483646)
    v.signed("ok_last_second_before_expiry", "now = expires - 1 is still in time", "ok",
             *manifest(), now=EXPIRES - 1)
    v.signed("ok_clock_just_set", "a clock at exactly 2024-01-01 counts as set", "ok",
             *manifest(created=1700000000, expires=1800000000), now=MIN_VALID_CLOCK)
    boards = ["b" * 32, "esp32_devkitc", "esp32_devkitc.v4-1", "_x", "0", "a.b", "c-d",
              "emulated"]
    hardware = ["REV-B.2_x", "rev-b", "H" * 32, "_", "9", "a", "b", "c"]
    v.signed("ok_names_at_limits",
             "8 board and 8 hardware names, 32-character names, '.', '-', '_' inside", "ok",
             *manifest(board=boards, hardware=hardware))
    v.signed("ok_installed_zero_sequence_one", "a node that has installed nothing (0) takes 1",
             "ok", *manifest(sequence=1), installed_sequence=0)
    data = max_size_manifest()
    v.signed("ok_manifest_16384_bytes", "a manifest of exactly 16384 bytes, the largest",
             "ok", data, b"")


def max_size_manifest() -> bytes:
    """A valid manifest of exactly 16384 bytes: many empty files, paths padded to fit."""
    files = [(f"p/{i:04}", b"") for i in range(150)]
    data, _ = manifest(files)
    deficit = 16384 - len(data)
    assert deficit > 0
    padded = []
    for path, content in files:
        grow = min(deficit, 96 - len(path))
        padded.append((path + "x" * grow, content))
        deficit -= grow
    assert deficit == 0
    data, _ = manifest(padded)
    assert len(data) == 16384
    return data


def header_vectors(v: Vectors) -> None:
    m, f = manifest()
    v.bundle("header_bad_magic", "magic other than LLBUNDLE", "malformed",
             bundle(m, f, magic=b"LLBUNDLF"))
    v.bundle("header_format_0", "bundle format other than 1", "malformed", bundle(m, f, fmt=0))
    v.bundle("header_format_2", "bundle format other than 1", "malformed", bundle(m, f, fmt=2))
    v.bundle("header_length_0", "manifest length below 2", "malformed", bundle(m, f, length=0))
    v.bundle("header_length_1", "manifest length below 2", "malformed", bundle(m, f, length=1))
    v.bundle("header_length_16385", "manifest length above 16384", "malformed",
             bundle(m, f, length=16385))
    v.bundle("header_length_4294967295", "manifest length far above 16384", "malformed",
             bundle(m, f, length=0xFFFFFFFF))
    v.bundle("header_length_one_short",
             "a length one byte short: the signature covers the whole manifest, not a prefix",
             "bad_signature", bundle(m, f, length=len(m) - 1))
    v.bundle("header_length_one_long",
             "a length one byte long: the manifest swallows a file byte; the signature fails",
             "bad_signature", bundle(m, f, length=len(m) + 1))


def key_vectors(v: Vectors) -> None:
    m, f = manifest(signer=U)
    v.signed("key_unknown", "signer not among the trusted keys", "unknown_key", m, f, signer=U)
    m, f = manifest(signer=R)
    v.signed("key_revoked", "signer revoked (and not trusted)", "revoked_key", m, f, signer=R)
    v.signed("key_revoked_and_trusted", "revoked wins over trusted", "revoked_key", m, f,
             signer=R, trust=(A, B, R))
    v.bundle("key_revoked_before_signature", "a revoked key is refused before its signature "
             "is looked at", "revoked_key", bundle(m, f, R, signature=bytes(64)))
    m, f = manifest(signer=U)
    bad = edit(m, b'"format":1', b'"format":1.0')
    v.signed("key_unknown_before_grammar", "the signer is judged before the grammar",
             "unknown_key", bad, f, signer=U)
    m, f = manifest()
    v.bundle("key_id_names_another_trusted_key",
             "header names trusted key B, A signed: the signature fails under B",
             "bad_signature", bundle(m, f, A, header_kid=B.kid_raw))
    sig = bytearray(A.sign(MANIFEST_TAG, m))
    sig[10] ^= 0x01
    v.bundle("sig_bit_flipped", "one bit of the signature changed", "bad_signature",
             bundle(m, f, signature=bytes(sig)))
    v.bundle("sig_zero", "an all-zero signature", "bad_signature",
             bundle(m, f, signature=bytes(64)))
    changed = edit(m, b'"sequence":12', b'"sequence":13')
    v.bundle("sig_manifest_changed_after_signing", "sequence raised after signing",
             "bad_signature", bundle(changed, f, signature=A.sign(MANIFEST_TAG, m)))
    v.bundle("sig_wrong_tag", "signed as a rotation statement (LLv1-rotation), not a manifest",
             "bad_signature", bundle(m, f, signature=A.sign(ROTATION_TAG, m)))
    v.bundle("sig_untagged", "signed over the manifest bytes themselves, not tag + SHA-256",
             "bad_signature", bundle(m, f, signature=A.private.sign(m)))
    v.bundle("sig_hash_without_tag", "signed over SHA-256 of the manifest without the tag",
             "bad_signature", bundle(m, f, signature=A.private.sign(hashlib.sha256(m).digest())))
    good = A.sign(MANIFEST_TAG, m)
    s = int.from_bytes(good[32:], "little") + ED25519_L
    v.bundle("sig_s_not_reduced", "S + L in place of S (malleated signature): S must be < L",
             "bad_signature", bundle(m, f, signature=good[:32] + s.to_bytes(32, "little")))
    bad = edit(m, b'"format":1', b'"format":1.0')
    v.bundle("sig_before_grammar", "a malformed manifest under a bad signature is a bad "
             "signature: the signature is checked first", "bad_signature",
             bundle(bad, f, signature=A.sign(MANIFEST_TAG, m)))


def grammar_vectors(v: Vectors) -> None:
    m, f = manifest()

    def text(name: str, shows: str, old: bytes, new: bytes, files: bytes = f) -> None:
        v.signed(name, shows, "malformed", edit(m, old, new), files)

    def doc(name: str, shows: str, contents: list[tuple[str, bytes]] | None = None,
            **changes: Any) -> None:
        v.signed(name, shows, "malformed", *manifest(contents, **changes))

    # the byte form
    text("grammar_whitespace", "a space after a colon", b'"kind":"app"', b'"kind": "app"')
    text("grammar_whitespace_newline", "a newline between members", b',"kind"', b',\n"kind"')
    v.signed("grammar_trailing_newline", "a newline after the closing brace", "malformed",
             m + b"\n", f)
    v.signed("grammar_bytes_after_document", "a byte after the closing brace", "malformed",
             m + b"x", f)
    reordered = json.dumps(dict(reversed(json.loads(m).items())),
                           separators=(",", ":")).encode()
    v.signed("grammar_reordered_keys", "top-level keys not in sorted order", "malformed",
             reordered, f)
    boot = entry("boot.py", body("boot.py"))
    text("grammar_reordered_file_keys", "a file's keys not in sorted order", canon(boot),
         json.dumps(dict(reversed(boot.items())), separators=(",", ":")).encode())
    text("grammar_duplicate_key", "a key given twice, same value", b'"sequence":12',
         b'"sequence":12,"sequence":12')
    text("grammar_duplicate_key_other_value", "a key given twice: a parser keeping the last "
         "would see sequence 99", b'"sequence":12', b'"sequence":12,"sequence":99')
    text("grammar_escaped_char", "an escape (\\u0061 for 'a') in a string", b'"kind":"app"',
         b'"kind":"\\u0061pp"')
    text("grammar_escaped_slash", "the escape \\/ in a path", b'"path":"lib/greet.mpy"',
         b'"path":"lib\\/greet.mpy"')
    text("grammar_control_char", "a tab inside a string", b'"version":"1.4.0"',
         b'"version":"1.4.0\t"')
    text("grammar_del_char", "byte 0x7f inside a string", b'"version":"1.4.0"',
         b'"version":"1.4.0\x7f"')
    text("grammar_non_ascii_byte", "UTF-8 bytes in a path", b'"path":"main.py"',
         "\"path\":\"ma\u00efn.py\"".encode())
    text("grammar_non_ascii_escaped", "a non-ASCII character written as an escape",
         b'"path":"main.py"', b'"path":"ma\\u00efn.py"')
    v.signed("grammar_top_level_array", "the manifest is not an object", "malformed",
             b"[" + m + b"]", f)
    # integers
    text("grammar_format_float", '"format":1.0', b'"format":1', b'"format":1.0')
    text("grammar_format_exponent", '"format":1e0', b'"format":1', b'"format":1e0')
    text("grammar_format_2", "format other than 1", b'"format":1', b'"format":2')
    text("grammar_format_string", 'format as a string "1"', b'"format":1', b'"format":"1"')
    text("grammar_format_true", '"format":true', b'"format":1', b'"format":true')
    text("grammar_sequence_true", "true where an integer belongs", b'"sequence":12',
         b'"sequence":true')
    text("grammar_sequence_float", "12.0 where an integer belongs", b'"sequence":12',
         b'"sequence":12.0')
    text("grammar_sequence_exponent", "1.2e1 where an integer belongs", b'"sequence":12',
         b'"sequence":1.2e1')
    text("grammar_sequence_leading_zero", "012: a leading zero", b'"sequence":12',
         b'"sequence":012')
    text("grammar_sequence_negative", "-12: a sign", b'"sequence":12', b'"sequence":-12')
    text("grammar_sequence_negative_zero", "-0: a sign", b'"sequence":12', b'"sequence":-0')
    text("grammar_sequence_plus", "+12: a sign", b'"sequence":12', b'"sequence":+12')
    text("grammar_sequence_nan", "NaN", b'"sequence":12', b'"sequence":NaN')
    text("grammar_sequence_string", 'sequence as a string "12"', b'"sequence":12',
         b'"sequence":"12"')
    doc("grammar_sequence_too_big", "sequence 2147483648", sequence=2147483648)
    doc("grammar_created_too_big", "created 4294967296", created=4294967296,
        expires=4294967297)
    doc("grammar_expires_too_big", "expires 4294967296", expires=4294967296)
    doc("grammar_expires_equal_created", "expires must be after created", expires=CREATED)
    doc("grammar_expires_before_created", "expires must be after created",
        expires=CREATED - 1)
    # keys
    doc("grammar_unknown_field", "an unknown top-level field", notes="hi")
    doc("grammar_missing_created", "a required field missing", created=DELETE)
    doc("grammar_missing_key_id", "a required field missing", key_id=DELETE)
    doc("grammar_missing_files", "a required field missing", files=DELETE, total_size=0)
    files = [entry(p, d) for p, d in BASE_FILES]
    files[1]["mode"] = 420
    doc("grammar_unknown_file_field", "an unknown key in a file entry", files=files)
    files = [entry(p, d) for p, d in BASE_FILES]
    del files[1]["sha256"]
    doc("grammar_missing_file_field", "a file entry without sha256", files=files)
    # names, versions, kinds
    doc("grammar_board_empty", "board lists 1..8 names", board=[])
    doc("grammar_board_9_names", "board lists 1..8 names", board=[f"b{i}" for i in range(9)])
    doc("grammar_board_33_chars", "a board name of 33 characters", board=["b" * 33])
    doc("grammar_board_uppercase", "board names are lower case", board=["Emulated"])
    doc("grammar_board_dot_leading", "a board name starting with '.'", board=[".emulated"])
    doc("grammar_board_not_a_list", "board is a list", board="esp32_devkitc")
    doc("grammar_board_empty_name", "an empty board name", board=[""])
    doc("grammar_hardware_empty", "hardware, when present, lists 1..8 names", hardware=[])
    doc("grammar_hardware_null", "hardware is a list or absent, never null", hardware=None)
    doc("grammar_hardware_9_names", "hardware lists 1..8 names",
        hardware=[f"h{i}" for i in range(9)])
    doc("grammar_hardware_bad_char", "a hardware name with '+'", hardware=["rev+b"])
    doc("grammar_hardware_dash_leading", "a hardware name starting with '-'", hardware=["-b"])
    doc("grammar_version_not_semver", "version 1.4", version="1.4")
    doc("grammar_version_v_prefix", "version v1.4.0", version="v1.4.0")
    doc("grammar_version_leading_zero", "version 1.04.0", version="1.04.0")
    doc("grammar_version_empty_identifier", "version 1.4.0-rc..1", version="1.4.0-rc..1")
    doc("grammar_version_empty_build", "version 1.4.0+", version="1.4.0+")
    doc("grammar_version_bad_identifier_char", "version 1.4.0-rc_1", version="1.4.0-rc_1")
    doc("grammar_version_33_chars", "a version of 33 characters",
        version="10.20.30-alpha.beta-" + "x" * 13)
    doc("grammar_version_empty", "an empty version", version="")
    doc("grammar_kind_unknown", "kind is app or firmware", kind="script")
    fw = [("firmware.bin", body("firmware.bin")), ("main.py", body("main.py"))]
    doc("grammar_firmware_two_files", "a firmware release has exactly one file", fw,
        kind="firmware")
    doc("grammar_firmware_wrong_name", "a firmware release's one file is firmware.bin",
        [("image.bin", body("image.bin"))], kind="firmware")
    # key_id
    doc("grammar_key_id_uppercase", "key_id is lowercase hex", key_id=A.kid.upper())
    doc("grammar_key_id_short", "key_id is 16 hex digits", key_id=A.kid[:15])
    doc("grammar_key_id_empty", "key_id is 16 hex digits (a staged manifest's empty key_id "
        "never travels)", key_id="")
    m_b, f_b = manifest(signer=B)
    v.signed("grammar_key_id_not_the_signer",
             "manifest key_id names trusted key B, A signed it: malformed", "malformed",
             m_b, f_b, signer=A)
    # files
    doc("grammar_files_empty", "a release has at least one file", files=[], total_size=0)

    def path(name: str, shows: str, bad: str) -> None:
        doc(name, shows, [(bad, body(bad)), ("main.py", body("main.py"))] if bad < "main.py"
            else [("boot.py", body("boot.py")), (bad, body(bad))])

    path("grammar_path_dot_leading", "a path part starting with '.'", ".env")
    path("grammar_path_inner_dot_leading", "a path part starting with '.'", "lib/.cache")
    path("grammar_path_dash_leading", "a path part starting with '-'", "-x.py")
    path("grammar_path_space_leading", "a path part starting with a space", "lib/ x.py")
    path("grammar_path_space_inside", "a space inside a path", "my app.py")
    path("grammar_path_dotdot", "'..' as a part", "lib/../main.py")
    path("grammar_path_dot_part", "'.' as a part", "lib/./a.py")
    path("grammar_path_leading_slash", "an absolute path", "/main.py")
    path("grammar_path_empty_part", "an empty part ('//')", "lib//a.py")
    path("grammar_path_trailing_slash", "an empty last part", "lib/")
    path("grammar_path_empty", "an empty path", "")
    path("grammar_path_backslash", "a backslash (escaped in JSON)", "lib\\a.py")
    path("grammar_path_quote", "a double quote (escaped in JSON)", 'lib"a.py')
    path("grammar_path_colon", "a character outside [A-Za-z0-9_.-]", "lib:a.py")
    long_path = "lib/" + "d" * 40 + "/" + "f" * 49 + ".py"
    assert len(long_path) == 97
    path("grammar_path_97_chars", "a path of 97 characters", long_path)
    doc("grammar_path_reserved", "app_version.json at the top is the installer's",
        [("app_version.json", b"{}"), ("main.py", body("main.py"))])
    doc("grammar_duplicate_path", "a path listed twice",
        [("boot.py", body("boot.py")), ("main.py", body("main.py")),
         ("main.py", body("main.py"))])
    doc("grammar_wrong_order", "files not in increasing path order",
        [("main.py", body("main.py")), ("boot.py", body("boot.py"))])
    doc("grammar_wrong_order_plain_string_sort",
        "sorted as plain strings ('-' before '/'), not with '/' first",
        [("lib-x.txt", body("lib-x.txt")), ("lib/a.py", body("lib/a.py"))])
    doc("grammar_dir_file_conflict", "lib is a file and a directory",
        [("lib", body("lib")), ("lib/x.py", body("lib/x.py"))])
    doc("grammar_dir_file_conflict_deep", "lib/a is a file and a directory of lib/a/b/c.py",
        [("lib/a", body("lib/a")), ("lib/a/b/c.py", body("lib/a/b/c.py"))])
    # sizes and hashes
    files = [entry(p, d) for p, d in BASE_FILES]
    files[0]["sha256"] = files[0]["sha256"].upper()
    doc("grammar_sha256_uppercase", "sha256 is lowercase hex", files=files)
    files = [entry(p, d) for p, d in BASE_FILES]
    files[0]["sha256"] = files[0]["sha256"][:63]
    doc("grammar_sha256_short", "sha256 is 64 hex digits", files=files)
    files = [entry(p, d) for p, d in BASE_FILES]
    total = sum(fe["size"] for fe in files)
    doc("grammar_total_size_mismatch", "total_size is the sum of the sizes",
        total_size=total + 1)
    files = [entry("big.bin", b""), entry("main.py", body("main.py"))]
    files[0]["size"] = 16777217
    v.signed("grammar_file_size_too_big", "a file of 16777217 bytes (the bundle stops after "
             "the manifest: the grammar refuses before any file byte)", "malformed",
             manifest(files=files, total_size=16777217 + files[1]["size"])[0], b"")
    files = [entry("a.bin", b""), entry("b.bin", b"")]
    files[0]["size"] = files[1]["size"] = 8388609
    v.signed("grammar_total_size_too_big", "files of 8388609 bytes each: total_size 16777218 "
             "is above 16777216", "malformed",
             manifest(files=files, total_size=16777218)[0], b"")
    v.signed("grammar_key_id_not_the_signer_and_expired",
             "the key_id check comes before the node's policy", "malformed",
             *manifest(key_id=B.kid), now=EXPIRES + 1)


def policy_vectors(v: Vectors) -> None:
    m, f = manifest()
    v.signed("policy_clock_unset", "the node's clock reads before 2024-01-01", "clock_unset",
             m, f, now=MIN_VALID_CLOCK - 1)
    v.signed("policy_clock_zero", "a clock that was never set", "clock_unset", m, f, now=0)
    old, old_files = manifest(created=1600000000, expires=1700000000)
    v.signed("policy_clock_unset_before_expired", "clock_unset comes before expired",
             "clock_unset", old, old_files, now=MIN_VALID_CLOCK - 1)
    v.signed("policy_expired_at_expiry", "now = expires is expired", "expired", m, f,
             now=EXPIRES)
    v.signed("policy_expired", "long after expiry", "expired", m, f, now=EXPIRES + 86400)
    v.signed("policy_expired_before_rollback", "expired comes before rollback", "expired", m, f,
             now=EXPIRES, installed_sequence=SEQUENCE)
    v.signed("policy_rollback_same_sequence", "the sequence the node runs already", "rollback",
             m, f, installed_sequence=SEQUENCE)
    v.signed("policy_rollback_lower_sequence", "an older sequence", "rollback", m, f,
             installed_sequence=SEQUENCE + 5)
    v.signed("policy_rollback_before_wrong_board", "rollback comes before wrong_board",
             "rollback", m, f, installed_sequence=SEQUENCE, board="other")
    v.signed("policy_wrong_board", "the node's board is not listed", "wrong_board", m, f,
             board="esp32s3_box")
    v.signed("policy_wrong_board_prefix", "board names match whole: esp32 is not "
             "esp32_devkitc", "wrong_board", m, f, board="esp32")
    hw, hw_files = manifest(hardware=["rev-a"])
    v.signed("policy_wrong_board_before_wrong_hardware",
             "wrong_board comes before wrong_hardware", "wrong_board", hw, hw_files,
             board="other", hardware="rev-c")
    v.signed("policy_wrong_hardware", "hardware listed, the node's is not among it",
             "wrong_hardware", hw, hw_files, hardware="rev-c")
    v.signed("policy_wrong_hardware_case", "hardware names match exactly (rev-a is not REV-A)",
             "wrong_hardware", hw, hw_files, hardware="REV-A")
    v.signed("policy_wrong_hardware_node_unknown",
             "hardware listed and a node that does not know its hardware: not among it",
             "wrong_hardware", hw, hw_files, hardware=None)
    data = bytearray(bundle(m, f))
    data[-1] ^= 0x01
    v.bundle("policy_before_files", "an expired release whose file is also bad: the policy "
             "is judged before any file byte", "expired", bytes(data), now=EXPIRES)


def stream_vectors(v: Vectors) -> None:
    m, f = manifest()
    good = bundle(m, f)
    files_at = 86 + len(m)
    sizes = [len(d) for _, d in BASE_FILES]

    def flip(at: int) -> bytes:
        data = bytearray(good)
        data[at] ^= 0x01
        return bytes(data)

    v.bundle("stream_bad_hash_middle_file", "one byte of the second file changed",
             "bad_file_hash", flip(files_at + sizes[0] + 3))
    v.bundle("stream_bad_hash_last_byte", "the bundle's last byte changed", "bad_file_hash",
             flip(len(good) - 1))
    files = [("a.py", b""), ("main.py", body("main.py"))]
    em, ef = manifest(files)
    em = edit(em, hashlib.sha256(b"").hexdigest().encode(), b"0" * 64)
    v.signed("stream_bad_hash_empty_file", "an empty file still has its hash checked",
             "bad_file_hash", em, ef)
    v.bundle("stream_truncated_last_byte", "the last byte missing", "file_truncated",
             good[:-1])
    v.bundle("stream_truncated_inside_first_file", "ends inside the first file",
             "file_truncated", good[:files_at + 5])
    v.bundle("stream_truncated_after_manifest", "ends right after the manifest",
             "file_truncated", good[:files_at])
    v.bundle("stream_truncated_inside_manifest", "ends inside the manifest", "file_truncated",
             good[:files_at - 10])
    v.bundle("stream_truncated_inside_header", "ends inside the 86-byte header",
             "file_truncated", good[:40])
    v.bundle("stream_empty", "no bytes at all", "file_truncated", b"")
    v.bundle("stream_garbage_shorter_than_header",
             "19 bytes that are not a bundle: the header is judged once all 86 bytes are in, "
             "so a shorter stream is truncated", "file_truncated", b"not a bundle at all")
    v.bundle("stream_trailing_byte", "one byte past the last file", "file_too_long",
             good + b"\x00")
    v.bundle("stream_two_bundles", "a second bundle after the first", "file_too_long",
             good + good)
    om, of = manifest([("a.py", b""), ("b.py", b"")])
    v.bundle("stream_trailing_byte_after_empty_files",
             "total_size 0: any byte after the manifest is too long", "file_too_long",
             bundle(om, of) + b"x")
    other = [(p, d[:-1] + bytes([d[-1] ^ 0xFF])) if p == "lib/greet.mpy" else (p, d)
             for p, d in BASE_FILES]
    _, other_files = manifest(other, sequence=13)
    v.bundle("stream_mixed_releases", "this release's header and manifest, another release's "
             "files (same sizes)", "bad_file_hash", bundle(m, other_files))
    longer = [(p, d + b"# v2\n") for p, d in BASE_FILES]
    _, longer_files = manifest(longer, sequence=13)
    v.bundle("stream_mixed_releases_longer_files",
             "another release's longer files: the bytes shift and a file fails its hash",
             "bad_file_hash", bundle(m, longer_files))
    swapped = f[sizes[0]:sizes[0] + sizes[1]] + f[:sizes[0]] + f[sizes[0] + sizes[1]:]
    v.bundle("stream_files_out_of_order", "the right files in another order",
             "bad_file_hash", bundle(m, swapped))
    v.bundle("stream_bad_hash_before_truncation",
             "the first file is wrong and the bundle also ends early: the hash fails first",
             "bad_file_hash", flip(files_at)[:-3])


# -- key statements --------------------------------------------------------------------------


def keyset(trust: tuple[Key, ...] = (A, B), revoked: tuple[Key, ...] = (R,), serial: int = 0,
           serial_name: str = "serial") -> dict[str, Any]:
    return {"keys": dict(sorted(trusted(*trust).items())),
            "revoked": sorted(k.kid for k in revoked), serial_name: serial}


def rotation_doc(old: Key, new: Key, serial: int, retire_old: bool = True) -> dict[str, Any]:
    return {"created": CREATED, "format": 1, "new_key_id": new.kid,
            "new_public_key": new.public.hex(), "old_key_id": old.kid,
            "retire_old": retire_old, "serial": serial, "type": "rotation"}


def revocation_doc(ids: list[str], serial: int) -> dict[str, Any]:
    return {"created": CREATED, "format": 1, "revoked": ids, "serial": serial,
            "type": "revocation"}


def envelope(statement: bytes | str, signer: Key, tag: bytes | None = None,
             signature: bytes | None = None) -> str:
    text = statement.decode("ascii") if isinstance(statement, bytes) else statement
    if tag is None:
        tag = ROTATION_TAG if text.endswith('"type":"rotation"}') else REVOCATION_TAG
    if signature is None:
        signature = signer.sign(tag, text.encode("utf-8"))
    return canon({"key_id": signer.kid, "signature": signature.hex(),
                  "statement": text}).decode("ascii")


def after(keys: dict[str, Any], *, add: tuple[Key, ...] = (), revoke: tuple[str, ...] = (),
          serial: int) -> dict[str, Any]:
    out = {"keys": dict(keys["keys"]), "revoked": sorted(set(keys["revoked"]) | set(revoke)),
           "serial": serial}
    out["keys"].update(trusted(*add))
    out["keys"] = dict(sorted(out["keys"].items()))
    return out


def statement_vectors(v: Vectors) -> None:
    k0 = keyset()
    rot = canon(rotation_doc(A, N, 1))
    v.statement("stmt_rotation", "A hands over to N and retires itself: N trusted, A revoked, "
                "serial 1", "ok", envelope(rot, A), k0,
                after(k0, add=(N,), revoke=(A.kid,), serial=1))
    keep = canon(rotation_doc(A, N, 1, retire_old=False))
    v.statement("stmt_rotation_keep_old", "retire_old false: both keys stay trusted", "ok",
                envelope(keep, A), k0, after(k0, add=(N,), serial=1))
    rev = canon(revocation_doc([B.kid], 1))
    v.statement("stmt_revocation", "A revokes B", "ok", envelope(rev, A), k0,
                after(k0, revoke=(B.kid,), serial=1))
    rev_self = canon(revocation_doc([A.kid], 1))
    v.statement("stmt_revocation_of_the_signer", "A revokes itself; B is left", "ok",
                envelope(rev_self, A), k0, after(k0, revoke=(A.kid,), serial=1))
    rev_unknown = canon(revocation_doc([U.kid], 1))
    v.statement("stmt_revocation_of_an_unknown_key", "an id the node never trusted is revoked "
                "too (it can never be trusted later)", "ok", envelope(rev_unknown, A), k0,
                after(k0, revoke=(U.kid,), serial=1))
    ids16 = sorted(k.kid for k in EXTRA[:16])
    v.statement("stmt_revocation_16_ids", "a revocation of 16 ids, the most", "ok",
                envelope(canon(revocation_doc(ids16, 1)), A), k0,
                after(k0, revoke=tuple(ids16), serial=1))
    k3 = keyset(serial=3)
    v.statement("stmt_next_in_chain", "a key set at serial 3 takes statement 4", "ok",
                envelope(canon(rotation_doc(A, N, 4)), A), k3,
                after(k3, add=(N,), revoke=(A.kid,), serial=4))
    k_old = keyset(serial=2, serial_name="revocation_serial")
    v.statement("stmt_keys_file_with_revocation_serial", "an older /keys.json says "
                "revocation_serial: read as serial", "ok",
                envelope(canon(revocation_doc([B.kid], 3)), A), k_old,
                after({**k_old, "serial": 2}, revoke=(B.kid,), serial=3))
    # the chain
    k1 = keyset(serial=1)
    v.statement("stmt_replayed_same_serial", "statement 1 on a key set at 1", "replayed",
                envelope(rev, A), k1)
    v.statement("stmt_replayed_lower_serial", "statement 1 on a key set at 5", "replayed",
                envelope(rev, A), keyset(serial=5))
    v.statement("stmt_serial_zero", "statement 0 on a new key set (serial 0)", "replayed",
                envelope(canon(revocation_doc([B.kid], 0)), A), k0)
    v.statement("stmt_out_of_order", "statement 2 on a key set at 0", "out_of_order",
                envelope(canon(revocation_doc([B.kid], 2)), A), k0)
    # signer and signature
    v.statement("stmt_unknown_signer", "signed by a key the node does not trust",
                "unknown_key", envelope(canon(revocation_doc([B.kid], 1)), U), k0)
    v.statement("stmt_revoked_signer", "signed by a revoked key", "revoked_key",
                envelope(canon(rotation_doc(R, N, 1)), R), k0)
    sig = bytearray(A.sign(REVOCATION_TAG, rev))
    sig[0] ^= 0x01
    v.statement("stmt_bad_signature", "one bit of the signature changed", "bad_signature",
                envelope(rev, A, signature=bytes(sig)), k0)
    v.statement("stmt_wrong_tag", "a rotation signed with the revocation tag",
                "bad_signature", envelope(rot, A, tag=REVOCATION_TAG), k0)
    v.statement("stmt_manifest_tag", "a revocation signed with the manifest tag",
                "bad_signature", envelope(rev, A, tag=MANIFEST_TAG), k0)
    v.statement("stmt_signature_of_another_statement", "the signature of statement 1 on "
                "statement 1 naming another key", "bad_signature",
                envelope(canon(revocation_doc([U.kid], 1)), A,
                         signature=A.sign(REVOCATION_TAG, rev)), k0)
    # rotation and revocation rules
    v.statement("stmt_rotation_not_by_old_key", "B signs a rotation whose old key is A",
                "malformed", envelope(rot, B), k0)
    bad_id = rotation_doc(A, N, 1)
    bad_id["new_key_id"] = U.kid
    v.statement("stmt_rotation_key_id_mismatch", "new_key_id is not the new key's id",
                "malformed", envelope(canon(bad_id), A), k0)
    v.statement("stmt_rotation_to_a_trusted_key", "the new key is trusted already",
                "replayed", envelope(canon(rotation_doc(A, B, 1)), A), k0)
    v.statement("stmt_rotation_to_a_revoked_key", "the new key was revoked", "replayed",
                envelope(canon(rotation_doc(A, R, 1)), A), k0)
    v.statement("stmt_revocation_no_key_left", "A revokes A and B: no trusted key would "
                "remain", "no_key_left",
                envelope(canon(revocation_doc(sorted([A.kid, B.kid]), 1)), A), k0)
    # the document's grammar
    ids = sorted([B.kid, U.kid])

    def bad(name: str, shows: str, statement: bytes, tag: bytes = REVOCATION_TAG) -> None:
        v.statement(name, shows, "malformed", envelope(statement, A, tag=tag), k0)

    bad("stmt_revocation_unsorted", "revoked ids not sorted",
        canon(revocation_doc(list(reversed(ids)), 1)))
    bad("stmt_revocation_duplicate_id", "an id listed twice",
        canon(revocation_doc([B.kid, B.kid], 1)))
    bad("stmt_revocation_empty", "revoked lists 1..16 ids", canon(revocation_doc([], 1)))
    bad("stmt_revocation_17_ids", "revoked lists 1..16 ids",
        canon(revocation_doc(sorted(k.kid for k in EXTRA), 1)))
    bad("stmt_revocation_uppercase_id", "key ids are lowercase hex",
        canon(revocation_doc([B.kid.upper()], 1)))
    bad("stmt_unknown_field", "an unknown key in the document",
        canon({**revocation_doc([B.kid], 1), "reason": "lost"}))
    doc = revocation_doc([B.kid], 1)
    del doc["created"]
    bad("stmt_missing_field", "created missing", canon(doc))
    bad("stmt_whitespace", "a space after a colon",
        edit(rev, b'"serial":1', b'"serial": 1'))
    bad("stmt_reordered_keys", "keys not sorted (type still last)",
        edit(rev, b'{"created":' + str(CREATED).encode() + b',"format":1,',
             b'{"format":1,"created":' + str(CREATED).encode() + b','))
    bad("stmt_serial_float", "serial 1.0", edit(rev, b'"serial":1', b'"serial":1.0'))
    bad("stmt_format_2", "format 2", edit(rev, b'"format":1', b'"format":2'))
    bad("stmt_duplicate_key", "serial given twice",
        edit(rev, b'"serial":1', b'"serial":1,"serial":1'))
    bad("stmt_escaped_char", "an escape inside a key id",
        edit(rev, B.kid.encode(), b"\\u00" + hex(ord(B.kid[0]))[2:].encode()
             + B.kid[1:].encode()))
    bad("stmt_retire_old_integer", "retire_old 1 instead of true",
        edit(rot, b'"retire_old":true', b'"retire_old":1'), tag=ROTATION_TAG)
    bad("stmt_unknown_type", "a type that is neither rotation nor revocation",
        edit(rev, b'"type":"revocation"', b'"type":"promotion"'))
    # the envelope
    good_env = json.loads(envelope(rev, A))
    v.statement("stmt_envelope_not_json", "the envelope is not JSON", "malformed",
                "not json", k0)
    v.statement("stmt_envelope_extra_field", "the envelope has exactly key_id, signature, "
                "statement", "malformed", canon({**good_env, "note": "x"}).decode(), k0)
    v.statement("stmt_envelope_missing_signature", "the envelope has no signature",
                "malformed",
                canon({k: good_env[k] for k in ("key_id", "statement")}).decode(), k0)
    v.statement("stmt_envelope_short_signature", "a signature of 63 bytes", "malformed",
                canon({**good_env, "signature": good_env["signature"][:126]}).decode(), k0)
    v.statement("stmt_envelope_statement_not_a_string", "the statement is an object, not "
                "its canonical text", "malformed",
                canon({**good_env, "statement": json.loads(rev)}).decode(), k0)
    duplicated = envelope(rev, A).replace(
        '"key_id":', '"key_id":"' + U.kid + '","key_id":', 1)
    v.statement("stmt_envelope_duplicate_key", "the envelope is canonical JSON: a key given "
                "twice is malformed", "malformed", duplicated, k0)
    spaced = envelope(rev, A).replace('","signature":', '", "signature":', 1)
    v.statement("stmt_envelope_not_canonical", "the envelope is canonical JSON: a space "
                "between its fields is malformed", "malformed", spaced, k0)


def build_vectors() -> dict[str, str]:
    """{file name: file text} of every vector."""
    v = Vectors()
    ok_vectors(v)
    header_vectors(v)
    key_vectors(v)
    grammar_vectors(v)
    policy_vectors(v)
    stream_vectors(v)
    statement_vectors(v)
    return {f"{name}.json": json.dumps(vector, indent=1) + "\n"
            for name, vector in v.items.items()}


def main() -> int:
    OUT_DIR.mkdir(exist_ok=True)
    files = build_vectors()
    for stale in OUT_DIR.glob("*.json"):
        if stale.name not in files:
            stale.unlink()
    for name, text in files.items():
        (OUT_DIR / name).write_text(text)
    counts: dict[str, int] = {}
    for text in files.values():
        expect = json.loads(text)["expect"]
        counts[expect] = counts.get(expect, 0) + 1
    print(f"{len(files)} vectors in {OUT_DIR}: "
          + ", ".join(f"{k} {n}" for k, n in sorted(counts.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
