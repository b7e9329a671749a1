"""Bundles: built from the app with mpy-cross, packed in the documented layout, checked on read."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

import pytest

from ota.bundle import (
    HEADER_SIZE,
    MAGIC,
    extract_bundle,
    load_staged,
    read_envelope,
    stage_release,
    verify_bundle,
    write_bundle,
)
from ota.errors import (
    BadFileHash,
    BadSignature,
    BuildError,
    BundleError,
    ExpiredManifest,
    FileTooLong,
    FileTruncated,
    MalformedBundle,
    MalformedManifest,
)
from ota.keys import KeyRing, generate_private_key, raw_public_key
from ota.manifest import sign_manifest
from ota.signing import MANIFEST_TAG, signed_message
from tests.rigs.micropython import run_micropython

KEY = generate_private_key()


def ring() -> KeyRing:
    r = KeyRing()
    r.add(raw_public_key(KEY))
    return r


def make_app(root: Path) -> Path:
    app = root / "app"
    (app / "lib").mkdir(parents=True)
    (app / "__pycache__").mkdir()
    (app / "__pycache__" / "x.pyc").write_bytes(b"junk")
    (app / "main.py").write_text("import greet\nprint(greet.hello('lamp'))\n")
    (app / "boot.py").write_text("# boot\n")
    (app / "lib" / "greet.py").write_text("def hello(name):\n    return 'hello ' + name\n")
    (app / "lib" / "defaults.json").write_text('{"level": 3}')
    return app


def build(tmp_path: Path, sequence: int = 3, expires: int | None = None) -> tuple[Path, Path]:
    app = tmp_path / "app"
    if not app.exists():
        make_app(tmp_path)
    stage = tmp_path / f"stage{sequence}"
    manifest = stage_release(app, stage, version="1.0.0", sequence=sequence, board=["emulated"],
                             expires=expires or int(time.time()) + 3600)
    bundle = tmp_path / f"r{sequence}.llb"
    write_bundle(stage, sign_manifest(manifest, KEY), bundle)
    return stage, bundle


def test_build_compiles_modules_keeps_boot_and_main_as_source(tmp_path):
    stage, bundle = build(tmp_path)
    manifest = verify_bundle(bundle, ring())
    assert [f.path for f in manifest.files] == [
        "boot.py", "lib/defaults.json", "lib/greet.mpy", "main.py"]
    assert (stage / "files" / "lib" / "greet.mpy").read_bytes()[:1] == b"M"  # .mpy magic


def test_bundle_layout_is_header_manifest_then_files_in_order(tmp_path):
    stage, bundle = build(tmp_path)
    data = bundle.read_bytes()
    magic, fmt, length, kid, signature = struct.unpack(">8sHI8s64s", data[:HEADER_SIZE])
    assert (magic, fmt, HEADER_SIZE) == (MAGIC, 1, 86)
    raw = data[HEADER_SIZE:HEADER_SIZE + length]
    manifest = json.loads(raw)
    assert manifest["key_id"] == kid.hex()
    KEY.public_key().verify(signature, signed_message(MANIFEST_TAG, raw))
    body = b"".join((stage / "files" / f["path"]).read_bytes() for f in manifest["files"])
    assert data[HEADER_SIZE + length:] == body
    assert len(body) == manifest["total_size"]


def test_extracted_app_runs_on_micropython(tmp_path):
    _, bundle = build(tmp_path)
    out = tmp_path / "installed"
    extract_bundle(bundle, ring(), out)
    proc = run_micropython((out / "main.py").read_text(), path_dirs=[out / "lib"], cwd=out)
    assert proc.stdout.strip() == "hello lamp"


def _rewrite(bundle: Path, transform) -> Path:
    target = bundle.with_name("bad.llb")
    target.write_bytes(transform(bundle.read_bytes()))
    return target


@pytest.mark.parametrize("transform,error,match", [
    (lambda d: d + b"\x00", FileTooLong, "longer"),
    (lambda d: d + b"\x00" * 5000, FileTooLong, "longer"),
    (lambda d: d[:-1], FileTruncated, "ends inside"),
    (lambda d: d[:-1] + bytes([d[-1] ^ 1]), BadFileHash, "SHA-256"),
    (lambda d: b"XX" + d[2:], MalformedBundle, "magic"),
    (lambda d: d[:8] + b"\x00\x02" + d[10:], MalformedBundle, "format"),
    (lambda d: d[:10] + b"\x7f\xff\xff\xff" + d[14:], MalformedBundle, "outside 2..16384"),
    (lambda d: d[:10] + b"\x00\x00\x40\x01" + d[14:], MalformedBundle, "16385 is outside"),
    (lambda d: d[:10] + b"\x00\x00\x00\x01" + d[14:], MalformedBundle, "1 is outside"),
    # the header is judged once its 86 bytes are in: shorter is truncated, whatever it holds
    (lambda d: d[:20], FileTruncated, "shorter than its header"),
    (lambda d: b"not a bundle at all", FileTruncated, "shorter than its header"),
    (lambda d: b"", FileTruncated, "shorter than its header"),
    (lambda d: d[:100], FileTruncated, "ends inside the manifest"),
])
def test_damaged_bundles_are_refused_with_the_nodes_reason(tmp_path, transform, error, match):
    _, bundle = build(tmp_path)
    with pytest.raises(error, match=match) as caught:
        verify_bundle(_rewrite(bundle, transform), ring())
    assert isinstance(caught.value, BundleError)
    assert caught.value.reason == {
        FileTooLong: "file_too_long", FileTruncated: "file_truncated",
        BadFileHash: "bad_file_hash", MalformedBundle: "malformed"}[error]


def test_files_from_another_release_fail_their_hash(tmp_path):
    _, first = build(tmp_path, sequence=3)
    (tmp_path / "app" / "lib" / "defaults.json").write_text('{"level": 4}')
    _, second = build(tmp_path, sequence=4)
    a, b = first.read_bytes(), second.read_bytes()
    a_env = HEADER_SIZE + struct.unpack(">I", a[10:14])[0]
    b_env = HEADER_SIZE + struct.unpack(">I", b[10:14])[0]
    assert a[HEADER_SIZE:a_env] != b[HEADER_SIZE:b_env]
    mixed = tmp_path / "mixed.llb"
    mixed.write_bytes(a[:a_env] + b[b_env:])
    with pytest.raises(BadFileHash, match="defaults.json does not match") as caught:
        verify_bundle(mixed, ring())
    assert caught.value.reason == "bad_file_hash"


def test_signature_is_checked_before_any_file_data(tmp_path):
    _, bundle = build(tmp_path)
    data = bundle.read_bytes()
    length = struct.unpack(">I", data[10:14])[0]
    manifest = data[HEADER_SIZE:HEADER_SIZE + length]
    forged = manifest.replace(b'"sequence":3', b'"sequence":9')
    header = bytearray(data[:HEADER_SIZE])
    header[10:14] = struct.pack(">I", len(forged))
    bad = tmp_path / "forged.llb"
    bad.write_bytes(bytes(header) + forged + b"garbage")
    with pytest.raises(BadSignature):
        verify_bundle(bad, ring())
    with open(bad, "rb") as stream:
        assert read_envelope(stream).manifest_bytes == forged
        assert stream.read() == b"garbage"


def test_expired_bundle_is_refused_at_verify_time(tmp_path):
    _, bundle = build(tmp_path)
    with pytest.raises(ExpiredManifest):
        verify_bundle(bundle, ring(), now=time.time() + 7200)


def test_a_staged_file_changed_after_build_is_not_packed(tmp_path):
    stage, _ = build(tmp_path)
    (stage / "files" / "main.py").write_text("print('evil')\n")
    with pytest.raises(BuildError, match="changed"):
        write_bundle(stage, sign_manifest(load_staged(stage), KEY), tmp_path / "x.llb")
    assert not (tmp_path / "x.llb").exists()


def test_syntax_error_in_the_app_fails_the_build_with_mpy_cross_message(tmp_path):
    app = make_app(tmp_path)
    (app / "lib" / "broken.py").write_text("def f(:\n")
    with pytest.raises(BuildError, match="broken.py"):
        stage_release(app, tmp_path / "s", version="1.0.0", sequence=1, board=["emulated"],
                      expires=int(time.time()) + 60)


def test_firmware_release_carries_one_image(tmp_path):
    image = tmp_path / "micropython.bin"
    image.write_bytes(bytes(range(256)) * 40)
    manifest = stage_release(image, tmp_path / "s", version="1.29.0", sequence=2,
                             board=["esp32_devkitc"], kind="firmware",
                             expires=int(time.time()) + 60)
    assert [(f.path, f.size) for f in manifest.files] == [("firmware.bin", 10240)]


def test_files_are_packed_in_path_order_with_slash_first(tmp_path):
    app = make_app(tmp_path)
    (app / "lib-extra.txt").write_text("extra\n")  # '-' < '/' as characters, yet after lib/
    (app / "lib.txt").write_text("x\n")
    stage = tmp_path / "stage"
    manifest = stage_release(app, stage, version="1.0.0", sequence=1, board=["emulated"],
                             expires=int(time.time()) + 60)
    paths = [f.path for f in manifest.files]
    assert paths == ["boot.py", "lib/defaults.json", "lib/greet.mpy", "lib-extra.txt",
                     "lib.txt", "main.py"]
    bundle = tmp_path / "r.llb"
    write_bundle(stage, sign_manifest(manifest, KEY), bundle)
    data = bundle.read_bytes()
    length = struct.unpack(">I", data[10:14])[0]
    body = b"".join((stage / "files" / p).read_bytes() for p in paths)
    assert data[HEADER_SIZE + length:] == body
    assert verify_bundle(bundle, ring()).files == manifest.files


def test_an_app_holding_the_reserved_app_version_json_is_not_built(tmp_path):
    app = make_app(tmp_path)
    (app / "app_version.json").write_text("{}")
    with pytest.raises(MalformedManifest, match="reserved"):
        stage_release(app, tmp_path / "s", version="1.0.0", sequence=1, board=["emulated"],
                      expires=int(time.time()) + 60)
