"""A node's events, read back: what happened to it (registered, keys, a refused key statement
or configuration, a telemetry conflict, decommissioned), newest first, paged by id.

The events are written where they happen (fleet.registry, fleet.auth, fleet.checkin,
fleet.telemetry.ingest); this module only reads them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlmodel import Session

from fleet.models import DeviceEvent
from fleet.paging import newest_first
from fleet.registry import get_device


@dataclass(frozen=True)
class EventFilter:
    """Which events to read: every field optional; `before` is the paging cursor (an id)."""

    kind: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    before: int | None = None
    limit: int = 100


def read_events(session: Session, uid: str,
                flt: EventFilter) -> tuple[list[DeviceEvent], int | None]:
    """The node's matching events, newest first, and the cursor of the next page (None: no
    more). NotFound if there is no such node."""
    device = get_device(session, uid)
    query = select(DeviceEvent).where(DeviceEvent.device_id == device.id)
    if flt.kind:
        query = query.where(DeviceEvent.kind == flt.kind)
    return newest_first(session, query, DeviceEvent.id, DeviceEvent.at, since=flt.since,
                        until=flt.until, before=flt.before, limit=flt.limit)
