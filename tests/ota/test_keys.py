"""Release keys: ids, files, key rings, and the chain of rotation and revocation statements."""

from __future__ import annotations

import hashlib
import json
import stat

import pytest

from ota.errors import KeyFileError, RevokedKey, StatementError
from ota.keys import (
    KeyRing,
    apply_revocation,
    apply_rotation,
    apply_statement,
    canonical_envelope,
    canonical_json,
    generate_private_key,
    key_id,
    load_private_key,
    load_public_key,
    make_revocation,
    make_rotation,
    raw_public_key,
    save_private_key,
    save_public_key,
    statement_kind,
    statement_serial,
)
from ota.manifest import FileEntry, Manifest, sign_manifest, verify_manifest
from ota.signing import REVOCATION_TAG, ROTATION_TAG, sign_tagged


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
    ring = KeyRing(serial=3)
    kid = ring.add(raw_public_key(generate_private_key()))
    ring.revoked.add("0" * 16)
    data = json.loads(json.dumps(ring.to_json()))
    assert data["serial"] == 3 and "revocation_serial" not in data
    again = KeyRing.from_json(data)
    assert again.keys == ring.keys and again.revoked == ring.revoked and again.serial == 3
    data = ring.to_json()
    data["keys"] = {kid: raw_public_key(generate_private_key()).hex()}
    with pytest.raises(KeyFileError):
        KeyRing.from_json(data)


def test_key_ring_reads_the_older_revocation_serial_name():
    ring = KeyRing.from_json({"keys": {}, "revoked": [], "revocation_serial": 4})
    assert ring.serial == 4
    with pytest.raises(KeyFileError, match="serial"):
        KeyRing.from_json({"keys": {}, "revoked": [], "serial": True})


def _manifest() -> Manifest:
    return Manifest.create(version="1.0.0", sequence=1, board=["emulated"], created=10,
                           expires=4_000_000_000, files=[FileEntry("main.py", 1, "0" * 64)])


def ring_of(*keys, serial: int = 0) -> KeyRing:
    ring = KeyRing(serial=serial)
    for key in keys:
        ring.add(raw_public_key(key))
    return ring


def refused(reason: str, ring: KeyRing, envelope, apply=apply_statement) -> StatementError:
    """Apply `envelope`, expect the refusal `reason`, and check `ring` was left untouched."""
    before = (dict(ring.keys), set(ring.revoked), ring.serial)
    with pytest.raises(StatementError) as caught:
        apply(ring, envelope)
    assert caught.value.reason == reason, str(caught.value)
    assert (ring.keys, ring.revoked, ring.serial) == before
    return caught.value


def signed(signer, document: dict | str, tag: bytes = ROTATION_TAG) -> bytes:
    """An envelope around any document text, validly signed by `signer`."""
    text = document if isinstance(document, str) else canonical_json(document).decode()
    return canonical_json({"key_id": key_id(signer),
                           "signature": sign_tagged(signer, tag, text.encode()).hex(),
                           "statement": text})


def rotation_doc(old, new, serial: int = 1, **changes) -> dict:
    raw = raw_public_key(new)
    return {"created": 1_800_000_000, "format": 1, "new_key_id": key_id(raw),
            "new_public_key": raw.hex(), "old_key_id": key_id(old), "retire_old": True,
            "serial": serial, "type": "rotation", **changes}


def test_rotation_signed_by_the_old_key_moves_trust_to_the_new_key():
    old, new = generate_private_key(), generate_private_key()
    ring = ring_of(old)
    assert apply_rotation(ring, make_rotation(old, raw_public_key(new), serial=1)) == key_id(new)
    assert ring.serial == 1
    verify_manifest(sign_manifest(_manifest(), new).to_bytes(), ring)
    with pytest.raises(RevokedKey):
        verify_manifest(sign_manifest(_manifest(), old).to_bytes(), ring)


def test_rotation_can_keep_the_old_key():
    old, new = generate_private_key(), generate_private_key()
    ring = ring_of(old)
    apply_rotation(ring, make_rotation(old, raw_public_key(new), serial=1, retire_old=False))
    verify_manifest(sign_manifest(_manifest(), old).to_bytes(), ring)
    assert ring.usable() == sorted([key_id(old), key_id(new)])


def test_statements_are_canonical_envelopes_in_the_documented_shape():
    old, new = generate_private_key(), generate_private_key()
    envelope = make_rotation(old, raw_public_key(new), serial=7, created=1_800_000_000)
    outer = json.loads(envelope)
    assert list(outer) == ["key_id", "signature", "statement"]
    assert envelope == canonical_json(outer)
    assert json.loads(outer["statement"]) == rotation_doc(old, new, serial=7)
    assert statement_serial(envelope) == 7 and statement_kind(envelope) == "rotation"
    listing = make_revocation(old, ["b" * 16, "a" * 16], serial=8, created=5)
    assert outer_statement(listing) == ('{"created":5,"format":1,"revoked":["aaaaaaaaaaaaaaaa",'
                                        '"bbbbbbbbbbbbbbbb"],"serial":8,"type":"revocation"}')
    assert statement_kind(listing) == "revocation"
    pretty = json.dumps(json.loads(listing), indent=2)
    assert canonical_envelope(pretty) == listing.decode()


def outer_statement(envelope: bytes) -> str:
    return json.loads(envelope)["statement"]


def test_making_a_statement_refuses_what_no_node_would_apply():
    key = generate_private_key()
    with pytest.raises(ValueError, match="serial"):
        make_rotation(key, raw_public_key(generate_private_key()), serial=0)
    with pytest.raises(ValueError, match="1..16"):
        make_revocation(key, [], serial=1)
    with pytest.raises(ValueError, match="1..16"):
        make_revocation(key, [f"{i:016x}" for i in range(17)], serial=1)
    with pytest.raises(ValueError, match="not key ids"):
        make_revocation(key, ["ABCDEF0123456789"], serial=1)


def test_forged_statement_is_refused():
    old, new, stranger = (generate_private_key() for _ in range(3))
    ring = ring_of(old)
    refused("unknown_key", ring, make_rotation(stranger, raw_public_key(new), serial=1))
    statement = make_rotation(old, raw_public_key(new), serial=1)
    swapped = statement.replace(raw_public_key(new).hex().encode(),
                                raw_public_key(stranger).hex().encode())
    refused("bad_signature", ring, swapped)
    outer = json.loads(statement)
    outer["signature"] = outer["signature"][:-1] + ("0" if outer["signature"][-1] != "0" else "1")
    refused("bad_signature", ring, canonical_json(outer))
    # a stranger's signature with the trusted key's id on it
    outer = json.loads(statement)
    outer["signature"] = json.loads(make_rotation(stranger, raw_public_key(new),
                                                  serial=1))["signature"]
    refused("bad_signature", ring, canonical_json(outer))
    assert key_id(new) not in ring.keys and key_id(stranger) not in ring.keys


def test_statement_by_a_revoked_key_is_refused():
    old, new, other = (generate_private_key() for _ in range(3))
    ring = ring_of(old, other)
    ring.revoked.add(key_id(old))
    refused("revoked_key", ring, make_rotation(old, raw_public_key(new), serial=1))


def test_replayed_rotation_is_refused():
    old, new = generate_private_key(), generate_private_key()
    ring = ring_of(old)
    rotation = make_rotation(old, raw_public_key(new), serial=1, retire_old=False)
    apply_rotation(ring, rotation)
    refused("replayed", ring, rotation)
    # the same rotation signed again under the next serial: its key is known already
    refused("replayed", ring, make_rotation(old, raw_public_key(new), serial=2,
                                            retire_old=False))
    # and a rotation to the key that signs it
    refused("replayed", ring, make_rotation(old, raw_public_key(old), serial=2))


def test_replayed_revocation_is_refused():
    signer, victim = generate_private_key(), generate_private_key()
    ring = ring_of(signer, victim)
    listing = make_revocation(signer, [key_id(victim)], serial=1)
    assert apply_revocation(ring, listing) == [key_id(victim)]
    with pytest.raises(RevokedKey):
        verify_manifest(sign_manifest(_manifest(), victim).to_bytes(), ring)
    error = refused("replayed", ring, listing)
    assert "statement 1, key set at 1" in str(error)


def test_out_of_order_statement_is_refused():
    old, new = generate_private_key(), generate_private_key()
    ring = ring_of(old, serial=2)
    refused("out_of_order", ring, make_rotation(old, raw_public_key(new), serial=4))
    refused("replayed", ring, make_rotation(old, raw_public_key(new), serial=2))
    apply_rotation(ring, make_rotation(old, raw_public_key(new), serial=3))
    assert ring.serial == 3


def test_a_chain_of_statements_applies_in_serial_order_only():
    a, b, c = (generate_private_key() for _ in range(3))
    chain = [make_rotation(a, raw_public_key(b), serial=1, retire_old=False),
             make_rotation(b, raw_public_key(c), serial=2, retire_old=False),
             make_revocation(c, [key_id(a)], serial=3)]
    ring = ring_of(a)
    refused("out_of_order", ring, make_revocation(a, [key_id(c)], serial=2))
    for envelope in chain:
        apply_statement(ring, envelope)
    assert ring.serial == 3 and ring.usable() == sorted([key_id(b), key_id(c)])


def test_revocation_that_leaves_no_key_is_refused():
    only, other = generate_private_key(), generate_private_key()
    ring = ring_of(only, other)
    ring.revoked.add(key_id(other))
    refused("no_key_left", ring, make_revocation(only, [key_id(only)], serial=1))
    # revoking ids nobody knows yet is fine, and they stay refused when a rotation names them
    unknown = generate_private_key()
    assert apply_revocation(ring, make_revocation(only, [key_id(unknown)], serial=1))
    refused("replayed", ring, make_rotation(only, raw_public_key(unknown), serial=2))


def test_rotation_not_signed_by_its_old_key_is_refused():
    old, new, other = (generate_private_key() for _ in range(3))
    ring = ring_of(old, other)
    refused("malformed", ring, signed(other, rotation_doc(old, new)))
    wrong_id = rotation_doc(old, new, new_key_id="0" * 16)
    refused("malformed", ring, signed(old, wrong_id))


def test_a_rotation_statement_is_not_accepted_as_a_revocation():
    old, new = generate_private_key(), generate_private_key()
    ring = ring_of(old)
    refused("bad_signature", ring, make_rotation(old, raw_public_key(new), serial=1),
            apply=apply_revocation)
    # a revocation document signed with the rotation tag is not a rotation either
    revocation = {"created": 1, "format": 1, "revoked": ["0" * 16], "serial": 1,
                  "type": "revocation"}
    refused("malformed", ring, signed(old, revocation, ROTATION_TAG), apply=apply_rotation)
    refused("bad_signature", ring, signed(old, revocation, ROTATION_TAG))
    ok = signed(old, revocation, REVOCATION_TAG)
    assert apply_statement(ring, ok)[0] == "revocation"


@pytest.mark.parametrize("name, text", [
    ("format as a float", '{{"created":1,"format":1.0,{rest}'),
    ("format as true", '{{"created":1,"format":true,{rest}'),
    ("format 2", '{{"created":1,"format":2,{rest}'),
    ("whitespace", '{{"created":1, "format":1,{rest}'),
    ("a key twice", '{{"created":1,"created":1,"format":1,{rest}'),
    ("an unknown key", '{{"created":1,"extra":1,"format":1,{rest}'),
    ("created negative", '{{"created":-1,"format":1,{rest}'),
    ("created as a string", '{{"created":"1","format":1,{rest}'),
    ("an escape", '{{"created":1,"format":1,{rest_escaped}'),
    ("keys out of order", '{{"format":1,"created":1,{rest}'),
    ("a leading zero", '{{"created":01,"format":1,{rest}'),
])
def test_non_canonical_statement_is_malformed(name, text):
    old, new = generate_private_key(), generate_private_key()
    doc = rotation_doc(old, new)
    rest = canonical_json(doc).decode().split('"format":1,', 1)[1]
    rest_escaped = rest.replace('"type":"rotation"', '"type":"rot\\u0061tion"') \
        .replace('"old_key_id"', '"old_key\\u005fid"')
    text = text.format(rest=rest, rest_escaped=rest_escaped)
    refused("malformed", ring_of(old), signed(old, text))


@pytest.mark.parametrize("change", [
    {"retire_old": 1}, {"serial": True}, {"serial": 1.0}, {"new_public_key": "AB" * 32},
    {"new_key_id": 5}, {"serial": 2**31},
])
def test_rotation_with_a_field_of_the_wrong_type_is_malformed(change):
    old, new = generate_private_key(), generate_private_key()
    refused("malformed", ring_of(old), signed(old, rotation_doc(old, new, **change)))


@pytest.mark.parametrize("revoked", [[], ["b" * 16, "a" * 16], ["a" * 16, "a" * 16],
                                     [f"{i:016x}" for i in range(17)], ["A" * 16], "a" * 16])
def test_revocation_list_must_be_1_to_16_sorted_distinct_key_ids(revoked):
    key = generate_private_key()
    doc = {"created": 1, "format": 1, "revoked": revoked, "serial": 1, "type": "revocation"}
    refused("malformed", ring_of(key), signed(key, doc, REVOCATION_TAG))


@pytest.mark.parametrize("envelope", [
    b"not json", b"[]", b'{"key_id":"0000000000000000"}',
    b'{"key_id":"0000000000000000","signature":"' + b"0" * 128 + b'","statement":1}',
    b'{"key_id":"00000000000000","signature":"' + b"0" * 128 + b'","statement":"{}"}',
    b'{"key_id":"0000000000000000","signature":"' + b"0" * 126 + b'","statement":"{}"}',
    b'{"extra":1,"key_id":"0000000000000000","signature":"' + b"0" * 128
    + b'","statement":"{}"}',
])
def test_malformed_envelope_is_refused(envelope):
    refused("malformed", ring_of(generate_private_key()), envelope)


def test_envelope_naming_a_field_twice_is_refused():
    old, new = generate_private_key(), generate_private_key()
    good = make_rotation(old, raw_public_key(new), serial=1).decode()
    doubled = good.replace('{"key_id":', '{"key_id":"' + "0" * 16 + '","key_id":', 1)
    refused("malformed", ring_of(old), doubled)
