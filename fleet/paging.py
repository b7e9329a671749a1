"""Newest-first lists paged by id, filtered by a time range: the audit trail, a node's events."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select
from sqlmodel import Session

MAX_LIMIT = 1000  # rows per page, whatever the caller asks


def utc(ts: datetime) -> datetime:
    """`ts` in UTC (a naive time is taken as UTC)."""
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def newest_first(session: Session, query: Select[Any], id_column: Any, at_column: Any, *,
                 since: datetime | None, until: datetime | None, before: int | None,
                 limit: int) -> tuple[list[Any], int | None]:
    """One page of `query`'s rows, newest (highest id) first, at or after `since` and before
    `until`, below the cursor `before`; and the cursor of the next page (None: no more)."""
    if since is not None:
        query = query.where(at_column >= utc(since))
    if until is not None:
        query = query.where(at_column < utc(until))
    if before is not None:
        query = query.where(id_column < before)
    limit = max(1, min(limit, MAX_LIMIT))
    rows = list(session.execute(query.order_by(id_column.desc()).limit(limit + 1)).scalars())
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].id if more and rows else None)
