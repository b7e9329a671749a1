"""Bundle download: a node fetches the release it was offered, resumable by byte range."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import FileResponse

from fleet.api.deps import DeviceDep, SessionDep
from fleet.releases import stored_bundle
from fleet.schemas import RowId

router = APIRouter(tags=["device"])


@router.get("/releases/{release_id}/bundle",
            responses={200: {"content": {"application/octet-stream": {}}},
                       206: {"description": "the requested byte range"},
                       404: {"description": "no such release"},
                       410: {"description": "its signing key is revoked: never served again"},
                       416: {"description": "range not satisfiable"}})
def download_bundle(release_id: RowId, _: DeviceDep, session: SessionDep) -> FileResponse:
    """The release bundle; send `Range: bytes=N-` to resume a dropped download."""
    path, sha256 = stored_bundle(session, release_id)
    # Commit the nonce now: the response streams for as long as the node takes to read it,
    # and an open write transaction would hold the database's write lock all that time.
    session.commit()
    return FileResponse(path, media_type="application/octet-stream",
                        headers={"X-Bundle-SHA256": sha256})
