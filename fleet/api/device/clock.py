"""The time, for a node whose clock is unset: a reply signed for the node's own request."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from fleet.auth import device_without_clock, signed_headers
from fleet.core.db import get_engine

router = APIRouter(tags=["device"])


class ServerTime(BaseModel):
    time: int = Field(description="Server time, UTC seconds (also in the signed X-Server-Time)")


@router.post("/time", response_model=ServerTime,
             responses={401: {"description": "bad or missing device signature"},
                        403: {"description": "device decommissioned"}})
async def server_time(request: Request) -> ServerTime:
    """The server's time for a node that has no clock yet (a cold-booted ESP32 without NTP).

    The request is signed with X-Timestamp 0 and is not checked for staleness or replay (it
    changes nothing); the reply is signed for its nonce under the device key, so the node
    takes the time only from this server, for this request.
    """
    signed_headers(request)
    raw = await request.body()
    await run_in_threadpool(_check, request, raw)
    return ServerTime(time=int(time.time()))


def _check(request: Request, raw: bytes) -> None:
    with Session(get_engine()) as session:
        device_without_clock(request, raw, session)
