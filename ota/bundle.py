"""Bundle builder and reader: compile the app with mpy-cross, stage it, pack a streamable bundle.

Bundle layout (all integers big-endian; see docs/update-format.md):
    offset 0   8 bytes   magic b"LLBUNDLE"
    offset 8   2 bytes   bundle format version (1)
    offset 10  4 bytes   length N of the canonical manifest
    offset 14  8 bytes   signing key id (raw; its hex is the manifest's key_id)
    offset 22  64 bytes  Ed25519 signature (see ota.signing)
    offset 86  N bytes   canonical manifest
    then               every file's bytes, in manifest order, exactly `size` bytes each;
                       the bundle ends right after the last file (total_size bytes of data).
A reader verifies the manifest before reading any file data and refuses bytes past the end.
Each refusal carries the node's reason code (`.reason`): a bad header is MalformedBundle
(`malformed`); a bundle that ends early, even inside its header or manifest, FileTruncated
(`file_truncated`); a byte past the last file FileTooLong (`file_too_long`); a file whose bytes
differ from its SHA-256 BadFileHash (`bad_file_hash`). The header is judged once all 86 bytes
are in, as on the node.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ota.board_manifest import app_sources, board_files, has_manifests
from ota.errors import (
    BadFileHash,
    BuildError,
    BundleError,
    FileTooLong,
    FileTruncated,
    MalformedBundle,
    MalformedManifest,
)
from ota.keys import KeyRing
from ota.manifest import (
    FIRMWARE_IMAGE_NAME,
    MAX_MANIFEST_SIZE,
    MIN_MANIFEST_SIZE,
    FileEntry,
    Manifest,
    SignedManifest,
    check_path,
    verify_manifest,
)

MAGIC = b"LLBUNDLE"
BUNDLE_FORMAT = 1
HEADER = struct.Struct(">8sHI8s64s")
HEADER_SIZE = HEADER.size  # 86
CHUNK = 4096
STAGED_MANIFEST = "manifest.json"
STAGED_FILES = "files"
# Kept as source: MicroPython runs boot.py and main.py from the filesystem root by name.
KEEP_AS_SOURCE = {"boot.py", "main.py"}
# -O3: asserts and line-number tables are left out of the bytecode. A node logs repr() of an
# exception, never a traceback, so line numbers would only take heap (about 4 % of the code).
MPY_CROSS_FLAGS = ("-O3",)
# Every module's source file name, as the bytecode records it: the empty name, which MicroPython
# has built in. A name per module would be one more interned string per module loaded, kept in
# the node's heap for good (about 1 KB over a day's modules), for tracebacks the node never prints.
MPY_SOURCE_NAME = ""


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _app_sources(app_dir: Path) -> list[Path]:
    """Files of the app, relative to app_dir, in a stable order (no caches or hidden files)."""
    return app_sources(app_dir)


def mpy_cross_compile(source: Path, output: Path, source_name: str,
                      march: str | None = None) -> None:
    """Compile one .py to .mpy with the pinned mpy-cross; BuildError with its message on failure."""
    args = [sys.executable, "-m", "mpy_cross", *MPY_CROSS_FLAGS, "-s", MPY_SOURCE_NAME,
            "-o", str(output)]
    if march:
        args.append(f"-march={march}")
    proc = subprocess.run([*args, str(source)], check=False, capture_output=True, text=True)
    if proc.returncode != 0 or not output.exists():
        message = (proc.stderr or proc.stdout).strip()
        raise BuildError(f"mpy-cross failed on {source_name}: {message}")


def compile_app(app_dir: Path, out_dir: Path, *, compile_py: bool = True,
                march: str | None = None, files: list[str] | None = None) -> list[str]:
    """Copy the app into out_dir, compiling .py modules to .mpy; returns the packed paths.

    `files` (relative paths, e.g. from ota.board_manifest.board_files) picks what is packed;
    by default every file of the app is.
    """
    app_dir = Path(app_dir)
    if not app_dir.is_dir():
        raise BuildError(f"app directory {app_dir} does not exist")
    packed = []
    sources = _app_sources(app_dir) if files is None else [Path(name) for name in files]
    for rel in sources:
        name = rel.as_posix()
        source = app_dir / rel
        if compile_py and rel.suffix == ".py" and name not in KEEP_AS_SOURCE:
            name = rel.with_suffix(".mpy").as_posix()
            check_path(name)
            (out_dir / name).parent.mkdir(parents=True, exist_ok=True)
            mpy_cross_compile(source, out_dir / name, rel.as_posix(), march)
        else:
            check_path(name)
            (out_dir / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, out_dir / name)
        packed.append(name)
    if not packed:
        raise BuildError(f"no files to pack in {app_dir}")
    return packed


def stage_release(source: Path, staging_dir: Path, *, version: str, sequence: int,
                  board: list[str], expires: int, created: int | None = None,
                  kind: str = "app", hardware: list[str] | None = None,
                  compile_py: bool = True, march: str | None = None) -> Manifest:
    """Build an unsigned release in staging_dir (manifest.json + files/); returns its manifest.

    `source` is the app directory (kind "app") or the firmware image file (kind "firmware").
    An app directory with board manifests (boards/<board>.manifest) packs the files of the
    manifests of `board` (their union), so a slot gets no other board's files; one without
    packs every file.
    """
    staging_dir = Path(staging_dir)
    if staging_dir.exists() and any(staging_dir.iterdir()):
        raise BuildError(f"staging directory {staging_dir} is not empty")
    picked = None  # every file of the app
    if kind != "firmware" and has_manifests(Path(source)):
        picked = board_files(Path(source), board)  # checked before anything is written
    files_dir = staging_dir / STAGED_FILES
    files_dir.mkdir(parents=True, exist_ok=True)
    if kind == "firmware":
        if not Path(source).is_file():
            raise BuildError(f"firmware image {source} does not exist")
        shutil.copyfile(source, files_dir / FIRMWARE_IMAGE_NAME)
        names = [FIRMWARE_IMAGE_NAME]
    else:
        names = compile_app(Path(source), files_dir, compile_py=compile_py, march=march,
                            files=picked)
    entries = [FileEntry(path=n, size=(files_dir / n).stat().st_size,
                         sha256=sha256_file(files_dir / n)) for n in names]
    try:
        manifest = Manifest.create(version=version, sequence=sequence, board=board,
                                   files=entries, expires=expires, created=created,
                                   kind=kind, hardware=hardware)
    except MalformedManifest as exc:
        raise BuildError(str(exc)) from None
    (staging_dir / STAGED_MANIFEST).write_bytes(manifest.canonical())
    return manifest


def load_staged(staging_dir: Path) -> Manifest:
    """The unsigned manifest of a staged release."""
    path = Path(staging_dir) / STAGED_MANIFEST
    try:
        return Manifest.from_canonical(path.read_bytes(), signed=False)
    except OSError:
        raise BuildError(f"{staging_dir} is not a staged release (no {STAGED_MANIFEST})") from None


def write_bundle(staging_dir: Path, signed: SignedManifest, out_path: Path) -> int:
    """Pack header, signed manifest and the staged files into out_path; returns the bundle size.

    The files go in manifest order (the canonical path order). Every staged file is re-hashed
    while packing, so a file changed after signing is refused.
    """
    manifest = signed.manifest
    data = signed.manifest_bytes
    if len(data) > MAX_MANIFEST_SIZE:
        raise BuildError(f"manifest is {len(data)} bytes; the limit is {MAX_MANIFEST_SIZE}: "
                         "pack fewer files")
    out_path = Path(out_path)
    fd, tmp = tempfile.mkstemp(dir=out_path.parent, prefix=f".{out_path.name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(HEADER.pack(MAGIC, BUNDLE_FORMAT, len(data), bytes.fromhex(signed.key_id),
                                  signed.signature))
            out.write(data)
            for entry in manifest.files:
                _copy_checked(Path(staging_dir) / STAGED_FILES / entry.path, entry, out)
        os.replace(tmp, out_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return HEADER_SIZE + len(data) + manifest.total_size


def _copy_checked(path: Path, entry: FileEntry, out: BinaryIO) -> None:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
            size += len(chunk)
            out.write(chunk)
    if size != entry.size or digest.hexdigest() != entry.sha256:
        raise BuildError(f"staged file {entry.path} changed after the manifest was made")


def _read_exact(stream: BinaryIO, size: int) -> bytes:
    """Up to `size` bytes, fewer only at the end of the stream."""
    parts, left = [], size
    while left:
        chunk = stream.read(left)
        if not chunk:
            break
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def parse_header(header: bytes) -> tuple[int, str, bytes]:
    """(manifest length, signer key id hex, signature) of an 86-byte header; MalformedBundle
    on a bad magic, a format other than 1, or a manifest length outside 2..16384."""
    if len(header) != HEADER_SIZE:
        # judged as a whole, like the node; the message still says when it is not a bundle
        raise FileTruncated("bundle is shorter than its header" + (
            "" if header == MAGIC[:len(header)] or header[:8] == MAGIC
            else " and not a Lamplighter bundle (bad magic)"))
    magic, fmt, length, kid, signature = HEADER.unpack(header)
    if magic != MAGIC:
        raise MalformedBundle("not a Lamplighter bundle (bad magic)")
    if fmt != BUNDLE_FORMAT:
        raise MalformedBundle(f"unsupported bundle format {fmt}")
    if not MIN_MANIFEST_SIZE <= length <= MAX_MANIFEST_SIZE:
        raise MalformedBundle(
            f"manifest length {length} is outside {MIN_MANIFEST_SIZE}..{MAX_MANIFEST_SIZE}")
    return length, kid.hex(), signature


def read_envelope(stream: BinaryIO) -> SignedManifest:
    """Read the bundle header and manifest (unverified); leaves the stream at the first file.

    FileTruncated if the stream ends inside either, MalformedBundle on a bad header.
    """
    length, kid, signature = parse_header(_read_exact(stream, HEADER_SIZE))
    data = _read_exact(stream, length)
    if len(data) != length:
        raise FileTruncated("bundle ends inside the manifest")
    return SignedManifest(manifest_bytes=data, key_id=kid, signature=signature)


@dataclass(frozen=True)
class VerifiedFile:
    """One chunk of a file from a bundle; `last` marks the chunk after which its hash matched."""

    entry: FileEntry
    chunk: bytes
    last: bool


def iter_files(stream: BinaryIO, manifest: Manifest) -> Iterator[VerifiedFile]:
    """Stream the files after the manifest, checking sizes and hashes; refuse trailing bytes.

    FileTruncated when the stream ends inside a file, BadFileHash after a file's last chunk
    (so a consumer writing to a staging area must discard the file on error), FileTooLong
    when a byte follows the last file.
    """
    for entry in manifest.files:
        digest = hashlib.sha256()
        left = entry.size
        while True:
            chunk = stream.read(min(CHUNK, left)) if left else b""
            if left and not chunk:
                raise FileTruncated(f"bundle ends inside {entry.path}")
            digest.update(chunk)
            left -= len(chunk)
            if left == 0:
                if digest.hexdigest() != entry.sha256:
                    raise BadFileHash(f"{entry.path} does not match its SHA-256")
                yield VerifiedFile(entry, chunk, True)
                break
            yield VerifiedFile(entry, chunk, False)
    if stream.read(1):
        raise FileTooLong("bundle is longer than its manifest declares")


def verify_bundle(path: Path, ring: KeyRing, now: float | None = None) -> Manifest:
    """Check a whole bundle: signature (trusted key), expiry (with `now`), every file's hash."""
    with open(path, "rb") as stream:
        manifest = verify_manifest(read_envelope(stream), ring, now)
        for _ in iter_files(stream, manifest):
            pass
    return manifest


def extract_bundle(path: Path, ring: KeyRing, dest: Path, now: float | None = None) -> Manifest:
    """Verify a bundle and unpack its files into dest (created; must not exist yet)."""
    dest = Path(dest)
    if dest.exists():
        raise BundleError(f"{dest} already exists")
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}."))
    try:
        with open(path, "rb") as stream:
            manifest = verify_manifest(read_envelope(stream), ring, now)
            out = None
            for part in iter_files(stream, manifest):
                if out is None:
                    target = tmp / part.entry.path
                    target.parent.mkdir(parents=True, exist_ok=True)
                    out = open(target, "wb")
                out.write(part.chunk)
                if part.last:
                    out.close()
                    out = None
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest
