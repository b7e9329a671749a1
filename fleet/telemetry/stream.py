"""Live stream of new readings as server-sent events, resumable and stateless across processes."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
from sqlalchemy import Engine, tuple_

from fleet.models import Reading
from fleet.telemetry.query import (
    ReadingFilter,
    decode_cursor,
    encode_cursor,
    reading_dict,
    readings_select,
)

# A reading becomes visible to the stream SETTLE_S after the server stored it. Ingest stamps
# received_at just before its short INSERT+COMMIT, so a transaction that commits late cannot
# slip in behind a cursor that has already moved past its received_at.
SETTLE_S = 1.0
POLL_ROWS = 500


def start_cursor(last_event_id: str | None, now: float) -> tuple[float, int, int]:
    """Where a stream starts: after the event the client last saw, else at the present.

    Raises BadFilter for an id this server did not hand out.
    """
    if last_event_id:
        return decode_cursor(last_event_id, (float, int, int))
    return (now, 0, 0)


def poll(engine: Engine, flt: ReadingFilter, cursor: tuple[float, int, int], now: float,
         limit: int = POLL_ROWS) -> list[Any]:
    """Readings stored after `cursor` and settled, in (received_at, node, seq) order."""
    key = (Reading.received_at, Reading.device_id, Reading.seq)
    # The plain bound on received_at lets the database use its index; the row comparison
    # alone would not (there is no index over all three columns).
    stmt = (readings_select(flt).where(Reading.received_at >= cursor[0],
                                       tuple_(*key) > tuple_(*cursor))
            .where(Reading.received_at <= now - SETTLE_S).order_by(*key).limit(limit))
    with engine.connect() as conn:
        return list(conn.execute(stmt).all())


def sse_event(row: Any) -> tuple[str, tuple[float, int, int]]:
    """One `reading` event; its id is the resume cursor."""
    cursor = (row.received_at, row.device_id, row.seq)
    data = dict(reading_dict(row), received_at=row.received_at)
    text = (f"id: {encode_cursor(*cursor)}\nevent: reading\n"
            f"data: {json.dumps(data, ensure_ascii=False)}\n\n")
    return text, cursor


async def sse_events(engine: Engine, flt: ReadingFilter, *, cursor: tuple[float, int, int],
                     max_events: int | None, timeout_s: float | None, poll_s: float,
                     heartbeat_s: float) -> AsyncIterator[str]:
    """Server-sent events of new readings until max_events, timeout_s or the client leaves.

    Every process answers from the database alone: the position is the event id (a cursor over
    received_at, node and seq) that the client sends back as Last-Event-ID to resume.
    """
    started = time.monotonic()
    sent = 0
    last_write = started
    yield f"retry: {int(poll_s * 1000)}\n: stream open\n\n"
    while True:
        batch_limit = POLL_ROWS if max_events is None else min(POLL_ROWS, max_events - sent)
        rows = await anyio.to_thread.run_sync(poll, engine, flt, cursor, time.time(),
                                              batch_limit)
        for row in rows:
            text, cursor = sse_event(row)
            sent += 1
            yield text
        now = time.monotonic()
        if rows:
            last_write = now
        if max_events is not None and sent >= max_events:
            return
        if timeout_s is not None and now - started >= timeout_s:
            yield ": timeout\n\n"
            return
        if now - last_write >= heartbeat_s:
            last_write = now
            yield f": heartbeat {int(time.time())}\n\n"
        if len(rows) < batch_limit:
            await anyio.sleep(poll_s)

