"""The audit trail: who did which operator action to what, when, and whether it was refused."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from fleet.api.deps import OperatorDep, SessionDep
from fleet.audit import AuditFilter, read_audit
from fleet.models import aware
from fleet.schemas import AuditPage, AuditQuery, AuditRecordOut

router = APIRouter(tags=["audit"])


@router.get("/audit", response_model=AuditPage,
            responses={401: {"description": "missing, unknown or revoked API token"},
                       403: {"description": "not an operator token"},
                       422: {"description": "a filter is malformed, or an unknown query "
                                            "parameter was given"}})
def list_audit(_: OperatorDep, session: SessionDep,
               q: Annotated[AuditQuery, Query()]) -> AuditPage:
    """Operator actions, newest first: tokens, configuration, commands, device keys, release
    keys, releases, rollouts — each with its actor, time, target and outcome (refusals
    included). Filter by actor, target, action, outcome and time; page with `cursor`."""
    rows, cursor = read_audit(session, AuditFilter(
        actor=q.actor, target=q.target, action=q.action, outcome=q.outcome, since=q.since,
        until=q.until, before=q.cursor, limit=q.limit))
    return AuditPage(records=[AuditRecordOut(
        id=r.id or 0, at=aware(r.at), actor=r.actor, action=r.action, target=r.target,
        outcome="ok" if r.outcome == "ok" else "refused", status=r.status, reason=r.reason,
        detail=r.detail) for r in rows], next_cursor=cursor)
