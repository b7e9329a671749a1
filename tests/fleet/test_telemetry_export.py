"""Telemetry exports: CSV and Parquet parse back to the stored rows and stream in bounded memory."""

from __future__ import annotations

import csv
import io
import time
import tracemalloc
from datetime import datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import select

from fleet.core import db as fleet_db
from fleet.models import Device
from fleet.telemetry.export import csv_chunks, parquet_chunks
from fleet.telemetry.ingest import store_batch
from fleet.telemetry.metrics import CATALOGUE
from fleet.telemetry.query import COLUMNS, ReadingFilter

PATH = "/device/v1/telemetry"
METRICS = list(CATALOGUE)


def post_readings(register, device_call, n: int, **fields) -> tuple[dict, list[dict]]:
    creds = register(**fields)
    base = int(time.time()) - 3600
    batch = []
    for s in range(n):
        metric = CATALOGUE[METRICS[s % len(METRICS)]]
        value = round(metric.low + (metric.high - metric.low) / (s + 2), 0 if metric.integer else 3)
        batch.append({"seq": s, "ts": base + 7 * s + 0.25 * (s % 4), "m": metric.name, "v": value})
    assert device_call(creds, PATH, {"readings": batch}).json()["stored"] == n
    return creds, batch


def expected_rows(creds: dict, batch: list[dict], group: str, district: str) -> list[tuple]:
    return [(creds["device_id"], creds["pole_id"], district, group, r["ts"], r["m"],
             float(r["v"]), CATALOGUE[r["m"]].unit, r["seq"]) for r in batch]


def test_csv_export_parses_back_to_the_stored_rows(register, device_call, client, tokens):
    creds, batch = post_readings(register, device_call, 40, group="west", district="docks")
    post_readings(register, device_call, 5, group="east", district="docks")
    resp = client.get("/api/v1/telemetry/export.csv?group=west", headers=tokens["reader"])
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/csv")
    assert "readings.csv" in resp.headers["content-disposition"]
    reader = csv.reader(io.StringIO(resp.text))
    assert tuple(next(reader)) == COLUMNS
    got = [(d, p, di, g, datetime.fromisoformat(ts).timestamp(), m, float(v), u, int(s))
           for d, p, di, g, ts, m, v, u, s in reader]
    assert got == expected_rows(creds, batch, "west", "docks")
    assert all(row_ts.endswith("Z") for row_ts in resp.text.splitlines()[1].split(",")[4:5])


def test_parquet_export_parses_back_with_units_and_utc_timestamps(register, device_call,
                                                                   client, tokens):
    creds, batch = post_readings(register, device_call, 30, group="west", district="docks")
    resp = client.get(f"/api/v1/telemetry/export.parquet?device={creds['device_id']}",
                      headers=tokens["operator"])
    assert resp.status_code == 200
    table = pq.read_table(io.BytesIO(resp.content))
    assert table.column_names == list(COLUMNS)
    assert table.schema.field("ts").type == pa.timestamp("ms", tz="UTC")
    got = [(r["device_id"], r["pole_id"], r["district"], r["group"], r["ts"].timestamp(),
            r["metric"], r["value"], r["unit"], r["seq"]) for r in table.to_pylist()]
    assert got == expected_rows(creds, batch, "west", "docks")


def test_export_honours_time_and_metric_filters(register, device_call, client, tokens):
    creds, batch = post_readings(register, device_call, 36)
    start, end = batch[5]["ts"], batch[30]["ts"]
    resp = client.get(f"/api/v1/telemetry/export.parquet?metric=lux&metric=energy_wh"
                      f"&start={start}&end={end}", headers=tokens["reader"])
    table = pq.read_table(io.BytesIO(resp.content))
    want = [r["seq"] for r in batch
            if r["m"] in ("lux", "energy_wh") and start <= r["ts"] < end]
    assert table.column("seq").to_pylist() == want and want


def test_empty_export_is_still_a_valid_file(client, tokens):
    csv_resp = client.get("/api/v1/telemetry/export.csv", headers=tokens["reader"])
    assert csv_resp.text.strip() == ",".join(COLUMNS)
    pq_resp = client.get("/api/v1/telemetry/export.parquet", headers=tokens["reader"])
    assert pq.read_table(io.BytesIO(pq_resp.content)).num_rows == 0


def test_technician_cannot_export(client, tokens):
    resp = client.get("/api/v1/telemetry/export.parquet", headers=tokens["technician"])
    assert resp.status_code == 403


BIG = 50_000


def _consume_peak(chunks) -> tuple[int, int]:
    """Bytes produced and peak traced memory while draining a streaming export."""
    tracemalloc.start()
    total = 0
    try:
        for piece in chunks:
            total += len(piece)
        return total, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.slow
def test_big_export_streams_in_bounded_memory(register, session):
    creds = register()
    device = session.execute(select(Device).where(Device.uid == creds["device_id"])).scalar_one()
    base = time.time() - 7200
    for start in range(0, BIG, 5000):
        store_batch(session, device.id, [(s, base + s * 0.1, "lux", float(s % 1000))
                                         for s in range(start, start + 5000)])
    engine = fleet_db.get_engine()
    flt = ReadingFilter()
    csv_bytes, csv_peak = _consume_peak(csv_chunks(engine, flt, chunk_rows=2000))
    pq_bytes, pq_peak = _consume_peak(parquet_chunks(engine, flt, chunk_rows=2000))
    # A chunk of 2k rows plus its encoded bytes stays within a few MB, whatever the total.
    assert csv_bytes > 3_000_000 and csv_peak < 5_000_000, (csv_bytes, csv_peak)
    assert pq_bytes > 100_000 and pq_peak < 5_000_000, (pq_bytes, pq_peak)
    # The same export fetched as one chunk: what holding the whole result would cost.
    whole = _consume_peak(csv_chunks(engine, flt, chunk_rows=BIG))[1]
    assert whole > 4 * csv_peak, (whole, csv_peak)
