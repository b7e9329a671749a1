"""The node refuses every manifest it must not install, with the right reason, before writing."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from ota.bundle import HEADER_SIZE, MAGIC, mpy_cross_compile, stage_release, write_bundle
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
from tools.micropython import FIRMWARE_LIB

NOW = 1_800_000_000
TRUSTED = generate_private_key()
REVOKED = generate_private_key()
STRANGER = generate_private_key()

CHECK = """
import json
import manifest_check as mc
from binascii import unhexlify
ring = json.load(open("ring.json"))
trusted = {}
for kid, hexkey in ring["keys"].items():
    trusted[kid] = unhexlify(hexkey)
for line in open("cases.jsonl"):
    c = json.loads(line)
    try:
        m = mc.check_manifest(c["manifest"], c["key_id"], unhexlify(c["signature"]), trusted,
                              ring["revoked"], c["installed"], c["board"], c["now"],
                              c.get("hardware"))
        print(json.dumps(["ok", m["version"], m["sequence"]]))
    except mc.ManifestRejected as e:
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
    "wrong_hardware": [{**signed(), "hardware": "rev-a"}],
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
                                     {**signed(), "hardware": None}])
    assert out == [["ok", "2.0.0", 10]] * 3


@pytest.mark.parametrize("reason", sorted(REFUSALS))
def test_each_attack_is_refused_with_its_reason(mpy, tmp_path, reason):
    out = run_checks(mpy, tmp_path, REFUSALS[reason])
    assert [r[0] for r in out] == [reason] * len(REFUSALS[reason]), out


STREAM = """
import json
import manifest_check as mc
from binascii import unhexlify
ring = json.load(open("ring.json"))
trusted = {ring["kid"]: unhexlify(ring["key"])}
buf = bytearray(512)
for name in json.load(open("bundles.json")):
    f = open(name, "rb")
    try:
        length, kid, signature = mc.read_header(f.read(mc.HEADER_SIZE))
        m = mc.check_manifest(f.read(length), kid, signature, trusted, [], 0, "emulated",
                              1800000000)
        for entry in m["files"]:
            check = mc.FileCheck(entry)
            left = entry["size"]
            while left:
                n = f.readinto(buf)
                if not n:
                    break
                take = min(n, left)
                check.update(memoryview(buf)[:take])
                left -= take
                if n > take:
                    f.seek(take - n, 1)
            check.finish()
        # Anything after the last file is more than the manifest declared.
        extra = f.read(1)
        if extra:
            mc.FileCheck({"path": "(end)", "size": 0, "sha256": "0" * 64}).update(extra)
        print(json.dumps(["ok", [e["path"] for e in m["files"]]]))
    except mc.ManifestRejected as e:
        print(json.dumps([e.reason, e.detail]))
    f.close()
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
        "import json, hashlib, binascii\nimport manifest_check as mc\n"
        "digest = binascii.hexlify(hashlib.sha256(b'abcd').digest()).decode()\n"
        "c = mc.FileCheck({'path': 'a', 'size': 4, 'sha256': digest})\n"
        "c.update(b'abcd')\n"
        "try:\n    c.update(b'e')\nexcept mc.ManifestRejected as e:\n"
        "    print(json.dumps([e.reason, c.received]))\n"
        "c.finish()\nprint(json.dumps('finished'))\n"
    )
    assert out == [["file_too_long", 4], "finished"]


def test_bundle_header_is_checked(mpy, tmp_path):
    good = MAGIC + (1).to_bytes(2, "big") + (256).to_bytes(4, "big") + b"\x01" * 8 + b"\x02" * 64
    headers = [good, good[:8] + b"\x00\x02" + good[10:], b"XX" + good[2:],
               good[:10] + (10**6).to_bytes(4, "big") + good[14:], good[:85]]
    (tmp_path / "headers.json").write_text(json.dumps([h.hex() for h in headers]))
    out = mpy(
        "import json\nfrom binascii import unhexlify, hexlify\nimport manifest_check as mc\n"
        "for h in json.load(open('headers.json')):\n"
        "    try:\n"
        "        n, kid, sig = mc.read_header(unhexlify(h))\n"
        "        print(json.dumps([n, kid, hexlify(sig).decode()]))\n"
        "    except mc.ManifestRejected as e:\n        print(json.dumps(e.reason))\n"
    )
    assert out == [[256, "01" * 8, "02" * 64], "malformed", "malformed", "malformed", "malformed"]


ROTATION = """
import json
import manifest_check as mc
from binascii import unhexlify
c = json.load(open("rot.json"))
trusted = {c["kid"]: unhexlify(c["key"])}
for env in c["rotations"]:
    try:
        kid, key, retire = mc.check_rotation(env.encode(), trusted, [])
        print(json.dumps(["ok", kid, len(key), retire]))
    except mc.ManifestRejected as e:
        print(json.dumps([e.reason]))
for env in c["revocations"]:
    try:
        print(json.dumps(["ok"] + list(mc.check_revocation(env.encode(), trusted, [], 3))))
    except mc.ManifestRejected as e:
        print(json.dumps([e.reason]))
"""


def test_rotation_and_revocation_statements_on_the_node(mpy, tmp_path):
    new = generate_private_key()
    rotations = [
        make_rotation(TRUSTED, raw_public_key(new)).decode(),
        make_rotation(STRANGER, raw_public_key(new)).decode(),
    ]
    revocations = [
        make_revocation(TRUSTED, [key_id(REVOKED)], serial=4).decode(),
        make_revocation(TRUSTED, [key_id(REVOKED)], serial=3).decode(),
    ]
    (tmp_path / "rot.json").write_text(json.dumps({
        "kid": key_id(TRUSTED), "key": raw_public_key(TRUSTED).hex(),
        "rotations": rotations, "revocations": revocations,
    }))
    out = mpy(ROTATION)
    assert out == [
        ["ok", key_id(new), 32, True],
        ["unknown_key"],
        ["ok", 4, [key_id(REVOKED)]],
        ["rollback"],
    ]


def test_manifest_check_runs_in_a_small_heap(mpy, tmp_path):
    """With the modules compiled by mpy-cross, a 40-file manifest is checked in a 64 KB heap."""
    compiled = tmp_path / "lib"
    compiled.mkdir()
    for module in ("sha512", "ed25519", "manifest_check"):
        mpy_cross_compile(FIRMWARE_LIB / f"{module}.py", compiled / f"{module}.mpy", module)
    files = [FileEntry(f"lib/module_{i:02d}.mpy", 1000 + i, f"{i:064x}") for i in range(40)]
    m = replace(manifest(), files=tuple(files), total_size=sum(f.size for f in files))
    case = signed(m)
    (tmp_path / "manifest.json").write_text(case["manifest"])
    out = mpy(
        "import json\nimport manifest_check as mc\nfrom binascii import unhexlify\n"
        f"trusted = {{'{key_id(TRUSTED)}': unhexlify('{raw_public_key(TRUSTED).hex()}')}}\n"
        "with open('manifest.json', 'rb') as f:\n    data = f.read()\n"
        f"m = mc.check_manifest(data, '{case['key_id']}', unhexlify('{case['signature']}'),"
        f" trusted, [], 9, 'emulated', {NOW})\n"
        "print(json.dumps([m['version'], len(m['files'])]))\n",
        heap_kb=64, path_dirs=[compiled],
    )
    assert out == [["2.0.0", 40]]
