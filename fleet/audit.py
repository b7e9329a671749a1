"""The audit trail: operator actions recorded in their own transaction, refusals apart, queries.

An action is recorded by arming an `AuditEntry` on the session that does the work: the first
commit on that session after it is armed (the service's own commit) carries the "ok" record,
so the record and the change stand or fall together. A refused action is recorded by
`AuditEntry.refused`, which rolls back whatever the action had left pending and commits the
refusal alone, in a short transaction of its own.
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import event, select
from sqlmodel import Session

from fleet.models import AuditRecord
from fleet.paging import newest_first

MAX_REASON = 500
MAX_DETAIL = 1000  # characters of JSON; a larger detail keeps only its keys


def local_actor() -> str:
    """The actor of a command run on the server's machine: local:<os user>."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no LOGNAME/USER (a bare container)
        user = "unknown"
    return f"local:{user}"


@dataclass
class Created:
    """Name the target after what the action creates: `template` formatted with each new row's
    attributes (one record per row), e.g. Created(Rollout, "rollout:{id}")."""

    model: type
    template: str


class _Attributes(dict[str, Any]):
    """A row's attributes by name, for str.format_map."""

    def __init__(self, row: Any) -> None:
        super().__init__()
        self.row = row

    def __missing__(self, key: str) -> Any:
        return getattr(self.row, key)


@dataclass
class AuditEntry:
    """One action about to be done on `session` by `actor`; `detail` may be filled until commit."""

    session: Session
    actor: str
    action: str
    target: str
    token_id: int | None = None
    created: Created | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    written: bool = False
    _new: list[Any] = field(default_factory=list)
    _armed: bool = False

    def arm(self) -> AuditEntry:
        """Record the action as done ("ok") in the next commit on the session."""
        if not self._armed:
            event.listen(self.session, "after_flush", self._collect)
            event.listen(self.session, "before_commit", self._write_ok)
            self._armed = True
        return self

    def disarm(self) -> None:
        """Stop watching the session's commits (the request is over)."""
        if self._armed:
            event.remove(self.session, "after_flush", self._collect)
            event.remove(self.session, "before_commit", self._write_ok)
            self._armed = False

    @contextmanager
    def recording(self) -> Iterator[AuditEntry]:
        """Armed for the block: its commit carries the "ok" record."""
        self.arm()
        try:
            yield self
        finally:
            self.disarm()

    def _collect(self, session: Session, _context: Any) -> None:
        if self.created is not None:
            self._new.extend(o for o in session.new if isinstance(o, self.created.model))

    def _targets(self) -> list[str]:
        if self.created is None or not self._new:
            return [self.target]
        return [self.created.template.format_map(_Attributes(o)) for o in self._new]

    def _write_ok(self, session: Session) -> None:
        if self.written:
            return
        self.written = True
        if self.created is not None:
            session.flush()  # gives the new rows their ids before they name the target
        for target in self._targets():
            session.add(self._record(target, "ok"))

    def done(self) -> None:
        """After the action returned: record it now if it committed nothing (a no-op)."""
        if not self.written:
            self.session.commit()  # the armed listener adds the "ok" record

    def refused(self, reason: str, status: int | None = None) -> None:
        """Record the refusal in a transaction of its own, dropping what the action left."""
        self.disarm()  # a record the action already committed stays; this one follows it
        self.session.rollback()
        self.session.add(self._record(self.target, "refused", status=status,
                                      reason=reason[:MAX_REASON]))
        self.session.commit()
        self.written = True

    def _record(self, target: str, outcome: str, *, status: int | None = None,
                reason: str = "") -> AuditRecord:
        return AuditRecord(actor=self.actor[:80], token_id=self.token_id,
                           action=self.action[:40], target=target[:120], outcome=outcome,
                           status=status, reason=reason, detail=small_detail(self.detail))


def small_detail(detail: dict[str, Any]) -> dict[str, Any]:
    """`detail` as stored: as it is while its JSON is small, else only the names of its keys."""
    text = json.dumps(detail, default=str)
    if len(text) <= MAX_DETAIL:
        return json.loads(text)
    return {"truncated": True, "keys": sorted(detail)[:20]}


def refusal_text(detail: Any) -> str:
    """A refusal's detail (a message or a structured refusal) as one line of text."""
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):  # FastAPI's validation errors
        return "; ".join(f"{'.'.join(str(p) for p in d.get('loc', []))}: {d.get('msg')}"
                         for d in detail if isinstance(d, dict))
    if isinstance(detail, dict) and "message" in detail:
        return str(detail["message"])
    return str(detail)


@dataclass(frozen=True)
class AuditFilter:
    """Which records to read: every field optional; `before` is the paging cursor (an id)."""

    actor: str | None = None
    target: str | None = None
    action: str | None = None
    outcome: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    before: int | None = None
    limit: int = 100


def _prefix_or_exact(column: Any, value: str) -> Any:
    """`value` matches exactly, or as a prefix when it ends with '*' (e.g. device:*)."""
    if value.endswith("*"):
        prefix = value[:-1].replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return column.like(prefix + "%", escape="\\")
    return column == value


def read_audit(session: Session, flt: AuditFilter) -> tuple[list[AuditRecord], int | None]:
    """The matching records, newest first, and the cursor of the next page (None: no more)."""
    query = select(AuditRecord)
    if flt.actor:
        query = query.where(_prefix_or_exact(AuditRecord.actor, flt.actor))
    if flt.target:
        query = query.where(_prefix_or_exact(AuditRecord.target, flt.target))
    if flt.action:
        query = query.where(_prefix_or_exact(AuditRecord.action, flt.action))
    if flt.outcome:
        query = query.where(AuditRecord.outcome == flt.outcome)
    return newest_first(session, query, AuditRecord.id, AuditRecord.at, since=flt.since,
                        until=flt.until, before=flt.before, limit=flt.limit)
