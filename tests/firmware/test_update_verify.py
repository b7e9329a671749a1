"""The node's verifier: every manifest it must not install is refused with its reason."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from ota.bundle import HEADER_SIZE, MAGIC, compile_app, stage_release, write_bundle
from ota.keys import (
    canonical_json,
    generate_private_key,
    key_id,
    make_revocation,
    make_rotation,
    raw_public_key,
)
from ota.manifest import FileEntry, Manifest, sign_manifest
from ota.signing import MANIFEST_TAG, ROTATION_TAG, sign_tagged
from tools.firmware_tree import FIRMWARE_LIB

NOW = 1_800_000_000
TRUSTED = generate_private_key()
REVOKED = generate_private_key()
STRANGER = generate_private_key()

CHECK = """
import json
from updater import verify
from updater.format import Refused
from binascii import unhexlify
ring = json.load(open("ring.json"))
trusted = {}
for kid, hexkey in ring["keys"].items():
    trusted[kid] = unhexlify(hexkey)
for line in open("cases.jsonl"):
    c = json.loads(line)
    try:
        m = verify.check_manifest(c["manifest"].encode(), c["key_id"],
                                  unhexlify(c["signature"]), trusted, ring["revoked"],
                                  c["installed"], c["board"], c["now"], c.get("hardware"))
        print(json.dumps(["ok", m.version, m.sequence]))
    except (Refused, ValueError) as e:
        print(json.dumps([e.reason, e.detail]))
"""


def manifest(**changes) -> Manifest:
    base = Manifest.create(
        version="2.0.0", sequence=10, board=["esp32_devkitc", "emulated"],
        hardware=["rev-b", "rev-c"], created=NOW - 3600, expires=NOW + 86400,
        files=[FileEntry("lib/app.mpy", 120, "a" * 64), FileEntry("main.py", 30, "b" * 64)],
    )
    return replace(base, **changes)


def signed(m: Manifest | None = None, key=TRUSTED) -> dict:
    """The signed manifest as a check-in reply carries it: manifest text, key id, hex signature."""
    return json.loads(sign_manifest(m or manifest(), key).to_bytes())


def hand_signed(document: dict | bytes, key=TRUSTED, tag: bytes = MANIFEST_TAG) -> dict:
    """An arbitrary payload, signed as-is (no validation)."""
    payload = document if isinstance(document, bytes) else canonical_json(document)
    return {"key_id": key_id(key), "manifest": payload.decode(),
            "signature": sign_tagged(key, tag, payload).hex()}


def run_checks(mpy, tmp_path: Path, cases: list[dict]) -> list:
    ring = {"keys": {key_id(k): raw_public_key(k).hex() for k in (TRUSTED, REVOKED)},
            "revoked": [key_id(REVOKED)]}
    (tmp_path / "ring.json").write_text(json.dumps(ring))
    defaults = {"installed": 9, "board": "emulated", "now": NOW, "hardware": "rev-c"}
    lines = [json.dumps({**defaults, **c}) + "\n" for c in cases]
    (tmp_path / "cases.jsonl").write_text("".join(lines))
    out = mpy(CHECK)
    assert len(out) == len(cases)
    return out


def good_dict(**changes) -> dict:
    return {**manifest(key_id=key_id(TRUSTED)).to_json(), **changes}


def tampered() -> dict:
    case = signed()
    case["manifest"] = case["manifest"].replace('"sequence":10', '"sequence":99')
    return case


def flipped_signature() -> dict:
    case = signed()
    sig = bytearray(bytes.fromhex(case["signature"]))
    sig[10] ^= 0x04
    return {**case, "signature": sig.hex()}


def rotation_signature_reused_as_manifest() -> dict:
    """Domain separation: a manifest-shaped payload signed as a rotation statement."""
    return hand_signed(good_dict(), tag=ROTATION_TAG)


REFUSALS = {
    "bad_signature": [
        tampered(),
        rotation_signature_reused_as_manifest(),
        flipped_signature(),
    ],
    "unknown_key": [signed(key=STRANGER)],
    "revoked_key": [signed(key=REVOKED)],
    "rollback": [{**signed(), "installed": 10}, {**signed(), "installed": 11}],
    "expired": [{**signed(), "now": NOW + 86400}, {**signed(), "now": NOW + 10**6}],
    "clock_unset": [{**signed(), "now": 0}],
    "wrong_board": [{**signed(), "board": "microbit"}],
    # a node that does not know its revision cannot show it is one of those listed
    "wrong_hardware": [{**signed(), "hardware": "rev-a"}, {**signed(), "hardware": None}],
    "malformed": [
        {**signed(), "key_id": "not-a-key-id"},
        {**signed(), "signature": signed()["signature"][:126]},
        hand_signed(b"not json"),
        hand_signed({"format": 1}),
        hand_signed(good_dict(total_size=1)),
        hand_signed(good_dict(sequence="11")),
        hand_signed(good_dict(files=[{"path": "../boot.py", "size": 150, "sha256": "c" * 64}])),
        hand_signed(good_dict(files=[{"path": "a.py", "size": 150, "sha256": "C"}])),
        hand_signed(good_dict(files=[{"path": "a.py", "size": 150, "sha256": "z" * 64}])),
        hand_signed(good_dict(files=[{"path": "a.py", "size": 150, "sha256": "A" * 64}])),
        hand_signed(good_dict(key_id=key_id(REVOKED))),
    ],
}


def test_a_valid_manifest_is_accepted(mpy, tmp_path):
    out = run_checks(mpy, tmp_path, [signed(), {**signed(), "board": "esp32_devkitc"},
                                     {**signed(), "hardware": "rev-b"}])
    assert out == [["ok", "2.0.0", 10]] * 3


@pytest.mark.parametrize("reason", sorted(REFUSALS))
def test_each_attack_is_refused_with_its_reason(mpy, tmp_path, reason):
    out = run_checks(mpy, tmp_path, REFUSALS[reason])
    assert [r[0] for r in out] == [reason] * len(REFUSALS[reason]), out


STREAM = """
import json
from updater import verify
from updater.format import Refused
from binascii import unhexlify
ring = json.load(open("ring.json"))
trusted = {ring["kid"]: unhexlify(ring["key"])}
buf = bytearray(512)
for name in json.load(open("bundles.json")):
    check = verify.BundleCheck(trusted, [], 0, "emulated", 1800000000)
    try:
        with open(name, "rb") as f:
            while True:
                n = f.readinto(buf)
                if not n:
                    break
                check.feed(memoryview(buf)[:n])
        m = check.finish()
        print(json.dumps(["ok", [e[0] for e in m.files()]]))
    except Refused as e:
        print(json.dumps([e.reason, e.detail]))
"""


def _build(tmp_path: Path, name: str, body: str, sequence: int) -> Path:
    app = tmp_path / f"app-{name}"
    (app / "lib").mkdir(parents=True)
    (app / "main.py").write_text("import lamp\n")
    (app / "lib" / "lamp.py").write_text(body)
    stage = tmp_path / f"stage-{name}"
    m = stage_release(app, stage, version=f"1.{sequence}.0", sequence=sequence,
                      board=["emulated"], created=NOW - 10, expires=NOW + 1000)
    out = tmp_path / f"{name}.llb"
    write_bundle(stage, sign_manifest(m, TRUSTED), out)
    return out


def test_node_streams_a_host_built_bundle_and_refuses_tampered_ones(mpy, tmp_path):
    good = _build(tmp_path, "good", "LEVEL = 1\n" * 200, 5)
    other = _build(tmp_path, "other", "LEVEL = 2\n" * 200, 6)
    data, other_data = good.read_bytes(), other.read_bytes()
    start = HEADER_SIZE + int.from_bytes(data[10:14], "big")
    files_other = other_data[HEADER_SIZE + int.from_bytes(other_data[10:14], "big"):]
    assert len(data) - start == len(files_other)  # same sizes, different contents
    variants = {
        "good.llb": data,
        "mixed.llb": data[:start] + files_other,  # manifest of one, files of another
        "endless.llb": data + b"\x00" * 4096,
        "truncated.llb": data[:-7],
        "flipped.llb": data[:-1] + bytes([data[-1] ^ 1]),
    }
    for name, content in variants.items():
        (tmp_path / name).write_bytes(content)
    (tmp_path / "bundles.json").write_text(json.dumps(list(variants)))
    (tmp_path / "ring.json").write_text(json.dumps(
        {"kid": key_id(TRUSTED), "key": raw_public_key(TRUSTED).hex()}))
    out = dict(zip(variants, mpy(STREAM), strict=True))
    assert out["good.llb"] == ["ok", ["lib/lamp.mpy", "main.py"]]
    assert out["mixed.llb"][0] == "bad_file_hash"
    assert out["endless.llb"][0] == "file_too_long"
    assert out["truncated.llb"][0] == "file_truncated"
    assert out["flipped.llb"][0] == "bad_file_hash"


def test_file_check_refuses_the_first_byte_past_the_declared_size(mpy):
    out = mpy(
        "import json, hashlib, binascii\nfrom updater import verify\n"
        "from updater.format import Refused\n"
        "digest = binascii.hexlify(hashlib.sha256(b'abcd').digest()).decode()\n"
        "c = verify.FileCheck('a', 4, digest)\n"
        "c.update(b'abcd')\n"
        "try:\n    c.update(b'e')\nexcept Refused as e:\n"
        "    print(json.dumps([e.reason, 4 - c.left]))\n"
        "c.finish()\nprint(json.dumps('finished'))\n"
    )
    assert out == [["file_too_long", 4], "finished"]


def test_bundle_header_is_checked(mpy, tmp_path):
    good = MAGIC + (1).to_bytes(2, "big") + (256).to_bytes(4, "big") + b"\x01" * 8 + b"\x02" * 64
    headers = [good, good[:8] + b"\x00\x02" + good[10:], b"XX" + good[2:],
               good[:10] + (10**6).to_bytes(4, "big") + good[14:], good[:85]]
    (tmp_path / "headers.json").write_text(json.dumps([h.hex() for h in headers]))
    out = mpy(
        "import json\nfrom binascii import unhexlify, hexlify\nfrom updater import verify\n"
        "from updater.format import Refused\n"
        "for h in json.load(open('headers.json')):\n"
        "    try:\n"
        "        n, kid, sig = verify.read_header(unhexlify(h))\n"
        "        print(json.dumps([n, kid, hexlify(sig).decode()]))\n"
        "    except Refused as e:\n        print(json.dumps(e.reason))\n"
    )
    assert out == [[256, "01" * 8, "02" * 64], "malformed", "malformed", "malformed", "malformed"]


STATEMENTS = """
import json
from updater import keyring
from updater.format import Refused
c = json.load(open("statements.json"))
for keys, env in c:
    try:
        new = keyring.apply(keys, env)
        print(json.dumps(["ok", new["serial"], sorted(new["keys"]), sorted(new["revoked"])]))
    except Refused as e:
        print(json.dumps([e.reason]))
"""


@pytest.fixture(scope="module")
def compiled_lib(tmp_path_factory) -> Path:
    """firmware/lib compiled by mpy-cross, as a release ships it."""
    out = tmp_path_factory.mktemp("lib-mpy")
    compile_app(FIRMWARE_LIB, out)
    return out


def test_rotation_and_revocation_statements_on_the_node(mpy, tmp_path, compiled_lib):
    """Each statement applies only to the key set it follows: signed by a trusted, unrevoked
    key, exactly the next serial, and never replayed."""
    new = generate_private_key()
    t, r, n = key_id(TRUSTED), key_id(REVOKED), key_id(new)
    start = {"keys": {t: raw_public_key(TRUSTED).hex(), r: raw_public_key(REVOKED).hex()},
             "revoked": [r], "serial": 3}
    rotated = {"keys": {**start["keys"], n: raw_public_key(new).hex()}, "revoked": [r, t],
               "serial": 4}
    rotation = make_rotation(TRUSTED, raw_public_key(new), serial=4).decode()
    cases = [
        (start, rotation),
        (start, make_rotation(STRANGER, raw_public_key(new), serial=4).decode()),
        (start, make_rotation(REVOKED, raw_public_key(new), serial=4).decode()),
        (start, make_rotation(TRUSTED, raw_public_key(new), serial=6).decode()),
        (start, make_rotation(TRUSTED, raw_public_key(new), serial=3).decode()),
        (rotated, rotation),  # the old key signed it, and the rotation retired that key
        ({**rotated, "revoked": [r]},
         make_rotation(TRUSTED, raw_public_key(new), serial=4, retire_old=False).decode()),
        ({**rotated, "revoked": [r]},
         make_rotation(TRUSTED, raw_public_key(new), serial=5, retire_old=False).decode()),
        (rotated, make_revocation(new, [t], serial=5).decode()),
        (rotated, make_revocation(new, [n], serial=5).decode()),
        (start, make_revocation(TRUSTED, [key_id(STRANGER)], serial=4).decode()),
    ]
    (tmp_path / "statements.json").write_text(json.dumps(cases))
    out = mpy(STATEMENTS, path_dirs=[compiled_lib])
    assert out == [
        ["ok", 4, sorted([t, r, n]), sorted([r, t])],
        ["unknown_key"],
        ["revoked_key"],
        ["out_of_order"],
        ["replayed"],
        ["revoked_key"],
        ["replayed"],  # an old statement again
        ["replayed"],  # the key it introduces is known already
        ["ok", 5, sorted([t, r, n]), sorted([r, t])],
        ["no_key_left"],
        ["ok", 4, sorted([t, r]), sorted([r, key_id(STRANGER)])],
    ]


def test_applying_statements_leaves_no_heap_behind(mpy, tmp_path, compiled_lib):
    """The verifier is loaded for each statement and dropped again: thirty in a row leave the
    heap as the first one left it (a node may apply eight from one check-in reply)."""
    new = generate_private_key()
    start = {"keys": {key_id(TRUSTED): raw_public_key(TRUSTED).hex()}, "revoked": [],
             "serial": 3}
    envelope = make_rotation(TRUSTED, raw_public_key(new), serial=4).decode()
    (tmp_path / "case.json").write_text(json.dumps([start, envelope]))
    out = mpy("import json, gc\nfrom updater import keyring\n"
              "keys, env = json.load(open('case.json'))\n"
              "for i in range(30):\n"
              "    new = keyring.apply(keys, env)\n"
              "    gc.collect()\n"
              "    print(json.dumps([new['serial'], gc.mem_alloc()]))\n",
              path_dirs=[compiled_lib])
    assert [serial for serial, _ in out] == [4] * 30
    assert {alloc for _, alloc in out[1:]} == {out[1][1]}, out


def test_manifest_check_runs_in_a_small_heap(mpy, tmp_path, compiled_lib):
    """With the modules compiled by mpy-cross, a 40-file manifest is checked in a 64 KB heap
    (the verifier and the manifest are never in the heap together)."""
    files = [FileEntry(f"lib/module_{i:02d}.mpy", 1000 + i, f"{i:064x}") for i in range(40)]
    m = replace(manifest(), files=tuple(files), total_size=sum(f.size for f in files))
    case = signed(m)
    (tmp_path / "manifest.json").write_text(case["manifest"])
    out = mpy(
        "import json, hashlib, gc\nfrom updater import verify\n"
        "from updater.format import MANIFEST_TAG\n"
        "from binascii import unhexlify\n"
        f"trusted = {{'{key_id(TRUSTED)}': unhexlify('{raw_public_key(TRUSTED).hex()}')}}\n"
        "with open('manifest.json', 'rb') as f:\n    digest = hashlib.sha256(f.read()).digest()\n"
        "gc.collect()\n"
        f"verify.check_signature(digest, '{case['key_id']}', unhexlify('{case['signature']}'),"
        " MANIFEST_TAG, trusted, [])\n"
        "gc.collect()\n"
        "with open('manifest.json', 'rb') as f:\n    m = verify.parse_manifest(f.read())\n"
        f"verify.check_policy(m, '{case['key_id']}', 9, 'emulated', {NOW}, 'rev-c')\n"
        "print(json.dumps([m.version, m.count]))\n",
        heap_kb=64, path_dirs=[compiled_lib],
    )
    assert out == [["2.0.0", 40]]
