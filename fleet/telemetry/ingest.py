"""Telemetry ingest: validate a node's whole batch, then store new readings idempotently."""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table, select, text
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session

from fleet.errors import Invalid
from fleet.models import DeviceEvent, Reading
from fleet.telemetry.metrics import CATALOGUE, METRIC_NAMES

log = logging.getLogger("fleet.telemetry")

READING_KEYS = frozenset(("seq", "ts", "m", "v"))
MAX_SEQ = 2**63 - 1
_TABLE: Table = Reading.__table__  # type: ignore[attr-defined]

# The request body as documented in OpenAPI (the handler validates it itself, see BatchRefused).
BATCH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["readings"],
    "properties": {"readings": {
        "type": "array", "minItems": 1, "maxItems": 500,
        "items": {
            "type": "object", "additionalProperties": False,
            "required": ["seq", "ts", "m", "v"],
            "properties": {
                "seq": {"type": "integer", "minimum": 0,
                        "description": "The node's queue sequence number (idempotency key)"},
                "ts": {"type": "number", "description": "Node time of the reading, epoch s UTC"},
                "m": {"type": "string", "enum": list(METRIC_NAMES), "description": "Metric"},
                "v": {"type": "number", "description": "Value in the metric's unit"},
            },
        },
    }},
    "examples": [{"readings": [
        {"seq": 1041, "ts": 1795950000.0, "m": "lux", "v": 12.5},
        {"seq": 1042, "ts": 1795950060.0, "m": "temperature_c", "v": 8.25},
    ]}],
}


class BatchRefused(Invalid):
    """The batch is refused as a whole; `detail` names the reading, the field and the reason."""

    def __init__(self, reason: str, index: int | None = None, seq: object = None,
                 field: str | None = None) -> None:
        where = "" if index is None else f"reading {index}" + (
            f" (seq {seq})" if isinstance(seq, int) and not isinstance(seq, bool) else "") + ": "
        super().__init__({"error": where + reason, "index": index,
                          "seq": seq if isinstance(seq, int) else None, "field": field})

    def __str__(self) -> str:
        return str(self.detail["error"]) if isinstance(self.detail, dict) else self.detail


@dataclass(frozen=True)
class IngestResult:
    """What the node is told: new readings stored, duplicates skipped (same seq, same reading),
    conflicts refused (a seq the server holds with another reading: the stored one stands),
    highest seq received."""

    stored: int
    duplicates: int
    acked_seq: int
    conflicts: list[int] = field(default_factory=list)


MAX_CONFLICTS_SHOWN = 5  # readings compared in full in the device event


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_reading(i: int, item: object, oldest: float, newest: float) -> tuple[int, float, str,
                                                                               float]:
    if not isinstance(item, dict):
        raise BatchRefused("must be an object {seq, ts, m, v}", i)
    seq = item.get("seq")
    if item.keys() != READING_KEYS:
        missing = sorted(READING_KEYS - item.keys())
        extra = sorted(item.keys() - READING_KEYS)
        what = f"missing {', '.join(missing)}" if missing else f"unknown key {', '.join(extra)}"
        raise BatchRefused(f"{what} (a reading is exactly seq, ts, m, v)", i, seq)
    if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq <= MAX_SEQ:
        raise BatchRefused(f"seq must be a non-negative integer, got {seq!r}", i, None, "seq")
    ts, name, value = item["ts"], item["m"], item["v"]
    metric = CATALOGUE.get(name) if isinstance(name, str) else None
    if metric is None:
        raise BatchRefused(f"unknown metric {name!r}; known: {', '.join(METRIC_NAMES)}",
                           i, seq, "m")
    if not _is_number(ts) or not math.isfinite(ts):
        raise BatchRefused(f"ts must be epoch seconds (a finite number), got {ts!r}", i, seq, "ts")
    if ts > newest:
        raise BatchRefused(f"ts {ts} is {ts - time.time():.0f} s in the future (more than the "
                           "allowed clock skew); check the node's clock", i, seq, "ts")
    if ts < oldest:
        raise BatchRefused(f"ts {ts} is older than the {round((time.time() - oldest) / 86400)} "
                           "days the server accepts", i, seq, "ts")
    if not _is_number(value) or not math.isfinite(value):
        raise BatchRefused(f"v must be a finite number, got {value!r}", i, seq, "v")
    if not metric.accepts(value):
        raise BatchRefused(f"{value!r} is outside {name}'s range {metric.range_text()}",
                           i, seq, "v")
    return seq, float(ts), name, float(value)


def parse_batch(body: bytes, *, max_batch: int, max_age_days: int, clock_skew_s: int,
                now: float | None = None) -> list[tuple[int, float, str, float]]:
    """Validate a whole batch body; return (seq, ts, metric, value) per distinct reading.

    Raises BatchRefused on the first problem. A seq repeated with identical content is kept once;
    a seq repeated with different content refuses the batch.
    """
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BatchRefused(f"body is not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.keys() != {"readings"}:
        raise BatchRefused('body must be exactly {"readings": [...]}')
    items = doc["readings"]
    if not isinstance(items, list) or not items:
        raise BatchRefused("readings must be a non-empty list", field="readings")
    if len(items) > max_batch:
        raise BatchRefused(f"{len(items)} readings in one batch; at most {max_batch} are "
                           "accepted — split the batch", field="readings")
    now = time.time() if now is None else now
    oldest, newest = now - max_age_days * 86400, now + clock_skew_s
    seen: dict[int, tuple[int, float, str, float]] = {}
    for i, item in enumerate(items):
        reading = _check_reading(i, item, oldest, newest)
        earlier = seen.get(reading[0])
        if earlier is None:
            seen[reading[0]] = reading
        elif earlier != reading:
            raise BatchRefused("seq repeated in the batch with different content", i,
                               reading[0], "seq")
    return list(seen.values())


# PostgreSQL: the whole batch as six array parameters of one short statement. psycopg parses
# and caches short statements only; a 600-placeholder multi-row INSERT was re-parsed on every
# batch and cost more than all the rest of the request.
_PG_INSERT = text(
    "INSERT INTO reading (device_id, seq, ts, metric, value, received_at) "
    "SELECT :device_id, u.seq, u.ts, u.metric, u.value, :received_at FROM unnest("
    "CAST(:seqs AS BIGINT[]), CAST(:tss AS DOUBLE PRECISION[]), CAST(:metrics AS VARCHAR[]), "
    "CAST(:vals AS DOUBLE PRECISION[])) AS u(seq, ts, metric, value) "
    "ON CONFLICT (device_id, seq) DO NOTHING RETURNING seq")
_SQLITE_INSERT = sqlite_insert(_TABLE).on_conflict_do_nothing(
    index_elements=["device_id", "seq"]).returning(_TABLE.c.seq)


def store_batch(session: Session, device_id: int,
                readings: list[tuple[int, float, str, float]]) -> IngestResult:
    """Insert the readings the server does not have yet, and commit (with the request's nonce).

    (device_id, seq) is the key: INSERT … ON CONFLICT DO NOTHING makes a resent or overlapping
    batch store only what is new. One statement per batch, no ORM objects.
    """
    received_at = time.time()
    if session.get_bind().dialect.name == "postgresql":
        seqs, tss, metrics, vals = (list(col) for col in zip(*readings, strict=True))
        result = session.execute(_PG_INSERT, {
            "device_id": device_id, "received_at": received_at, "seqs": seqs, "tss": tss,
            "metrics": metrics, "vals": vals})
    else:
        # executemany + RETURNING: SQLAlchemy sends one multi-row INSERT ("insertmanyvalues")
        # from a cached statement, far cheaper than compiling .values(rows) per batch.
        result = session.execute(_SQLITE_INSERT, [
            {"device_id": device_id, "seq": seq, "ts": ts, "metric": metric, "value": value,
             "received_at": received_at} for seq, ts, metric, value in readings])
    new = {row[0] for row in result.all()}
    conflicts = _conflicts(session, device_id, [r for r in readings if r[0] not in new])
    session.commit()
    return IngestResult(stored=len(new), duplicates=len(readings) - len(new) - len(conflicts),
                        acked_seq=max(r[0] for r in readings), conflicts=conflicts)


def _conflicts(session: Session, device_id: int,
               resent: list[tuple[int, float, str, float]]) -> list[int]:
    """The seqs of `resent` (readings the server already held by seq) whose stored reading
    differs: the node reused a seq (a reset queue, a bug). The stored reading stands; the node is
    told, and a `telemetry_conflict` device event (in the batch's transaction) and a warning
    record it. A true duplicate (same content) is the ordinary resend after a lost reply."""
    if not resent:
        return []
    held = {row.seq: (row.seq, row.ts, row.metric, row.value) for row in session.execute(
        select(_TABLE.c.seq, _TABLE.c.ts, _TABLE.c.metric, _TABLE.c.value).where(
            _TABLE.c.device_id == device_id, _TABLE.c.seq.in_([r[0] for r in resent])))}
    differing = [(held[r[0]], r) for r in resent if r[0] in held and held[r[0]] != r]
    if not differing:
        return []
    seqs = sorted(sent[0] for _, sent in differing)

    def shown(r: tuple[int, float, str, float]) -> dict[str, Any]:
        return {"ts": r[1], "m": r[2], "v": r[3]}

    session.add(DeviceEvent(device_id=device_id, kind="telemetry_conflict", detail={
        "count": len(seqs), "seqs": seqs[:100],
        "readings": [{"seq": sent[0], "stored": shown(old), "sent": shown(sent)}
                     for old, sent in differing[:MAX_CONFLICTS_SHOWN]]}))
    log.warning("telemetry: device %s resent %d seq(s) with other content (first %s); the "
                "stored readings stand", device_id, len(seqs), seqs[0])
    return seqs
