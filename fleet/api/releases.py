"""Releases: upload a signed bundle (verified before it is kept), list and inspect them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import select

from fleet.api.deps import OPERATOR, ReaderDep, SessionDep, audited
from fleet.audit import AuditEntry, Created
from fleet.core.settings import get_settings
from fleet.models import Release, aware
from fleet.releases import get_release, spool_upload, store_release
from fleet.schemas import ReleaseOut, RowId

router = APIRouter(tags=["updates"])


def _release_out(row: Release) -> ReleaseOut:
    return ReleaseOut(id=row.id or 0, version=row.version, sequence=row.sequence, kind=row.kind,
                      boards=row.boards, expires=row.expires, key_id=row.key_id,
                      bundle_sha256=row.bundle_sha256, bundle_size=row.bundle_size,
                      notes=row.notes, created_at=aware(row.created_at))


@router.post("/releases", response_model=ReleaseOut, status_code=201,
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/octet-stream": {"schema": {"type": "string",
                                                         "format": "binary"}}}}},
             responses={409: {"description": "sequence taken"},
                        413: {"description": "too large"},
                        422: {"description": "signature, key, expiry or hash refused"}})
async def upload_release(request: Request, audit: Annotated[AuditEntry, audited(
                             "release.register", "releases", OPERATOR,
                             Created(Release, "release:{version}"))],
                         session: SessionDep,
                         notes: Annotated[str, Query(max_length=500)] = "") -> ReleaseOut:
    """Upload a signed bundle (`lamplighter release upload`); it is checked before it is kept."""
    upload, sha256, size = await spool_upload(request.stream(), get_settings().max_bundle_bytes)
    # Verifying hashes every file and writes the database: off the event loop.
    release = await run_in_threadpool(store_release, session, upload, sha256, size, notes=notes,
                                      actor=audit.actor)
    return _release_out(release)


@router.get("/releases", response_model=list[ReleaseOut])
def list_releases(_: ReaderDep, session: SessionDep) -> list[ReleaseOut]:
    """Every stored release, newest sequence first."""
    rows = session.execute(select(Release).order_by(Release.sequence.desc())).scalars()
    return [_release_out(r) for r in rows]


@router.get("/releases/{release_id}", response_model=ReleaseOut,
            responses={404: {"description": "no such release"}})
def show_release(release_id: RowId, _: ReaderDep, session: SessionDep) -> ReleaseOut:
    return _release_out(get_release(session, release_id))
