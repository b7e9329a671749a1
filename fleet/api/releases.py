"""Operator API for updates: trusted keys, releases (signed bundles) and staged rollouts."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import select
from sqlmodel import Session

from fleet.api.deps import OperatorDep, ReaderDep, SessionDep
from fleet.core.settings import get_settings
from fleet.errors import Conflict, NotFound
from fleet.key_statements import (
    keyset_counts,
    nodes_behind,
    store_statement,
    summary,
    trusting_filter,
)
from fleet.models import (
    Device,
    KeyStatement,
    Release,
    Rollout,
    SigningKey,
    UpdateEvent,
    UpdateStatus,
)
from fleet.registry import get_device
from fleet.releases import get_release, revoke_key, spool_upload, store_release, trust_key
from fleet.rollouts import (
    aware,
    create_rollout,
    get_rollout,
    operator_action,
    rollout_summary,
)
from fleet.schemas import (
    KeyIn,
    KeyNodeOut,
    KeyOut,
    KeyStatementIn,
    KeyStatementOut,
    NodeUpdateOut,
    ReleaseOut,
    RolloutIn,
    RolloutOut,
    RowId,
    UpdateEventOut,
    WaveOut,
)
from ota.keys import parse_statement

router = APIRouter(prefix="/api/v1", tags=["updates"])


def _key_out(row: SigningKey, counts: dict[int | None, int] | None = None) -> KeyOut:
    """A key; with `counts` (active nodes by reported key set), how many still trust it."""
    out = KeyOut(key_id=row.key_id, public_key=row.public_key, name=row.name,
                 added_at=aware(row.added_at),
                 revoked_at=aware(row.revoked_at) if row.revoked_at else None,
                 introduced_by_serial=row.introduced_by_serial,
                 revoked_by_serial=row.revoked_by_serial)
    if row.revoked_at is None or counts is None:
        return out
    if row.revoked_by_serial is None:
        out.nodes_trusting = sum(counts.values())
        out.note = ("revoked on the server only: every node still trusts it until a signed "
                    f"revocation reaches it (`lamplighter release revoke {row.key_id} --key "
                    "<another trusted key> --serial <next> --out <file> --upload`)")
    else:
        out.nodes_trusting = nodes_behind(counts, row.revoked_by_serial)
        out.note = (f"revoked by statement {row.revoked_by_serial}: nodes trust it until they "
                    "apply that statement at a check-in")
    return out


def _statement_out(row: KeyStatement, counts: dict[int | None, int]) -> KeyStatementOut:
    kind, document = parse_statement(json.loads(row.envelope)["statement"])
    return KeyStatementOut(serial=row.serial, kind=row.kind, key_id=row.key_id,
                           summary=summary(kind, document), created_at=aware(row.created_at),
                           created_by=row.created_by, nodes_behind=nodes_behind(counts,
                                                                                row.serial),
                           envelope=row.envelope)


def _release_out(row: Release) -> ReleaseOut:
    return ReleaseOut(id=row.id or 0, version=row.version, sequence=row.sequence, kind=row.kind,
                      boards=row.boards, expires=row.expires, key_id=row.key_id,
                      bundle_sha256=row.bundle_sha256, bundle_size=row.bundle_size,
                      notes=row.notes, created_at=aware(row.created_at))


def rollout_out(session: Session, row: Rollout) -> RolloutOut:
    release = get_release(session, row.release_id)
    return RolloutOut(
        id=row.id or 0, release_id=row.release_id, version=release.version, name=row.name,
        target=row.target, state=row.state, state_reason=row.state_reason, wave=row.wave,
        waves=[WaveOut(**w) for w in rollout_summary(session, row)],
        failure_threshold_pct=row.failure_threshold_pct,
        success_threshold_pct=row.success_threshold_pct, window=row.window,
        allow_downgrade=row.allow_downgrade, created_at=aware(row.created_at))


@router.post("/keys", response_model=KeyOut, status_code=201,
             responses={409: {"description": "key was revoked"}, 422: {"description": "bad key"}})
def add_key(body: KeyIn, _: OperatorDep,
            session: SessionDep) -> KeyOut:
    """Trust a release public key. The server never needs the private key."""
    return _key_out(trust_key(session, body.public_key, body.name))


@router.get("/keys", response_model=list[KeyOut])
def list_keys(_: ReaderDep,
              session: SessionDep) -> list[KeyOut]:
    """The release keys, revoked ones included (with when, by which statement, and how many
    active nodes still trust them)."""
    counts = keyset_counts(session)
    return [_key_out(r, counts) for r in session.execute(select(SigningKey)
                                                         .order_by(SigningKey.id)).scalars()]


@router.post("/keys/{key_id}/revoke", response_model=KeyOut,
             responses={404: {"description": "no such key"}})
def revoke(key_id: str, _: OperatorDep,
           session: SessionDep) -> KeyOut:
    """Stop trusting a key on the server: bundles it signed are refused from now on and the
    active rollouts of releases it signed pause. Nodes learn of it only from a signed
    revocation statement (POST /api/v1/keys/statements)."""
    row = revoke_key(session, key_id)
    return _key_out(row, keyset_counts(session))


@router.get("/keys/{key_id}/nodes", response_model=list[KeyNodeOut],
            responses={404: {"description": "no such key"},
                       409: {"description": "the key is not revoked"}})
def key_nodes(key_id: str, _: ReaderDep, session: SessionDep,
              limit: Annotated[int, Query(ge=1, le=10000)] = 1000) -> list[KeyNodeOut]:
    """The active nodes that still trust a revoked key, longest behind first."""
    row = session.execute(select(SigningKey).where(SigningKey.key_id == key_id)
                          ).scalar_one_or_none()
    if row is None:
        raise NotFound(f"no key {key_id}")
    if row.revoked_at is None:
        raise Conflict(f"key {key_id} is not revoked: every node that has it trusts it")
    devices = session.execute(
        select(Device).where(trusting_filter(row))
        .order_by(Device.keyset_serial.is_not(None), Device.keyset_serial, Device.id)
        .limit(limit)).scalars()
    return [KeyNodeOut(device_id=d.uid, pole_id=d.pole_id, keyset=d.keyset_serial,
                       keyset_error=d.keyset_error,
                       last_seen=aware(d.last_seen) if d.last_seen else None) for d in devices]


@router.post("/keys/statements", response_model=KeyStatementOut, status_code=201,
             responses={409: {"description": "not the next serial, or its key is known"},
                        422: {"description": "envelope, signer, signature or document "
                                             "refused; or no usable key would be left"}})
def add_statement(body: KeyStatementIn, caller: OperatorDep,
                  session: SessionDep) -> KeyStatementOut:
    """Publish a signed rotation or revocation (the file `lamplighter release rotate/revoke`
    writes, sent as the request body). It must be the next serial of the chain; the server
    applies it to its keys at once and nodes receive it at their next check-in."""
    envelope = json.dumps(body.model_dump(), sort_keys=True, separators=(",", ":"))
    row = store_statement(session, envelope, caller.name)
    return _statement_out(row, keyset_counts(session))


@router.get("/keys/statements", response_model=list[KeyStatementOut])
def list_statements(_: ReaderDep,
                    session: SessionDep) -> list[KeyStatementOut]:
    """The statement chain in serial order, with how many active nodes have not applied each."""
    counts = keyset_counts(session)
    rows = session.execute(select(KeyStatement).order_by(KeyStatement.serial)).scalars()
    return [_statement_out(r, counts) for r in rows]


@router.post("/releases", response_model=ReleaseOut, status_code=201,
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/octet-stream": {"schema": {"type": "string",
                                                         "format": "binary"}}}}},
             responses={409: {"description": "sequence taken"},
                        413: {"description": "too large"},
                        422: {"description": "signature, key, expiry or hash refused"}})
async def upload_release(request: Request, caller: OperatorDep, session: SessionDep,
                         notes: Annotated[str, Query(max_length=500)] = "") -> ReleaseOut:
    """Upload a signed bundle (`lamplighter release upload`); it is checked before it is kept."""
    upload, sha256, size = await spool_upload(request.stream(), get_settings().max_bundle_bytes)
    # Verifying hashes every file and writes the database: off the event loop.
    release = await run_in_threadpool(store_release, session, upload, sha256, size, notes=notes,
                                      actor=caller.name)
    return _release_out(release)


@router.get("/releases", response_model=list[ReleaseOut])
def list_releases(_: ReaderDep,
                  session: SessionDep) -> list[ReleaseOut]:
    """Every stored release, newest sequence first."""
    rows = session.execute(select(Release).order_by(Release.sequence.desc())).scalars()
    return [_release_out(r) for r in rows]


@router.get("/releases/{release_id}", response_model=ReleaseOut,
            responses={404: {"description": "no such release"}})
def show_release(release_id: RowId, _: ReaderDep,
                 session: SessionDep) -> ReleaseOut:
    return _release_out(get_release(session, release_id))


@router.post("/rollouts", response_model=RolloutOut, status_code=201,
             responses={404: {"description": "no such release"},
                        409: {"description": "release already rolling out"},
                        422: {"description": "bad waves or nothing to update"}})
def start_rollout(body: RolloutIn, caller: OperatorDep,
                  session: SessionDep) -> RolloutOut:
    """Offer a release to the target nodes in waves, canary first."""
    release = get_release(session, body.release_id)
    row = create_rollout(
        session, release, name=body.name, target=body.target.model_dump(exclude_none=True),
        waves=body.waves, failure_threshold_pct=body.failure_threshold_pct,
        success_threshold_pct=body.success_threshold_pct,
        window=body.window.model_dump() if body.window else None,
        allow_downgrade=body.allow_downgrade, actor=caller.name)
    return rollout_out(session, row)


@router.get("/rollouts", response_model=list[RolloutOut])
def list_rollouts(_: ReaderDep,
                  session: SessionDep) -> list[RolloutOut]:
    """Every rollout, newest first, with per-wave counts."""
    rows = session.execute(select(Rollout).order_by(Rollout.id.desc())).scalars().all()
    return [rollout_out(session, r) for r in rows]


@router.get("/rollouts/{rollout_id}", response_model=RolloutOut,
            responses={404: {"description": "no such rollout"}})
def show_rollout(rollout_id: RowId, _: ReaderDep,
                 session: SessionDep) -> RolloutOut:
    return rollout_out(session, get_rollout(session, rollout_id))


@router.post("/rollouts/{rollout_id}/{action}", response_model=RolloutOut,
             responses={404: {"description": "no such rollout"},
                        409: {"description": "not possible in this state"}})
def act_on_rollout(rollout_id: RowId, action: str, caller: OperatorDep,
                   session: SessionDep) -> RolloutOut:
    """pause, resume, abort, or advance to the next wave."""
    if action not in ("pause", "resume", "abort", "advance"):
        raise NotFound(f"unknown action {action!r}; use pause, resume, abort or advance")
    row = operator_action(session, get_rollout(session, rollout_id), action, caller.name)
    return rollout_out(session, row)


@router.get("/rollouts/{rollout_id}/nodes", response_model=list[NodeUpdateOut],
            responses={404: {"description": "no such rollout"}})
def rollout_nodes(rollout_id: RowId, _: ReaderDep,
                  session: SessionDep) -> list[NodeUpdateOut]:
    """Each node offered this rollout, with its wave and latest state."""
    get_rollout(session, rollout_id)
    rows = session.execute(select(UpdateStatus, Device.uid)
                           .join(Device, Device.id == UpdateStatus.device_id)
                           .where(UpdateStatus.rollout_id == rollout_id)
                           .order_by(UpdateStatus.id)).all()
    return [NodeUpdateOut(rollout_id=rollout_id, device_id=uid, wave=s.wave, state=s.state,
                          detail=s.detail, updated_at=aware(s.updated_at)) for s, uid in rows]


@router.get("/rollouts/{rollout_id}/events", response_model=list[UpdateEventOut],
            responses={404: {"description": "no such rollout"}})
def rollout_events(rollout_id: RowId, _: ReaderDep,
                   session: SessionDep) -> list[UpdateEventOut]:
    """The rollout's history: creation, offers, node reports, pauses and wave advances."""
    get_rollout(session, rollout_id)
    rows = session.execute(select(UpdateEvent, Device.uid)
                           .outerjoin(Device, Device.id == UpdateEvent.device_id)
                           .where(UpdateEvent.rollout_id == rollout_id)
                           .order_by(UpdateEvent.id)).all()
    return [UpdateEventOut(rollout_id=rollout_id, device_id=uid, at=aware(e.at), state=e.state,
                           detail=e.detail) for e, uid in rows]


@router.get("/devices/{device_id}/updates", response_model=list[UpdateEventOut],
            responses={404: {"description": "no such device"}})
def device_updates(device_id: str, _: ReaderDep,
                   session: SessionDep) -> list[UpdateEventOut]:
    """One node's update history across rollouts."""
    device = get_device(session, device_id)
    rows = session.execute(select(UpdateEvent).where(UpdateEvent.device_id == device.id)
                           .order_by(UpdateEvent.id)).scalars()
    return [UpdateEventOut(rollout_id=e.rollout_id, device_id=device.uid, at=aware(e.at),
                           state=e.state, detail=e.detail) for e in rows]
