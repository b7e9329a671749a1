"""The node refuses every manifest it must not install, with the right reason, before writing."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from ota.bundle import mpy_cross_compile, stage_release, write_bundle
from ota.keys import (
    canonical_json,
    generate_private_key,
    key_id,
    make_revocation,
    make_rotation,
    raw_public_key,
)
from ota.manifest import FileEntry, Manifest, SignedManifest, sign_manifest
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
        m = mc.check_manifest(c["envelope"].encode(), trusted, ring["revoked"], c["installed"],
                              c["board"], c["now"], c.get("hardware"))
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


def envelope(m: Manifest | None = None, key=TRUSTED) -> str:
    return sign_manifest(m or manifest(), key).to_bytes().decode()


def hand_signed(document: dict, key=TRUSTED, tag: bytes = MANIFEST_TAG,
                envelope_key_id: str | None = None) -> str:
    """An envelope around an arbitrary document, signed as-is (no validation)."""
    payload = canonical_json(document)
    return canonical_json({
        "key_id": envelope_key_id or key_id(key),
        "manifest": payload.decode(),
        "signature": sign_tagged(key, tag, payload).hex(),
    }).decode()


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


def tampered_envelope() -> str:
    signed = sign_manifest(manifest(), TRUSTED)
    forged = signed.manifest_bytes.replace(b'"sequence":10', b'"sequence":99')
    return SignedManifest(forged, signed.key_id, signed.signature).to_bytes().decode()


def rotation_signature_reused_as_manifest() -> str:
    """Domain separation: a signature made over a manifest-shaped payload as a rotation."""
    payload = canonical_json(good_dict())
    return canonical_json({
        "key_id": key_id(TRUSTED), "manifest": payload.decode(),
        "signature": sign_tagged(TRUSTED, ROTATION_TAG, payload).hex(),
    }).decode()


REFUSALS = {
    "bad_signature": [
        {"envelope": tampered_envelope()},
        {"envelope": rotation_signature_reused_as_manifest()},
    ],
    "unknown_key": [{"envelope": envelope(key=STRANGER)}],
    "revoked_key": [{"envelope": envelope(key=REVOKED)}],
    "rollback": [{"envelope": envelope(), "installed": 10},
                 {"envelope": envelope(), "installed": 11}],
    "expired": [{"envelope": envelope(), "now": NOW + 86400},
                {"envelope": envelope(), "now": NOW + 10**6}],
    "clock_unset": [{"envelope": envelope(), "now": 0}],
    "wrong_board": [{"envelope": envelope(), "board": "microbit"}],
    "wrong_hardware": [{"envelope": envelope(), "hardware": "rev-a"}],
    "malformed": [
        {"envelope": "not json"},
        {"envelope": '{"manifest": "x"}'},
        {"envelope": hand_signed({"format": 1})},
        {"envelope": hand_signed(good_dict(total_size=1))},
        {"envelope": hand_signed(good_dict(sequence="11"))},
        {"envelope": hand_signed(good_dict(
            files=[{"path": "../boot.py", "size": 150, "sha256": "c" * 64}]))},
        {"envelope": hand_signed(good_dict(files=[{"path": "a.py", "size": 150, "sha256": "C"}]))},
        {"envelope": hand_signed(good_dict(key_id=key_id(REVOKED)))},
    ],
}


def test_a_valid_manifest_is_accepted(mpy, tmp_path):
    out = run_checks(mpy, tmp_path, [{"envelope": envelope()},
                                     {"envelope": envelope(), "board": "esp32_devkitc"},
                                     {"envelope": envelope(), "hardware": None}])
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
        envelope = f.read(mc.envelope_length(f.read(mc.HEADER_SIZE)))
        m = mc.check_manifest(envelope, trusted, [], 0, "emulated", 1800000000)
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
    env_len = int.from_bytes(data[10:14], "big")
    other_env_len = int.from_bytes(other_data[10:14], "big")
    files_good = data[14 + env_len:]
    files_other = other_data[14 + other_env_len:]
    assert len(files_good) == len(files_other)  # same sizes, different contents
    variants = {
        "good.llb": data,
        "mixed.llb": data[:14 + env_len] + files_other,  # manifest of one, files of another
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


def test_bundle_header_is_checked(mpy):
    out = mpy(
        "import json\nimport manifest_check as mc\n"
        "for h in (b'LLBUNDLE\\x00\\x01\\x00\\x00\\x01\\x00',"
        " b'LLBUNDLE\\x00\\x02\\x00\\x00\\x01\\x00',"
        " b'XXBUNDLE\\x00\\x01\\x00\\x00\\x01\\x00', b'LLBUNDLE\\x00\\x01\\x01\\x00\\x00\\x00',"
        " b'LLBUNDLE'):\n"
        "    try:\n        print(json.dumps(mc.envelope_length(h)))\n"
        "    except mc.ManifestRejected as e:\n        print(json.dumps(e.reason))\n"
    )
    assert out == [256, "malformed", "malformed", "malformed", "malformed"]


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
    (tmp_path / "envelope.json").write_text(envelope(m))
    out = mpy(
        "import json\nimport manifest_check as mc\nfrom binascii import unhexlify\n"
        f"trusted = {{'{key_id(TRUSTED)}': unhexlify('{raw_public_key(TRUSTED).hex()}')}}\n"
        "with open('envelope.json', 'rb') as f:\n    env = f.read()\n"
        f"m = mc.check_manifest(env, trusted, [], 9, 'emulated', {NOW})\n"
        "print(json.dumps([m['version'], len(m['files'])]))\n",
        heap_kb=64, path_dirs=[compiled],
    )
    assert out == [["2.0.0", 40]]
