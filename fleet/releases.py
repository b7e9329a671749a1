"""Trusted release keys and releases: a bundle is stored only if its signature and hashes check."""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from pathlib import Path

from sqlalchemy import func, select
from sqlmodel import Session

from fleet.core.settings import get_settings
from fleet.errors import Conflict, Gone, Invalid, NotFound, TooLarge
from fleet.models import KeyStatement, Release, SigningKey, utcnow
from fleet.rollouts import pause_rollouts_signed_by, revoked_reason, revoked_signer
from ota.bundle import verify_bundle
from ota.errors import OtaError
from ota.keys import KeyRing, key_id, parse_public_key


def key_ring(session: Session) -> KeyRing:
    """The server's key set, as the ota verifier expects it.

    The keys operators trusted (the fleet's base keys) with every stored statement's effect
    (its keys and revocations are written to the rows in the statement's transaction), the keys
    operators revoked on the server only, and as serial the last stored statement's.
    """
    ring = KeyRing(serial=last_serial(session))
    for row in session.execute(select(SigningKey)).scalars():
        if row.public_key:
            ring.add(bytes.fromhex(row.public_key))
        if row.revoked_at is not None or not row.public_key:
            ring.revoked.add(row.key_id)
    return ring


def last_serial(session: Session) -> int:
    """The serial of the last stored key statement (0: none yet)."""
    return session.execute(select(func.max(KeyStatement.serial))).scalar_one() or 0


def trust_key(session: Session, public_key_text: str, name: str) -> SigningKey:
    """Trust a release public key (hex of 32 bytes, or PEM)."""
    try:
        raw = parse_public_key(public_key_text.strip().encode(), "public key")
    except OtaError as exc:
        raise Invalid(str(exc)) from None
    kid = key_id(raw)
    existing = session.execute(
        select(SigningKey).where(SigningKey.key_id == kid)).scalar_one_or_none()
    if existing is not None:
        if existing.revoked_at is not None:
            raise Conflict(f"key {kid} was revoked; it cannot be trusted again")
        return existing
    row = SigningKey(key_id=kid, public_key=raw.hex(), name=name)
    session.add(row)
    session.commit()
    return row


def revoke_key(session: Session, kid: str) -> SigningKey:
    """Stop trusting a key on the server: releases it signed can no longer be uploaded, and the
    active rollouts of those it signed are paused (in the same transaction).

    Nodes are not told: they learn it from a signed revocation statement.
    """
    row = session.execute(select(SigningKey).where(SigningKey.key_id == kid)
                          .with_for_update()).scalar_one_or_none()
    if row is None:
        raise NotFound(f"no trusted key {kid}")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.add(row)
    pause_rollouts_signed_by(session, [kid])
    session.commit()
    return row


_REFUSAL_HINTS = {
    "revoked_key": "; sign the release with a key that is not revoked (`lamplighter release "
                   "keys` lists them) and upload it again",
    "unknown_key": "; trust its public key first (`lamplighter release trust <key>.pub`) or "
                   "sign with a trusted key",
}


def artifact_path(sha256: str) -> Path:
    """Where the bundle with this SHA-256 lives in the artifact store."""
    return get_settings().resolved_artifact_dir / f"{sha256}.llb"


def get_release(session: Session, release_id: int) -> Release:
    """The release with this id; NotFound names it."""
    row = session.get(Release, release_id)
    if row is None:
        raise NotFound(f"no release {release_id}")
    return row


def stored_bundle(session: Session, release_id: int) -> tuple[Path, str]:
    """The path and SHA-256 of a release's bundle in the artifact store (NotFound if missing;
    Gone once its signing key is revoked: the server never hands it out again, by any URL)."""
    release = get_release(session, release_id)
    kid = revoked_signer(session, release)
    if kid is not None:
        raise Gone(f"{revoked_reason(kid)}; it is no longer served")
    path = artifact_path(release.bundle_sha256)
    if not path.exists():
        raise NotFound(f"release {release_id} bundle is missing from the store")
    return path, release.bundle_sha256


async def spool_upload(chunks, limit: int) -> tuple[Path, str, int]:  # type: ignore[no-untyped-def]
    """Write an uploaded body to a temporary file in the artifact store, hashing as it goes."""
    store = get_settings().resolved_artifact_dir
    store.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=store, prefix=".upload-")
    digest, size = hashlib.sha256(), 0
    try:
        with os.fdopen(fd, "wb") as out:
            async for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise TooLarge(f"bundle larger than {limit} bytes")
                digest.update(chunk)
                out.write(chunk)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp), digest.hexdigest(), size


def store_release(session: Session, upload: Path, sha256: str, size: int, *, notes: str,
                  actor: str) -> Release:
    """Verify an uploaded bundle against the trusted keys and keep it; the upload file is consumed.

    Refused (Invalid) with a message that says why: unknown or revoked key, bad signature,
    malformed or expired manifest, a file that does not match its hash, trailing bytes. A
    sequence already used is a Conflict.
    """
    try:
        try:
            manifest = verify_bundle(upload, key_ring(session), now=time.time())
        except OtaError as exc:
            raise Invalid(f"bundle refused: {exc}{_REFUSAL_HINTS.get(exc.reason, '')}"
                          ) from None
        clash = session.execute(select(Release).where(Release.sequence == manifest.sequence)
                                ).scalar_one_or_none()
        if clash is not None:
            raise Conflict(f"sequence {manifest.sequence} is already release "
                           f"{clash.version} (id {clash.id}); sign with a higher one")
        with open(upload, "rb") as f:
            from ota.bundle import read_envelope

            envelope = read_envelope(f).to_bytes().decode("ascii")
        os.replace(upload, artifact_path(sha256))
    finally:
        upload.unlink(missing_ok=True)
    release = Release(version=manifest.version, sequence=manifest.sequence, kind=manifest.kind,
                      boards=list(manifest.board), expires=manifest.expires,
                      key_id=manifest.key_id, envelope=envelope, bundle_sha256=sha256,
                      bundle_size=size, notes=notes, created_by=actor)
    session.add(release)
    session.commit()
    return release
