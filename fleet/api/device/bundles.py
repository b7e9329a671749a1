"""Bundle download: a node fetches the release it was offered, resumable by byte range."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, HTTPException
from fastapi.responses import FileResponse
from starlette.responses import MalformedRangeHeader, RangeNotSatisfiable

from fleet.api.deps import DeviceDep, SessionDep
from fleet.releases import stored_bundle
from fleet.schemas import RowId

router = APIRouter(tags=["device"])


@router.get("/releases/{release_id}/bundle",
            responses={200: {"content": {"application/octet-stream": {}}},
                       206: {"description": "the requested byte range"},
                       400: {"description": "malformed Range header"},
                       404: {"description": "no such release"},
                       410: {"description": "its signing key is revoked: never served again"},
                       416: {"description": "range not satisfiable"}})
def download_bundle(release_id: RowId, _: DeviceDep, session: SessionDep,
                    range_: Annotated[str | None, Header(
                        alias="Range", description="bytes=N- to resume")] = None,
                    ) -> FileResponse:
    """The release bundle; send `Range: bytes=N-` to resume a dropped download."""
    path, sha256 = stored_bundle(session, release_id)
    if range_ is not None:
        _check_range(range_, path.stat().st_size)
    # Commit the nonce now: the response streams for as long as the node takes to read it,
    # and an open write transaction would hold the database's write lock all that time.
    session.commit()
    return FileResponse(path, media_type="application/octet-stream",
                        headers={"X-Bundle-SHA256": sha256})


def _check_range(header: str, size: int) -> None:
    """Refuse a Range the file reply would refuse, with the API's error body (its own refusals
    are plain text): 400 malformed, 416 not satisfiable."""
    try:
        FileResponse._parse_range_header(header, size)
    except MalformedRangeHeader as exc:
        raise HTTPException(400, f"Range: {exc.content}") from None
    except RangeNotSatisfiable:
        raise HTTPException(416, f"Range: not satisfiable, the bundle has {size} bytes",
                            headers={"Content-Range": f"bytes */{size}"}) from None
