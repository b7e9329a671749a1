"""Telemetry ingest: a node uploads a batch of readings, stored all or nothing, idempotently."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from fleet.auth import authenticated_device, signed_headers
from fleet.core.db import get_engine
from fleet.core.settings import get_settings
from fleet.schemas import IngestReply
from fleet.telemetry.ingest import BATCH_SCHEMA, parse_batch, store_batch

router = APIRouter(tags=["device"])


@router.post(
    "/telemetry", response_model=IngestReply,
    openapi_extra={"requestBody": {"required": True,
                                   "content": {"application/json": {"schema": BATCH_SCHEMA}}}},
    responses={401: {"description": "bad or missing device signature"},
               403: {"description": "device decommissioned"},
               422: {"description": "batch refused, nothing stored; detail names the reading"}})
async def ingest(request: Request) -> Response:
    """Store a batch of readings: all or nothing, idempotent by (node, seq).

    A seq resent with the same reading is a duplicate; with a different one, a conflict (the
    stored reading stands; the reply lists its seq and a device event records it).

    The signature headers are checked on the event loop; the rest (signature, nonce, the
    batch's validation and insert) runs in one thread-pool call and one transaction.
    """
    signed_headers(request)
    raw = await request.body()
    reply = await run_in_threadpool(_ingest, request, raw)
    return Response(reply.model_dump_json(), media_type="application/json")


def _ingest(request: Request, raw: bytes) -> IngestReply:
    settings = get_settings()
    with Session(get_engine(), expire_on_commit=False) as session:
        ident = authenticated_device(request, raw, session)
        readings = parse_batch(raw, max_batch=settings.telemetry_max_batch,
                               max_age_days=settings.telemetry_max_age_days,
                               clock_skew_s=settings.clock_skew_s)
        assert ident.device.id is not None
        result = store_batch(session, ident.device.id, readings)
    return IngestReply(stored=result.stored, duplicates=result.duplicates,
                       acked_seq=result.acked_seq, conflicts=result.conflicts)
