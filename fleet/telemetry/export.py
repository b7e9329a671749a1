"""CSV and Parquet exports of readings, streamed chunk by chunk from a server-side cursor."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import Engine

from fleet.models import Reading
from fleet.telemetry.metrics import unit_of
from fleet.telemetry.query import COLUMNS, ReadingFilter, iso_utc, readings_select

# Rows fetched per round trip = rows per Parquet row group. A fetched row with its node's
# identity costs about 1.2 kB of Python objects, so one export holds about 6 MB at most.
CHUNK_ROWS = 5_000

PARQUET_SCHEMA = pa.schema([
    ("device_id", pa.string()), ("pole_id", pa.string()), ("district", pa.string()),
    ("group", pa.string()), ("ts", pa.timestamp("ms", tz="UTC")), ("metric", pa.string()),
    ("value", pa.float64()), ("unit", pa.string()), ("seq", pa.int64()),
])


def row_chunks(engine: Engine, flt: ReadingFilter, chunk_rows: int = CHUNK_ROWS,
               ) -> Iterator[list[Any]]:
    """The filtered readings, oldest first, `chunk_rows` at a time.

    A server-side cursor on PostgreSQL (stream_results) and SQLite's lazy cursor keep at most one
    chunk in this process. The connection is the generator's own, so it outlives the request's
    session and is released when the stream ends or the client goes away.
    """
    stmt = readings_select(flt).order_by(Reading.ts, Reading.device_id, Reading.seq)
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=chunk_rows).execute(stmt)
        yield from result.partitions(chunk_rows)


def csv_chunks(engine: Engine, flt: ReadingFilter, chunk_rows: int = CHUNK_ROWS,
               ) -> Iterator[bytes]:
    """UTF-8 CSV with a header row; ts is ISO 8601 UTC; one encoded piece per chunk of rows."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    yield buf.getvalue().encode()
    for chunk in row_chunks(engine, flt, chunk_rows):
        buf.seek(0)
        buf.truncate()
        writer.writerows((r.uid, r.pole_id, r.district, r.group_name, iso_utc(r.ts), r.metric,
                          repr(r.value), unit_of(r.metric), r.seq) for r in chunk)
        yield buf.getvalue().encode()


class _DrainableSink(io.RawIOBase):
    """A write-only byte sink whose contents are taken away after each row group."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._pos = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        piece = bytes(data)
        self._parts.append(piece)
        self._pos += len(piece)
        return len(piece)

    def tell(self) -> int:
        return self._pos

    def drain(self) -> bytes:
        out = b"".join(self._parts)
        self._parts.clear()
        return out


def _arrow_chunk(chunk: list[Any]) -> pa.Table:
    return pa.Table.from_pydict({
        "device_id": [r.uid for r in chunk], "pole_id": [r.pole_id for r in chunk],
        "district": [r.district for r in chunk], "group": [r.group_name for r in chunk],
        "ts": [round(r.ts * 1000) for r in chunk], "metric": [r.metric for r in chunk],
        "value": [r.value for r in chunk], "unit": [unit_of(r.metric) for r in chunk],
        "seq": [r.seq for r in chunk],
    }, schema=PARQUET_SCHEMA)


def parquet_chunks(engine: Engine, flt: ReadingFilter, chunk_rows: int = CHUNK_ROWS,
                   ) -> Iterator[bytes]:
    """A Parquet file written one row group per chunk; each group's bytes leave at once.

    Parquet is written front to back (the footer with the row-group offsets comes last), so
    the writer needs only `tell()`, not seeking: memory stays at one chunk of rows as Python
    tuples, the same rows as Arrow columns and one encoded row group, whatever the export size.
    """
    sink = _DrainableSink()
    writer = pq.ParquetWriter(sink, PARQUET_SCHEMA, compression="zstd")
    try:
        for chunk in row_chunks(engine, flt, chunk_rows):
            writer.write_table(_arrow_chunk(chunk), row_group_size=chunk_rows)
            yield sink.drain()
    finally:
        writer.close()
    yield sink.drain()
