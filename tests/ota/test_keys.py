"""Release keys: ids, files, key rings, rotation by the old key and revocation lists."""

from __future__ import annotations

import hashlib
import json
import stat

import pytest

from ota.errors import BadSignature, KeyFileError, RevokedKey, StatementError, UnknownKey
from ota.keys import (
    KeyRing,
    apply_revocation,
    apply_rotation,
    generate_private_key,
    key_id,
    load_private_key,
    load_public_key,
    make_revocation,
    make_rotation,
    raw_public_key,
    save_private_key,
    save_public_key,
)
from ota.manifest import FileEntry, Manifest, sign_manifest, verify_manifest


def test_key_id_is_first_8_bytes_of_sha256_of_the_raw_key():
    key = generate_private_key()
    raw = raw_public_key(key)
    assert len(raw) == 32
    assert key_id(key) == key_id(raw) == hashlib.sha256(raw).digest()[:8].hex()
    assert len(key_id(key)) == 16


def test_private_key_file_round_trip_with_and_without_password(tmp_path):
    key = generate_private_key()
    save_private_key(key, tmp_path / "plain.pem")
    save_private_key(key, tmp_path / "locked.pem", password=b"s3cret")
    assert stat.S_IMODE((tmp_path / "locked.pem").stat().st_mode) == 0o600
    assert key_id(load_private_key(tmp_path / "plain.pem")) == key_id(key)
    assert key_id(load_private_key(tmp_path / "locked.pem", b"s3cret")) == key_id(key)
    with pytest.raises(KeyFileError, match="password"):
        load_private_key(tmp_path / "locked.pem", b"wrong")
    with pytest.raises(KeyFileError, match="encrypted"):
        load_private_key(tmp_path / "locked.pem")
    with pytest.raises(KeyFileError, match="cannot read"):
        load_private_key(tmp_path / "missing.pem")


def test_public_key_saves_and_loads_as_pem_raw_or_hex(tmp_path):
    key = generate_private_key()
    raw = raw_public_key(key)
    save_public_key(key, tmp_path / "k.pub")
    save_public_key(key, tmp_path / "k.raw", encoding="raw")
    save_public_key(key, tmp_path / "k.hex", encoding="hex")
    (tmp_path / "bad").write_text("hello")
    assert (tmp_path / "k.pub").read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    assert (tmp_path / "k.raw").read_bytes() == raw
    assert (tmp_path / "k.hex").read_text().strip() == raw.hex()
    for name in ("k.pub", "k.raw", "k.hex"):
        assert load_public_key(tmp_path / name) == raw
    with pytest.raises(KeyFileError):
        load_public_key(tmp_path / "bad")


def test_key_ring_json_round_trip_and_tampered_entry():
    ring = KeyRing()
    kid = ring.add(raw_public_key(generate_private_key()))
    ring.revoked.add("0" * 16)
    again = KeyRing.from_json(json.loads(json.dumps(ring.to_json())))
    assert again.keys == ring.keys and again.revoked == ring.revoked
    data = ring.to_json()
    data["keys"] = {kid: raw_public_key(generate_private_key()).hex()}
    with pytest.raises(KeyFileError):
        KeyRing.from_json(data)


def _manifest() -> Manifest:
    return Manifest.create(version="1.0.0", sequence=1, board=["emulated"], created=10,
                           expires=2**40, files=[FileEntry("main.py", 1, "0" * 64)])


def test_rotation_signed_by_the_old_key_moves_trust_to_the_new_key():
    old, new = generate_private_key(), generate_private_key()
    ring = KeyRing()
    ring.add(raw_public_key(old))
    assert apply_rotation(ring, make_rotation(old, raw_public_key(new))) == key_id(new)
    verify_manifest(sign_manifest(_manifest(), new).to_bytes(), ring)
    with pytest.raises(RevokedKey):
        verify_manifest(sign_manifest(_manifest(), old).to_bytes(), ring)


def test_rotation_can_keep_the_old_key():
    old, new = generate_private_key(), generate_private_key()
    ring = KeyRing()
    ring.add(raw_public_key(old))
    apply_rotation(ring, make_rotation(old, raw_public_key(new), retire_old=False))
    verify_manifest(sign_manifest(_manifest(), old).to_bytes(), ring)


def test_rotation_by_an_untrusted_key_or_tampered_is_refused():
    old, new, stranger = (generate_private_key() for _ in range(3))
    ring = KeyRing()
    ring.add(raw_public_key(old))
    with pytest.raises(UnknownKey):
        apply_rotation(ring, make_rotation(stranger, raw_public_key(new)))
    statement = make_rotation(old, raw_public_key(new))
    swapped = statement.replace(raw_public_key(new).hex().encode(),
                                raw_public_key(stranger).hex().encode())
    with pytest.raises(BadSignature):
        apply_rotation(ring, swapped)
    assert key_id(new) not in ring.keys and key_id(stranger) not in ring.keys


def test_revocation_list_revokes_and_cannot_be_replayed():
    signer, victim = generate_private_key(), generate_private_key()
    ring = KeyRing()
    ring.add(raw_public_key(signer))
    ring.add(raw_public_key(victim))
    listing = make_revocation(signer, [key_id(victim)], serial=1)
    assert apply_revocation(ring, listing) == [key_id(victim)]
    with pytest.raises(RevokedKey):
        verify_manifest(sign_manifest(_manifest(), victim).to_bytes(), ring)
    with pytest.raises(StatementError, match="serial"):
        apply_revocation(ring, listing)


def test_a_rotation_statement_is_not_accepted_as_a_revocation_list():
    old, new = generate_private_key(), generate_private_key()
    ring = KeyRing()
    ring.add(raw_public_key(old))
    with pytest.raises(BadSignature):
        apply_revocation(ring, make_rotation(old, raw_public_key(new)))
