"""A node's events, read back: what happened to it (registered, keys, a refused key statement
or configuration, a telemetry conflict, decommissioned), newest first, paged by id.

The events are written where they happen (fleet.registry, fleet.auth, fleet.checkin,
fleet.telemetry.ingest); this module only reads them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlmodel import Session

from fleet.models import DeviceEvent
from fleet.registry import get_device

MAX_LIMIT = 1000


@dataclass(frozen=True)
class EventFilter:
    """Which events to read: every field optional; `before` is the paging cursor (an id)."""

    kind: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    before: int | None = None
    limit: int = 100


def _utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def read_events(session: Session, uid: str,
                flt: EventFilter) -> tuple[list[DeviceEvent], int | None]:
    """The node's matching events, newest first, and the cursor of the next page (None: no
    more). NotFound if there is no such node."""
    device = get_device(session, uid)
    query = select(DeviceEvent).where(DeviceEvent.device_id == device.id)
    if flt.kind:
        query = query.where(DeviceEvent.kind == flt.kind)
    if flt.since is not None:
        query = query.where(DeviceEvent.at >= _utc(flt.since))
    if flt.until is not None:
        query = query.where(DeviceEvent.at < _utc(flt.until))
    if flt.before is not None:
        query = query.where(DeviceEvent.id < flt.before)
    limit = max(1, min(flt.limit, MAX_LIMIT))
    rows = list(session.execute(query.order_by(DeviceEvent.id.desc())
                                .limit(limit + 1)).scalars())
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].id if more and rows else None)
