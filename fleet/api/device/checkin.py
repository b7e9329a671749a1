"""Check-in: a node reports its state; the reply says what it should do (two paths, one route)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from fleet.api.deps import refuse_unknown_query
from fleet.auth import authenticated_device, sign_replies_with, signed_headers, signed_path
from fleet.checkin import handle_checkin
from fleet.core.db import get_engine
from fleet.schemas import CheckIn, CheckInReply, inline_json_schema

router = APIRouter(tags=["device"])


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
    refuse_unknown_query(request, known=frozenset())  # served outside the router's dependency
    raw = await request.body()
    try:
        report = CheckIn.model_validate_json(raw)
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        raise RequestValidationError(errors, body=raw) from None
    quick = request.app.state.quick_checkin
    reply = None
    if quick is not None:
        settled = await quick.attempt(request.method, signed_path(request), signed, raw, report)
        if settled is not None:
            reply, secret = settled
            sign_replies_with(request, secret)
    if reply is None:
        reply = await run_in_threadpool(_full_checkin, request, raw, report)
    return Response(reply.model_dump_json(), media_type="application/json")


def _full_checkin(request: Request, raw: bytes, report: CheckIn) -> CheckInReply:
    """Every check-in the quick path leaves: authenticated and answered in one transaction."""
    with Session(get_engine(), expire_on_commit=False) as session:
        ident = authenticated_device(request, raw, session)
        return handle_checkin(session, ident, report)
