"""Rollouts: offer a release in waves, act on a rollout, and follow nodes' update progress."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import select
from sqlmodel import Session

from fleet.api.deps import OPERATOR, ReaderDep, SessionDep, audited
from fleet.audit import AuditEntry, Created
from fleet.errors import NotFound
from fleet.models import Device, Rollout, UpdateEvent, UpdateStatus, aware
from fleet.registry import get_device
from fleet.releases import get_release
from fleet.rollouts import (
    create_rollout,
    get_rollout,
    operator_action,
    rollout_summary,
    sweep,
)
from fleet.schemas import NodeUpdateOut, RolloutIn, RolloutOut, RowId, UpdateEventOut, WaveOut

router = APIRouter(tags=["updates"])


def rollout_out(session: Session, row: Rollout) -> RolloutOut:
    release = get_release(session, row.release_id)
    return RolloutOut(
        id=row.id or 0, release_id=row.release_id, version=release.version, name=row.name,
        target=row.target, state=row.state, state_reason=row.state_reason, wave=row.wave,
        waves=[WaveOut(**w) for w in rollout_summary(session, row)],
        failure_threshold_pct=row.failure_threshold_pct,
        success_threshold_pct=row.success_threshold_pct, window=row.window,
        allow_downgrade=row.allow_downgrade, deadlines=row.deadlines, priority=row.priority,
        created_at=aware(row.created_at))


def swept(session: Session, row: Rollout) -> Rollout:
    """The rollout with its overdue nodes marked `timeout` (the server has no scheduler: a read
    is one of the moments deadlines are evaluated), committed before it is shown."""
    if row.state in ("active", "completed") and sweep(session, row.id or 0):
        session.commit()
    return row


@router.post("/rollouts", response_model=RolloutOut, status_code=201,
             responses={404: {"description": "no such release"},
                        409: {"description": "release already rolling out, or the target "
                                              "shares nodes with an active rollout and no "
                                              "precedence was given"},
                        422: {"description": "bad waves or nothing to update"}})
def start_rollout(body: RolloutIn, audit: Annotated[AuditEntry, audited(
                      "rollout.create", "rollouts", OPERATOR, Created(Rollout, "rollout:{id}"))],
                  session: SessionDep) -> RolloutOut:
    """Offer a release to the target nodes in waves, canary first.

    A node that stays in an in-progress state longer than its deadline counts as failed
    (`timeout`). A target that shares a node with an active or paused rollout is refused (409)
    unless `precedence` says which rollout goes first there."""
    audit.target = f"release:{body.release_id}"  # the rollout's own id once it exists
    audit.detail.update(release_id=body.release_id, waves=body.waves,
                        target=body.target.model_dump(exclude_none=True))
    audit.detail["deadlines"] = body.deadlines.model_dump()
    if body.precedence:
        audit.detail["precedence"] = body.precedence
    release = get_release(session, body.release_id)
    audit.detail["version"] = release.version
    row = create_rollout(
        session, release, name=body.name, target=body.target.model_dump(exclude_none=True),
        waves=body.waves, failure_threshold_pct=body.failure_threshold_pct,
        success_threshold_pct=body.success_threshold_pct,
        window=body.window.model_dump() if body.window else None,
        allow_downgrade=body.allow_downgrade, actor=audit.actor,
        deadlines=body.deadlines.model_dump(), precedence=body.precedence)
    return rollout_out(session, row)


@router.get("/rollouts", response_model=list[RolloutOut])
def list_rollouts(_: ReaderDep, session: SessionDep) -> list[RolloutOut]:
    """Every rollout, newest first, with per-wave counts (overdue nodes marked first)."""
    rows = session.execute(select(Rollout).order_by(Rollout.id.desc())).scalars().all()
    return [rollout_out(session, swept(session, r)) for r in rows]


@router.get("/rollouts/{rollout_id}", response_model=RolloutOut,
            responses={404: {"description": "no such rollout"}})
def show_rollout(rollout_id: RowId, _: ReaderDep, session: SessionDep) -> RolloutOut:
    """One rollout with per-wave counts (overdue nodes marked `timeout` first)."""
    return rollout_out(session, swept(session, get_rollout(session, rollout_id)))


@router.post("/rollouts/{rollout_id}/{action}", response_model=RolloutOut,
             responses={404: {"description": "no such rollout"},
                        409: {"description": "not possible in this state"}})
def act_on_rollout(rollout_id: RowId, action: str, audit: Annotated[AuditEntry, audited(
                       "rollout.{action}", "rollout:{rollout_id}", OPERATOR)],
                   session: SessionDep) -> RolloutOut:
    """pause, resume, abort, or advance to the next wave."""
    if action not in ("pause", "resume", "abort", "advance"):
        raise NotFound(f"unknown action {action!r}; use pause, resume, abort or advance")
    row = operator_action(session, get_rollout(session, rollout_id), action, audit.actor)
    return rollout_out(session, row)


@router.get("/rollouts/{rollout_id}/nodes", response_model=list[NodeUpdateOut],
            responses={404: {"description": "no such rollout"}})
def rollout_nodes(rollout_id: RowId, _: ReaderDep, session: SessionDep,
                  planned: Annotated[bool, Query(
                      description="also the members not offered yet (state planned)")] = False,
                  ) -> list[NodeUpdateOut]:
    """Each node offered this rollout, with its wave and latest state (`timeout`: past its
    deadline; `reported` is what the node itself last said)."""
    swept(session, get_rollout(session, rollout_id))
    query = (select(UpdateStatus, Device.uid).join(Device, Device.id == UpdateStatus.device_id)
             .where(UpdateStatus.rollout_id == rollout_id).order_by(UpdateStatus.id))
    if not planned:
        query = query.where(UpdateStatus.state != "planned")
    rows = session.execute(query).all()
    return [NodeUpdateOut(rollout_id=rollout_id, device_id=uid, wave=s.wave, state=s.state,
                          detail=s.detail, reported=s.reported, updated_at=aware(s.updated_at))
            for s, uid in rows]


@router.get("/rollouts/{rollout_id}/events", response_model=list[UpdateEventOut],
            responses={404: {"description": "no such rollout"}})
def rollout_events(rollout_id: RowId, _: ReaderDep, session: SessionDep) -> list[UpdateEventOut]:
    """The rollout's history: creation, offers, node reports, timeouts, pauses and advances."""
    swept(session, get_rollout(session, rollout_id))
    rows = session.execute(select(UpdateEvent, Device.uid)
                           .outerjoin(Device, Device.id == UpdateEvent.device_id)
                           .where(UpdateEvent.rollout_id == rollout_id)
                           .order_by(UpdateEvent.id)).all()
    return [UpdateEventOut(rollout_id=rollout_id, device_id=uid, at=aware(e.at), state=e.state,
                           detail=e.detail) for e, uid in rows]


@router.get("/devices/{device_id}/updates", response_model=list[UpdateEventOut],
            responses={404: {"description": "no such device"}})
def device_updates(device_id: str, _: ReaderDep, session: SessionDep) -> list[UpdateEventOut]:
    """One node's update history across rollouts."""
    device = get_device(session, device_id)
    rows = session.execute(select(UpdateEvent).where(UpdateEvent.device_id == device.id)
                           .order_by(UpdateEvent.id)).scalars()
    return [UpdateEventOut(rollout_id=e.rollout_id, device_id=device.uid, at=aware(e.at),
                           state=e.state, detail=e.detail) for e in rows]
