"""Reading queries for the data team: filters, keyset-paginated reads and SQL aggregates."""

from __future__ import annotations

import base64
import binascii
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Float, Integer, Select, cast, func, select, tuple_
from sqlmodel import Session

from fleet.errors import Invalid
from fleet.models import Device, Reading
from fleet.telemetry.metrics import CATALOGUE, METRIC_NAMES, unit_of

MAX_PAGE = 10_000
MAX_AGGREGATE_ROWS = 10_000
# "+01:00" sent unencoded in a URL arrives as " 01:00": put the plus sign back.
_LOST_PLUS_RE = re.compile(r"(\d\d:\d\d(?::\d\d(?:\.\d+)?)?) (\d\d:?\d\d)$")
_BUCKET_RE = re.compile(r"^(\d+)(s|m|h|d)$")
_BUCKET_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
AGGREGATE_BY = ("none", "device", "group")


class BadFilter(Invalid):
    """A query parameter the server cannot use; the message says which and why."""


def parse_time(text: str, name: str) -> float:
    """Epoch seconds from ISO 8601 (naive means UTC) or from a plain epoch number."""
    try:
        value = float(text)
    except ValueError:
        try:
            cleaned = _LOST_PLUS_RE.sub(r"\1+\2", text.strip())
            parsed = datetime.fromisoformat(cleaned.replace("z", "Z"))
        except ValueError:
            raise BadFilter(f"{name}={text!r} is neither ISO 8601 (2026-11-24T18:00:00Z) "
                            "nor epoch seconds") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.timestamp()
    if not math.isfinite(value):
        raise BadFilter(f"{name} must be a finite epoch time")
    return value


def iso_utc(ts: float) -> str:
    """ISO 8601 UTC with milliseconds, e.g. 2026-11-24T18:00:00.000Z."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def parse_bucket(text: str) -> int:
    """Bucket width in seconds from 30s, 5m, 1h, 1d … (at least 1 s, at most 366 d)."""
    match = _BUCKET_RE.match(text.strip())
    if not match:
        raise BadFilter(f"bucket={text!r}: use a number and a unit s, m, h or d (e.g. 15m, 1h)")
    seconds = int(match.group(1)) * _BUCKET_UNITS[match.group(2)]
    if not 1 <= seconds <= 366 * 86400:
        raise BadFilter("bucket must be between 1s and 366d")
    return seconds


@dataclass(frozen=True)
class ReadingFilter:
    """Which readings a query, export or stream covers (all given conditions must hold)."""

    devices: tuple[str, ...] = ()
    group: str | None = None
    district: str | None = None
    bbox: tuple[float, float, float, float] | None = None  # min_lat, min_lon, max_lat, max_lon
    metrics: tuple[str, ...] = ()
    start: float | None = None  # inclusive, epoch s
    end: float | None = None  # exclusive, epoch s

    @classmethod
    def build(cls, *, devices: list[str] | None = None, group: str | None = None,
              district: str | None = None, min_lat: float | None = None,
              min_lon: float | None = None, max_lat: float | None = None,
              max_lon: float | None = None, metrics: list[str] | None = None,
              start: str | None = None, end: str | None = None) -> ReadingFilter:
        """Validate raw query parameters into a filter (raises BadFilter)."""
        corners = (min_lat, min_lon, max_lat, max_lon)
        bbox = None
        if any(c is not None for c in corners):
            if any(c is None for c in corners):
                raise BadFilter("a bounding box needs all of min_lat, min_lon, max_lat, max_lon")
            bbox = (float(min_lat), float(min_lon), float(max_lat), float(max_lon))  # type: ignore[arg-type]
            if bbox[0] > bbox[2] or bbox[1] > bbox[3]:
                raise BadFilter("bounding box: min_lat must be ≤ max_lat and min_lon ≤ max_lon")
        unknown = [m for m in metrics or () if m not in CATALOGUE]
        if unknown:
            raise BadFilter(f"unknown metric {', '.join(unknown)}; known: "
                            f"{', '.join(METRIC_NAMES)}")
        t0 = parse_time(start, "start") if start else None
        t1 = parse_time(end, "end") if end else None
        if t0 is not None and t1 is not None and t1 <= t0:
            raise BadFilter("end must be after start")
        return cls(devices=tuple(devices or ()), group=group or None,
                   district=district or None, bbox=bbox, metrics=tuple(metrics or ()),
                   start=t0, end=t1)

    def apply(self, stmt: Select[Any]) -> Select[Any]:
        """Add this filter's conditions to a statement that joins reading and device."""
        if self.devices:
            stmt = stmt.where(Device.uid.in_(self.devices))
        if self.group:
            stmt = stmt.where(Device.group_name == self.group)
        if self.district:
            stmt = stmt.where(Device.district == self.district)
        if self.bbox:
            lat0, lon0, lat1, lon1 = self.bbox
            stmt = stmt.where(Device.lat.between(lat0, lat1), Device.lon.between(lon0, lon1))
        if self.metrics:
            stmt = stmt.where(Reading.metric.in_(self.metrics))
        if self.start is not None:
            stmt = stmt.where(Reading.ts >= self.start)
        if self.end is not None:
            stmt = stmt.where(Reading.ts < self.end)
        return stmt


# Columns of a reading as the data team sees it (also the export columns, in this order).
COLUMNS = ("device_id", "pole_id", "district", "group", "ts", "metric", "value", "unit", "seq")


def readings_select(flt: ReadingFilter) -> Select[Any]:
    """SELECT of readings with their node's identity, filtered, oldest first.

    Row: uid, pole_id, district, group_name, ts, metric, value, seq, device_id, received_at.
    """
    stmt = (select(Device.uid, Device.pole_id, Device.district, Device.group_name, Reading.ts,
                   Reading.metric, Reading.value, Reading.seq, Reading.device_id,
                   Reading.received_at)
            .join(Device, Device.id == Reading.device_id))
    return flt.apply(stmt)


def reading_dict(row: Any) -> dict[str, Any]:
    """One reading row as the JSON the query API and the stream return."""
    return {"device_id": row.uid, "pole_id": row.pole_id, "district": row.district,
            "group": row.group_name, "ts": iso_utc(row.ts), "metric": row.metric,
            "value": row.value, "unit": unit_of(row.metric), "seq": row.seq}


def encode_cursor(*parts: float | int) -> str:
    """An opaque pagination cursor holding the sort key of the last row returned."""
    return base64.urlsafe_b64encode(":".join(repr(p) for p in parts).encode()).decode()


def decode_cursor(cursor: str, kinds: tuple[type, ...]) -> tuple[Any, ...]:
    """Inverse of encode_cursor; raises BadFilter for anything this server did not hand out."""
    try:
        parts = base64.urlsafe_b64decode(cursor.encode()).decode().split(":")
        if len(parts) != len(kinds):
            raise ValueError
        values = tuple(kind(p) for kind, p in zip(kinds, parts, strict=True))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadFilter("cursor is not one this server handed out") from None
    if not all(math.isfinite(v) for v in values):
        raise BadFilter("cursor is not one this server handed out")
    return values


def query_readings(session: Session, flt: ReadingFilter, *, limit: int,
                   after: str | None) -> tuple[list[dict[str, Any]], str | None]:
    """One page of readings ordered by (ts, node, seq) and the cursor of the next page."""
    key = (Reading.ts, Reading.device_id, Reading.seq)
    stmt = readings_select(flt).order_by(*key).limit(limit + 1)
    if after:
        last = decode_cursor(after, (float, int, int))
        # ts >= … uses the ts index; the row comparison then skips what was already returned.
        stmt = stmt.where(Reading.ts >= last[0], tuple_(*key) > tuple_(*last))
    rows = session.execute(stmt).all()
    more = len(rows) > limit
    rows = rows[:limit]
    nxt = encode_cursor(rows[-1].ts, rows[-1].device_id, rows[-1].seq) if more else None
    return [reading_dict(r) for r in rows], nxt


def _bucket_start(session: Session, bucket_s: int) -> Any:
    """SQL for the start of a reading's bucket (epoch s), on either database."""
    if session.get_bind().dialect.name == "postgresql":
        return func.floor(Reading.ts / bucket_s) * bucket_s
    # SQLite may lack floor(); CAST truncates toward zero, which is floor for ts > 0.
    return cast(cast(Reading.ts / bucket_s, Integer) * bucket_s, Float)


def aggregate(session: Session, flt: ReadingFilter, *, bucket_s: int, by: str,
              limit: int = MAX_AGGREGATE_ROWS) -> tuple[list[dict[str, Any]], bool]:
    """min/avg/max/count per (bucket, metric[, device or group]) computed by the database.

    Returns the rows ordered by bucket, key and metric, and whether `limit` cut them short.
    """
    bucket = _bucket_start(session, bucket_s).label("bucket")
    keys: list[Any] = [bucket, Reading.metric]
    if by == "device":
        keys.append(Device.uid)
    elif by == "group":
        keys.append(Device.group_name)
    stmt = (select(*keys, func.min(Reading.value), func.avg(Reading.value),
                   func.max(Reading.value), func.count())
            .join(Device, Device.id == Reading.device_id))
    stmt = flt.apply(stmt).group_by(*keys).order_by(*keys[:1], *keys[2:], keys[1])
    rows = session.execute(stmt.limit(limit + 1)).all()
    out = []
    for row in rows[:limit]:
        item: dict[str, Any] = {"bucket_start": iso_utc(float(row[0])), "metric": row[1]}
        if by == "device":
            item["device_id"] = row[2]
        elif by == "group":
            item["group"] = row[2]
        lo, mean, hi, count = row[-4:]
        item.update(min=float(lo), avg=float(mean), max=float(hi), count=int(count),
                    unit=unit_of(row[1]))
        out.append(item)
    return out, len(rows) > limit
