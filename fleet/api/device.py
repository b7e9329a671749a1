"""Device-facing API: enrollment, check-in (and, in sibling modules, telemetry and downloads)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse
from pydantic import ValidationError
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from fleet.api.deps import DeviceDep, SessionDep
from fleet.auth import authenticated_device, signed_headers, signed_path
from fleet.checkin import handle_checkin
from fleet.core.db import get_engine
from fleet.registry import redeem_enrollment
from fleet.releases import stored_bundle
from fleet.schemas import (
    CheckIn,
    CheckInReply,
    DeviceCredentials,
    EnrollRequest,
    RowId,
    inline_json_schema,
)

router = APIRouter(prefix="/device/v1", tags=["device"])


@router.post("/enroll", response_model=DeviceCredentials,
             responses={404: {"description": "unknown code"}, 409: {"description": "code used"},
                        410: {"description": "code expired"}})
def enroll(body: EnrollRequest, session: SessionDep) -> DeviceCredentials:
    """A factory-imaged node exchanges its one-time enrollment code for its identity."""
    return redeem_enrollment(session, body.code)


@router.post("/checkin", response_model=CheckInReply,
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/json": {"schema": inline_json_schema(CheckIn)}}}},
             responses={401: {"description": "bad or missing device signature"},
                        403: {"description": "device decommissioned"},
                        422: {"description": "a field out of range; detail names it"}})
async def checkin(request: Request) -> Response:
    """Report the node's state; the reply carries configuration, commands and the next interval.

    The busiest route: it reads and validates its own body (signature headers first, so a
    stranger learns nothing from a 422) and answers a plain check-in without a thread hop.
    """
    signed = signed_headers(request)
    raw = await request.body()
    try:
        report = CheckIn.model_validate_json(raw)
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        raise RequestValidationError(errors, body=raw) from None
    quick = request.app.state.quick_checkin
    reply = None
    if quick is not None:
        reply = await quick.attempt(request.method, signed_path(request), signed, raw, report)
    if reply is None:
        reply = await run_in_threadpool(_full_checkin, request, raw, report)
    return Response(reply.model_dump_json(), media_type="application/json")


def _full_checkin(request: Request, raw: bytes, report: CheckIn) -> CheckInReply:
    """Every check-in the quick path leaves: authenticated and answered in one transaction."""
    with Session(get_engine(), expire_on_commit=False) as session:
        ident = authenticated_device(request, raw, session)
        return handle_checkin(session, ident.device, report)


@router.get("/releases/{release_id}/bundle",
            responses={200: {"content": {"application/octet-stream": {}}},
                       206: {"description": "the requested byte range"},
                       404: {"description": "no such release"},
                       416: {"description": "range not satisfiable"}})
def download_bundle(release_id: RowId, _: DeviceDep,
                    session: SessionDep) -> FileResponse:
    """The release bundle; send `Range: bytes=N-` to resume a dropped download."""
    path, sha256 = stored_bundle(session, release_id)
    # Commit the nonce now: the response streams for as long as the node takes to read it,
    # and an open write transaction would hold the database's write lock all that time.
    session.commit()
    return FileResponse(path, media_type="application/octet-stream",
                        headers={"X-Bundle-SHA256": sha256})
