"""Manifests encode canonically, refuse malformed content, and verify only under trusted keys."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from ota.errors import (
    BadSignature,
    ExpiredManifest,
    MalformedManifest,
    RevokedKey,
    SignatureError,
    UnknownKey,
)
from ota.keys import KeyRing, generate_private_key, key_id, raw_public_key
from ota.manifest import FileEntry, Manifest, SignedManifest, sign_manifest, verify_manifest

NOW = 1_800_000_000


def make(**changes) -> Manifest:
    fields = dict(version="1.2.0", sequence=7, board=["emulated", "esp32_devkitc"],
                  created=NOW, expires=NOW + 3600,
                  files=[FileEntry("main.py", 10, "0" * 64), FileEntry("lib/a.mpy", 5, "1" * 64)])
    fields.update(changes)
    return Manifest.create(**fields)


def ring_of(*keys) -> KeyRing:
    ring = KeyRing()
    for k in keys:
        ring.add(raw_public_key(k))
    return ring


def test_canonical_bytes_are_sorted_compact_ascii():
    data = make().canonical()
    assert b" " not in data and b"\n" not in data
    decoded = json.loads(data)
    assert list(decoded) == sorted(decoded)
    assert data == json.dumps(decoded, sort_keys=True, separators=(",", ":")).encode()
    assert decoded["total_size"] == 15
    assert Manifest.from_canonical(data, signed=False) == make()


def test_a_signed_manifest_needs_its_key_id_a_staged_one_may_leave_it_empty():
    data = make().canonical()
    with pytest.raises(MalformedManifest, match="key_id"):
        Manifest.from_canonical(data)
    stamped = replace(make(), key_id="0123456789abcdef").canonical()
    assert Manifest.from_canonical(stamped).key_id == "0123456789abcdef"


def test_create_sorts_files_in_path_order_with_slash_before_every_other_character():
    files = [FileEntry(p, 1, "0" * 64)
             for p in ("main.py", "lib.txt", "lib-b.txt", "lib/z.py", "lib/a/b.py", "a.py")]
    manifest = make(files=files)
    assert [f.path for f in manifest.files] == [
        "a.py", "lib/a/b.py", "lib/z.py", "lib-b.txt", "lib.txt", "main.py"]
    # plain string order would put "lib-b.txt" before "lib/z.py" ('-' < '/'): refused
    plain = sorted(f.path for f in files)
    unsorted = replace(manifest, files=tuple(FileEntry(p, 1, "0" * 64) for p in plain))
    with pytest.raises(MalformedManifest, match="out of order"):
        unsorted.validate()


STAMPED = replace(make(), key_id="0123456789abcdef").canonical()


@pytest.mark.parametrize("data,match", [
    (json.dumps(json.loads(STAMPED), indent=1).encode(), "printable ASCII"),  # newline
    (json.dumps(json.loads(STAMPED), sort_keys=True).encode(), "canonical"),  # spaces
    (json.dumps(dict(reversed(json.loads(STAMPED).items())),
                separators=(",", ":")).encode(), "canonical"),  # keys in another order
    (STAMPED + b"\n", "printable ASCII"),
    (STAMPED.replace(b'"kind":"app"', b'"kind":"\\u0061pp"'), "escape"),
    (STAMPED.replace(b'"format":1', b'"format":1.0'), "canonical integer"),
    (STAMPED.replace(b'"format":1', b'"format":1e0'), "canonical integer"),
    (STAMPED.replace(b'"format":1', b'"format":true'), "format"),
    (STAMPED.replace(b'"sequence":7', b'"sequence":true'), "sequence"),
    (STAMPED.replace(b'"sequence":7', b'"sequence":NaN'), "NaN"),
    (STAMPED.replace(b'"sequence":7', b'"sequence":07'), "not JSON"),
    (STAMPED.replace(b'"sequence":7', b'"sequence":-0'), "canonical"),
    (STAMPED.replace(b'"sequence":7', b'"sequence":7,"sequence":7'), "twice"),
    (STAMPED.replace(b'"version":"1.2.0"', b'"version":"1.2.0\xc3\xa9"'), "printable ASCII"),
    (STAMPED.replace(b'"version":"1.2.0"', b'"version":"1.2.0\t"'), "printable ASCII"),
    (STAMPED.replace(b'"version":"1.2.0"', b'"version":"1.2.0\x7f"'), "printable ASCII"),
    (STAMPED + b"x", "not JSON"),
    (b"[]", "object"),
    (b'{"', "not JSON"),
    (b"{}" + b" " * 16383, "16385 bytes"),
    (b"1", "1 bytes"),
])
def test_any_other_byte_form_is_malformed(data, match):
    with pytest.raises(MalformedManifest, match=match):
        Manifest.from_canonical(data)


def _sized(n: int, path: str = "a.py") -> FileEntry:
    return FileEntry(path, n, "0" * 64)


def _names(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


@pytest.mark.parametrize("changes,match", [
    ({"version": "1.2"}, "semantic"),
    ({"version": "01.2.0"}, "semantic"),
    ({"version": "1.2.0-"}, "semantic"),
    ({"version": "1.2.0-rc..1"}, "semantic"),
    ({"version": "1.2.0+"}, "semantic"),
    ({"version": "1.2.0-r_c"}, "semantic"),
    ({"version": "1.2.0\n"}, "semantic"),
    ({"version": "1.2.0-" + "a" * 27}, "semantic"),  # 33 characters
    ({"sequence": -1}, "sequence"),
    ({"sequence": True}, "sequence"),
    ({"sequence": 1.0}, "sequence"),
    ({"sequence": 2**31}, "sequence"),
    ({"board": []}, "board"),
    ({"board": ["Bad Board"]}, "board"),
    ({"board": ["Emulated"]}, "board"),
    ({"board": [".hidden"]}, "board"),
    ({"board": ["-dash"]}, "board"),
    ({"board": ["b" * 33]}, "board"),
    ({"board": _names("b", 9)}, "board"),
    ({"board": [1]}, "board"),
    ({"hardware": []}, "hardware"),
    ({"hardware": ["rev b"]}, "hardware"),
    ({"hardware": ["h" * 33]}, "hardware"),
    ({"hardware": _names("h", 9)}, "hardware"),
    ({"created": -1}, "created"),
    ({"created": True}, "created"),
    ({"expires": 2**32}, "created and expires"),
    ({"expires": NOW}, "expires"),
    ({"expires": NOW - 1}, "expires"),
    ({"kind": "script"}, "kind"),
    ({"files": []}, "1..255 files"),
    ({"files": [_sized(0, f"f{i}") for i in range(256)]}, "1..255 files"),
    ({"files": [_sized(1, "../boot.py")]}, "relative path"),
    ({"files": [_sized(1, "lib/../boot.py")]}, "relative path"),
    ({"files": [_sized(1, "/boot.py")]}, "relative path"),
    ({"files": [_sized(1, "lib//a.py")]}, "relative path"),
    ({"files": [_sized(1, "lib/")]}, "relative path"),
    ({"files": [_sized(1, "")]}, "empty"),
    ({"files": [_sized(1, ".hidden")]}, "relative path"),
    ({"files": [_sized(1, "lib/.hidden")]}, "relative path"),
    ({"files": [_sized(1, "-x.py")]}, "relative path"),
    ({"files": [_sized(1, " x.py")]}, "relative path"),
    ({"files": [_sized(1, "a b.py")]}, "relative path"),
    ({"files": [_sized(1, "lib\\a.py")]}, "relative path"),
    ({"files": [_sized(1, 'a"b.py')]}, "relative path"),
    ({"files": [_sized(1, "caf\u00e9.py")]}, "relative path"),
    ({"files": [_sized(1, "a" * 97)]}, "too long"),
    ({"files": [_sized(1, "app_version.json")]}, "reserved"),
    ({"files": [FileEntry("a.py", 1, "0" * 63)]}, "sha256"),
    ({"files": [FileEntry("a.py", 1, "A" * 64)]}, "sha256"),
    ({"files": [_sized(-1)]}, "size"),
    ({"files": [_sized(True)]}, "size"),
    ({"files": [_sized(16777217)]}, "size"),
    ({"files": [_sized(16777216, "a.py"), _sized(1, "b.py")]}, "at most 16777216"),
    ({"files": [_sized(1, "a.py")] * 2}, "out of order or listed twice"),
    ({"files": [_sized(1, "lib"), _sized(1, "lib/x.py")]}, "also a directory"),
    ({"files": [_sized(1, "lib/a"), _sized(1, "lib/a/b/c.py")]}, "also a directory"),
    ({"kind": "firmware"}, "exactly one image"),
    ({"kind": "firmware", "files": [_sized(1, "image.bin")]}, "exactly one image"),
])
def test_malformed_manifests_are_refused(changes, match):
    with pytest.raises(MalformedManifest, match=match) as caught:
        make(**changes)
    assert caught.value.reason == "malformed"


@pytest.mark.parametrize("changes", [
    {"version": "1.2.0-rc.1+build.5"},
    {"version": "10.20.30-" + "a" * 23},  # 32 characters
    {"version": "1.0.0-01"},  # identifiers are [0-9A-Za-z-]; no further rule
    {"sequence": 0},
    {"sequence": 2**31 - 1},
    {"created": 0, "expires": 2**32 - 1},
    {"board": _names("b", 8)},
    {"board": ["b" * 32, "esp32_devkitc.v4-1"]},
    {"hardware": _names("H", 8)},
    {"hardware": ["Rev-B.2_x"]},
    {"files": [_sized(0, "a.py")]},
    {"files": [_sized(16777216, "a.py")]},
    {"files": [_sized(1, "a" * 96)]},
    {"files": [_sized(1, "lib/app_version.json")]},
    {"files": [_sized(1, "lib"), _sized(1, "lib.py"), _sized(1, "lib-x/a.py")]},
    {"files": [_sized(0, f"f{i:03}") for i in range(255)]},
    {"kind": "firmware", "files": [_sized(1, "firmware.bin")]},
])
def test_manifests_at_the_limits_are_accepted(changes):
    manifest = replace(make(**changes), key_id="0123456789abcdef")
    data = manifest.canonical()
    if len(data) <= 16384:
        assert Manifest.from_canonical(data) == manifest


def test_unknown_or_missing_fields_are_refused():
    data = make().to_json()
    with pytest.raises(MalformedManifest, match="unknown"):
        Manifest.from_json({**data, "extra": 1})
    with pytest.raises(MalformedManifest, match="exactly path, sha256 and size"):
        Manifest.from_json({**data, "files": [{**data["files"][0], "mode": 420}]})
    with pytest.raises(MalformedManifest, match="exactly path, sha256 and size"):
        Manifest.from_json({**data, "files": [{"path": "a.py", "size": 1}]})
    with pytest.raises(MalformedManifest, match="board and hardware"):
        Manifest.from_json({**data, "hardware": None})
    with pytest.raises(MalformedManifest, match="total_size"):
        Manifest.from_json({**make().to_json(), "total_size": 99})
    del data["expires"]
    with pytest.raises(MalformedManifest, match="missing"):
        Manifest.from_json(data)


def test_sign_then_verify_round_trip_stamps_the_key_id():
    key = generate_private_key()
    signed = sign_manifest(make(), key)
    envelope = signed.to_bytes()
    assert json.loads(envelope)["key_id"] == key_id(key)
    manifest = verify_manifest(envelope, ring_of(key), now=NOW + 10)
    assert manifest.key_id == key_id(key)
    assert manifest == replace(make(), key_id=key_id(key))


def test_any_change_to_the_signed_bytes_is_a_bad_signature():
    key = generate_private_key()
    signed = sign_manifest(make(), key)
    forged = signed.manifest_bytes.replace(b'"sequence":7', b'"sequence":8')
    with pytest.raises(BadSignature):
        verify_manifest(SignedManifest(forged, signed.key_id, signed.signature), ring_of(key))
    flipped = bytes([signed.signature[0] ^ 1]) + signed.signature[1:]
    with pytest.raises(BadSignature):
        verify_manifest(SignedManifest(signed.manifest_bytes, signed.key_id, flipped),
                        ring_of(key))


def test_untrusted_and_revoked_keys_are_refused_with_their_own_errors():
    key, other = generate_private_key(), generate_private_key()
    envelope = sign_manifest(make(), key).to_bytes()
    with pytest.raises(UnknownKey):
        verify_manifest(envelope, ring_of(other))
    ring = ring_of(key)
    ring.revoked.add(key_id(key))
    with pytest.raises(RevokedKey):
        verify_manifest(envelope, ring)
    assert issubclass(UnknownKey, SignatureError) and issubclass(RevokedKey, SignatureError)


def test_envelope_naming_a_trusted_key_but_signed_by_another_is_refused():
    key, other = generate_private_key(), generate_private_key()
    signed = sign_manifest(make(), other)
    lying = SignedManifest(signed.manifest_bytes, key_id(key), signed.signature)
    with pytest.raises(BadSignature):
        verify_manifest(lying, ring_of(key))


def test_expiry_is_enforced_when_a_time_is_given():
    key = generate_private_key()
    envelope = sign_manifest(make(), key).to_bytes()
    verify_manifest(envelope, ring_of(key), now=NOW + 3599)
    with pytest.raises(ExpiredManifest):
        verify_manifest(envelope, ring_of(key), now=NOW + 3600)


@pytest.mark.parametrize("envelope", [b"", b"[]", b'{"manifest": "x"}',
                                      b'{"key_id": "a", "manifest": "{}", "signature": "zz"}'])
def test_garbage_envelopes_are_malformed(envelope):
    with pytest.raises(MalformedManifest):
        SignedManifest.from_bytes(envelope)


def _signed_bytes(data: bytes, key) -> SignedManifest:
    from ota.signing import MANIFEST_TAG, sign_tagged

    return SignedManifest(data, key_id(key), sign_tagged(key, MANIFEST_TAG, data))


def test_checks_run_in_the_nodes_order():
    key, other = generate_private_key(), generate_private_key()
    good = sign_manifest(make(), key)
    # the key id's form first, then revoked before unknown, then the signature
    with pytest.raises(MalformedManifest, match="wrong form"):
        verify_manifest(SignedManifest(good.manifest_bytes, "ABCDEF0123456789", good.signature),
                        ring_of(key))
    with pytest.raises(MalformedManifest, match="wrong form"):
        verify_manifest(SignedManifest(good.manifest_bytes, good.key_id, good.signature[:63]),
                        ring_of(key))
    revoked_and_trusted = ring_of(key)
    revoked_and_trusted.revoked.add(key_id(key))
    with pytest.raises(RevokedKey):
        verify_manifest(good, revoked_and_trusted)
    revoked_only = ring_of(other)
    revoked_only.revoked.add(key_id(key))
    with pytest.raises(RevokedKey):
        verify_manifest(good, revoked_only)
    # malformed bytes under a bad signature are a bad signature: the grammar comes after it
    pretty = json.dumps(json.loads(good.manifest_bytes), indent=1).encode()
    with pytest.raises(BadSignature):
        verify_manifest(SignedManifest(pretty, good.key_id, good.signature), ring_of(key))
    with pytest.raises(MalformedManifest, match="canonical|ASCII"):
        verify_manifest(_signed_bytes(pretty, key), ring_of(key))


def test_manifest_key_id_must_name_the_signer():
    key, other = generate_private_key(), generate_private_key()
    claims_other = replace(make(), key_id=key_id(other)).canonical()
    with pytest.raises(MalformedManifest, match="signer"):
        verify_manifest(_signed_bytes(claims_other, key), ring_of(key, other))
    with pytest.raises(MalformedManifest, match="key_id"):
        verify_manifest(_signed_bytes(make().canonical(), key), ring_of(key))


def _upper_signature(envelope: bytes) -> bytes:
    signature = json.loads(envelope)["signature"]
    return envelope.replace(signature.encode(), signature.upper().encode())


@pytest.mark.parametrize("mutate", [
    lambda e: e.replace(b'{"key_id"', b'{"key_id":"0000000000000000","key_id"'),
    lambda e: e.replace(b'"signature":"', b'"signature":"ab'),
    lambda e: e[:-1] + b',"extra":1}',
    _upper_signature,
])
def test_envelopes_are_parsed_strictly(mutate):
    key = generate_private_key()
    envelope = sign_manifest(make(), key).to_bytes()
    assert verify_manifest(envelope, ring_of(key)).key_id == key_id(key)
    with pytest.raises(MalformedManifest):
        verify_manifest(mutate(envelope), ring_of(key))
