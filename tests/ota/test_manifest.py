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
    assert Manifest.from_canonical(data) == make()


def test_non_canonical_encoding_of_the_same_manifest_is_refused():
    pretty = json.dumps(make().to_json(), indent=1).encode()
    with pytest.raises(MalformedManifest, match="canonical"):
        Manifest.from_canonical(pretty)


@pytest.mark.parametrize("changes,match", [
    ({"version": "1.2"}, "semantic"),
    ({"sequence": -1}, "sequence"),
    ({"sequence": True}, "sequence"),
    ({"board": []}, "board"),
    ({"board": ["Bad Board"]}, "board"),
    ({"expires": NOW}, "expires"),
    ({"kind": "script"}, "kind"),
    ({"files": []}, "at least one file"),
    ({"files": [FileEntry("../boot.py", 1, "0" * 64)]}, "relative path"),
    ({"files": [FileEntry("/boot.py", 1, "0" * 64)]}, "relative path"),
    ({"files": [FileEntry("a.py", 1, "0" * 63)]}, "sha256"),
    ({"files": [FileEntry("a.py", 1, "A" * 64)]}, "sha256"),
    ({"files": [FileEntry("a.py", 1, "0" * 64)] * 2}, "twice"),
    ({"kind": "firmware"}, "exactly one image"),
])
def test_malformed_manifests_are_refused(changes, match):
    with pytest.raises(MalformedManifest, match=match):
        make(**changes)


def test_unknown_or_missing_fields_are_refused():
    data = make().to_json()
    with pytest.raises(MalformedManifest, match="unknown"):
        Manifest.from_json({**data, "extra": 1})
    del data["expires"]
    with pytest.raises(MalformedManifest, match="missing"):
        Manifest.from_json(data)
    with pytest.raises(MalformedManifest, match="total_size"):
        Manifest.from_json({**make().to_json(), "total_size": 99})


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
