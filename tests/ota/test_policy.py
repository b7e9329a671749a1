"""The host's copy of the node's install policy: each refusal, and their order."""

from __future__ import annotations

import io
from dataclasses import replace

import pytest

from ota.errors import (
    BadFileHash,
    ClockUnset,
    ExpiredManifest,
    FileTooLong,
    PolicyError,
    Rollback,
    WrongBoard,
    WrongHardware,
)
from ota.keys import KeyRing, generate_private_key, key_id, raw_public_key
from ota.manifest import FileEntry, Manifest, sign_manifest
from ota.policy import MIN_VALID_CLOCK, check_bundle, check_install

CREATED = 1_767_225_600  # 2026-01-01
NOW = CREATED + 86_400


def manifest(**changes) -> Manifest:
    fields = dict(version="1.4.0", sequence=12, board=["emulated", "esp32_devkitc"],
                  created=CREATED, expires=CREATED + 90 * 86_400,
                  files=[FileEntry("main.py", 0, "e3b0c44298fc1c149afbf4c8996fb924"
                                                 "27ae41e4649b934ca495991b7852b855")])
    fields.update(changes)
    return Manifest.create(**fields)


def check(m: Manifest, **node) -> None:
    state = dict(installed_sequence=11, board="emulated", now=NOW, hardware=None)
    state.update(node)
    check_install(m, **state)


def test_a_node_may_install_a_newer_release_for_its_board():
    check(manifest())
    check(manifest(), installed_sequence=0, board="esp32_devkitc")
    check(manifest(created=MIN_VALID_CLOCK - 10), now=MIN_VALID_CLOCK)
    check(manifest(), now=CREATED + 90 * 86_400 - 1)
    check(manifest(hardware=["rev-a", "rev-b"]), hardware="rev-b")
    check(manifest(), hardware="anything")  # no hardware listed: any


@pytest.mark.parametrize("m,node,error", [
    (manifest(), {"now": MIN_VALID_CLOCK - 1}, ClockUnset),
    (manifest(), {"now": 0}, ClockUnset),
    (manifest(), {"now": CREATED + 90 * 86_400}, ExpiredManifest),
    (manifest(), {"installed_sequence": 12}, Rollback),
    (manifest(), {"installed_sequence": 13}, Rollback),
    (manifest(), {"board": "esp32"}, WrongBoard),
    (manifest(), {"board": "Emulated"}, WrongBoard),
    (manifest(hardware=["rev-a"]), {"hardware": "rev-b"}, WrongHardware),
    (manifest(hardware=["rev-a"]), {"hardware": "REV-A"}, WrongHardware),
    # a node that does not know its hardware is not among the listed ones
    (manifest(hardware=["rev-a"]), {"hardware": None}, WrongHardware),
])
def test_each_refusal_has_the_nodes_reason(m, node, error):
    with pytest.raises(error) as caught:
        check(m, **node)
    assert isinstance(caught.value, PolicyError)
    assert caught.value.reason == {
        ClockUnset: "clock_unset", ExpiredManifest: "expired", Rollback: "rollback",
        WrongBoard: "wrong_board", WrongHardware: "wrong_hardware"}[error]


def test_refusals_come_in_the_nodes_order():
    everything_wrong = manifest(expires=MIN_VALID_CLOCK + 5, created=MIN_VALID_CLOCK - 5,
                                hardware=["rev-a"])
    state = dict(now=MIN_VALID_CLOCK - 1, installed_sequence=99, board="x", hardware="rev-z")
    for error, fix in [(ClockUnset, {"now": MIN_VALID_CLOCK + 5}),
                       (ExpiredManifest, {"now": MIN_VALID_CLOCK + 4}),
                       (Rollback, {"installed_sequence": 0}),
                       (WrongBoard, {"board": "emulated"}),
                       (WrongHardware, {"hardware": "rev-a"})]:
        with pytest.raises(error):
            check(everything_wrong, **state)
        state.update(fix)
    check(everything_wrong, **state)


def _bundle(m: Manifest, key, body: bytes) -> bytes:
    from ota.bundle import BUNDLE_FORMAT, HEADER, MAGIC

    signed = sign_manifest(m, key)
    return HEADER.pack(MAGIC, BUNDLE_FORMAT, len(signed.manifest_bytes),
                       bytes.fromhex(signed.key_id), signed.signature) \
        + signed.manifest_bytes + body


def test_check_bundle_judges_policy_before_any_file_byte():
    key = generate_private_key()
    ring = KeyRing()
    ring.add(raw_public_key(key))
    m = manifest(files=[FileEntry("main.py", 3, "0" * 64)])
    node = dict(installed_sequence=11, board="emulated", now=NOW)
    with pytest.raises(BadFileHash):
        check_bundle(io.BytesIO(_bundle(m, key, b"abc")), ring, **node)
    with pytest.raises(Rollback):
        check_bundle(io.BytesIO(_bundle(m, key, b"abc")), ring,
                     **{**node, "installed_sequence": 12})
    empty = manifest()
    assert check_bundle(io.BytesIO(_bundle(empty, key, b"")), ring, **node) \
        == replace(empty, key_id=key_id(key))
    with pytest.raises(FileTooLong):
        check_bundle(io.BytesIO(_bundle(empty, key, b"x")), ring, **node)
