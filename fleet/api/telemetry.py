"""Telemetry for the data team: metric catalogue, readings, aggregates, exports, live stream."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query
from fastapi.responses import StreamingResponse

from fleet.api.deps import DataReaderDep, SessionDep
from fleet.core.db import get_engine
from fleet.errors import Invalid
from fleet.schemas import AggregateReply, ReadingPage
from fleet.telemetry.export import csv_chunks, parquet_chunks
from fleet.telemetry.metrics import catalogue_json
from fleet.telemetry.query import (
    AGGREGATE_BY,
    MAX_AGGREGATE_ROWS,
    MAX_PAGE,
    BadFilter,
    ReadingFilter,
    aggregate,
    parse_bucket,
    query_readings,
)
from fleet.telemetry.stream import sse_events, start_cursor

router = APIRouter(prefix="/telemetry", tags=["telemetry"])


def reading_filter(
    device: Annotated[list[str] | None, Query(description="Node uid; repeat for several")] = None,
    group: str | None = None, district: str | None = None,
    min_lat: Annotated[float | None, Query(ge=-90, le=90)] = None,
    min_lon: Annotated[float | None, Query(ge=-180, le=180)] = None,
    max_lat: Annotated[float | None, Query(ge=-90, le=90)] = None,
    max_lon: Annotated[float | None, Query(ge=-180, le=180)] = None,
    metric: Annotated[list[str] | None, Query(description="Metric; repeat for several")] = None,
    start: Annotated[str | None, Query(description="From (inclusive): ISO 8601 or epoch s")] = None,
    end: Annotated[str | None, Query(description="Until (exclusive): ISO 8601 or epoch s")] = None,
) -> ReadingFilter:
    """The filters every read endpoint shares (a BadFilter is a 422)."""
    return ReadingFilter.build(devices=device, group=group, district=district,
                               min_lat=min_lat, min_lon=min_lon, max_lat=max_lat,
                               max_lon=max_lon, metrics=metric, start=start, end=end)


Filter = Annotated[ReadingFilter, Depends(reading_filter)]
_READ_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing or unknown API token"},
    403: {"description": "the token's role may not read telemetry"},
    422: {"description": "bad filter"},
}


@router.get("/metrics", responses=_READ_RESPONSES)
def metrics(_: DataReaderDep) -> list[dict[str, Any]]:
    """The metric catalogue: name, unit, accepted range, meaning and sensor."""
    return catalogue_json()


@router.get("/readings", response_model=ReadingPage, responses=_READ_RESPONSES)
def readings(flt: Filter, _: DataReaderDep, session: SessionDep,
             limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1000,
             after: Annotated[str | None, Query(description="Cursor from `next`")] = None,
             ) -> dict[str, Any]:
    """Readings matching the filters, oldest first, one page at a time (keyset pagination)."""
    rows, nxt = query_readings(session, flt, limit=limit, after=after)
    return {"readings": rows, "next": nxt}


@router.get("/aggregate", response_model=AggregateReply, responses=_READ_RESPONSES)
def aggregates(flt: Filter, _: DataReaderDep, session: SessionDep,
               bucket: Annotated[str, Query(description="Bucket width: 30s, 15m, 1h, 1d …")]
               = "1h",
               by: Annotated[str, Query(pattern="^(none|device|group)$",
                                        description="Also split buckets per node or group")]
               = "none",
               limit: Annotated[int, Query(ge=1, le=MAX_AGGREGATE_ROWS)] = MAX_AGGREGATE_ROWS,
               ) -> dict[str, Any]:
    """min/avg/max/count of each metric per time bucket, computed in the database."""
    assert by in AGGREGATE_BY
    bucket_s = parse_bucket(bucket)
    rows, truncated = aggregate(session, flt, bucket_s=bucket_s, by=by, limit=limit)
    return {"bucket_s": bucket_s, "by": by, "rows": rows, "truncated": truncated}


def _download(chunks: Iterator[bytes], media_type: str, filename: str) -> StreamingResponse:
    return StreamingResponse(chunks, media_type=media_type, headers={
        "Content-Disposition": f'attachment; filename="{filename}"'})


@router.get("/export.csv", response_class=StreamingResponse, responses={
    **_READ_RESPONSES, 200: {"content": {"text/csv": {}}, "description": "CSV, header row"}})
def export_csv(flt: Filter, _: DataReaderDep) -> StreamingResponse:
    """All matching readings as CSV (streamed; ts in ISO 8601 UTC)."""
    return _download(csv_chunks(get_engine(), flt), "text/csv; charset=utf-8",
                     "readings.csv")


@router.get("/export.parquet", response_class=StreamingResponse, responses={
    **_READ_RESPONSES,
    200: {"content": {"application/vnd.apache.parquet": {}}, "description": "Parquet file"}})
def export_parquet(flt: Filter, _: DataReaderDep) -> StreamingResponse:
    """All matching readings as Parquet (streamed row group by row group; ts timestamp[ms, UTC])."""
    return _download(parquet_chunks(get_engine(), flt), "application/vnd.apache.parquet",
                     "readings.parquet")


@router.get("/stream", response_class=StreamingResponse, responses={
    **_READ_RESPONSES, 200: {"content": {"text/event-stream": {}},
                             "description": "Server-sent events, one `reading` event each"}})
def stream(flt: Filter, _: DataReaderDep,
           last_event_id: Annotated[str | None, Header(description="Resume after this event")]
           = None,
           max_events: Annotated[int | None, Query(ge=1, le=1_000_000,
                                                   description="End after this many")] = None,
           timeout_s: Annotated[float | None, Query(gt=0, le=86400,
                                                    description="End after this long")] = None,
           poll_s: Annotated[float, Query(ge=0.2, le=60)] = 1.0,
           heartbeat_s: Annotated[float, Query(ge=1, le=300)] = 15.0) -> StreamingResponse:
    """New readings as they arrive (server-sent events); resume with Last-Event-ID."""
    try:
        cursor = start_cursor(last_event_id, time.time())
    except BadFilter as exc:
        raise Invalid(f"Last-Event-ID: {exc}") from None
    events = sse_events(get_engine(), flt, cursor=cursor, max_events=max_events,
                        timeout_s=timeout_s, poll_s=poll_s, heartbeat_s=heartbeat_s)
    return StreamingResponse(events, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
