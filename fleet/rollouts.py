"""Staged rollouts: deterministic waves, thresholds that pause or advance, per-node update state.

Any server process can answer a check-in: a node's wave follows from a hash of (rollout, node)
compared with cut-offs fixed when the rollout was created, and every threshold is evaluated in
the transaction that records the report which crossed it.
"""

from __future__ import annotations

import hashlib
import math
import re
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlmodel import Session

from fleet.errors import Conflict, Invalid, NotFound
from fleet.models import (
    Device,
    Release,
    Rollout,
    SigningKey,
    UpdateEvent,
    UpdateStatus,
    utcnow,
)

if TYPE_CHECKING:
    from fleet.auth import DeviceRow

POSITIONS = 2**32
IN_PROGRESS = ("offered", "downloading", "installing", "installed")
FAILED = ("failed", "rolled_back", "refused")
DONE = ("committed",)
REPORTABLE = ("downloading", "installing", "installed", "committed") + FAILED
_SEMVER = re.compile(r"^(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?")


def version_key(version: str) -> tuple:
    """Sort key for semantic versions; a pre-release sorts before its release; junk sorts first."""
    m = _SEMVER.match(version or "")
    if not m:
        return (-1,)
    pre = m.group(4)
    pre_key: tuple = (1,) if pre is None else (0, *[(0, int(p)) if p.isdigit() else (1, p)
                                                     for p in pre.split(".")])
    return (int(m.group(1)), int(m.group(2)), int(m.group(3)), pre_key)


def position(rollout_id: int, device_uid: str) -> int:
    """The node's place in the rollout's order, uniform in [0, 2**32)."""
    digest = hashlib.sha256(f"rollout:{rollout_id}:{device_uid}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def target_matches(target: dict[str, Any], device: Device | DeviceRow) -> bool:
    """Whether a node falls under a rollout's target filter (every given key must match)."""
    if target.get("group") and device.group_name != target["group"]:
        return False
    if target.get("district") and device.district != target["district"]:
        return False
    if target.get("board") and device.board != target["board"]:
        return False
    if target.get("tag") and target["tag"] not in device.tags:
        return False
    return not (target.get("from_version") and device.fw_version != target["from_version"])


def eligible(rollout: Rollout, release: Release, device: Device | DeviceRow) -> bool:
    """Target filter, board compatibility, and never an older version unless a downgrade."""
    if device.status != "active" or device.board not in release.boards:
        return False
    if not target_matches(rollout.target, device):
        return False
    running, offered = version_key(device.fw_version), version_key(release.version)
    if rollout.allow_downgrade:
        return running != offered
    return offered > running


def window_open(window: dict[str, Any] | None, now: datetime) -> bool:
    """True when no window is set or the local hour is inside [start_hour, end_hour)."""
    if not window:
        return True
    local = now.astimezone(ZoneInfo(window.get("tz", "UTC")))
    start, end = window["start_hour"], window["end_hour"]
    hour = local.hour + local.minute / 60
    return start <= hour < end if start < end else (hour >= start or hour < end)


def plan_waves(rollout_id: int, uids: list[str], waves: list[int]) -> tuple[list[int], list[int]]:
    """Cut-offs and sizes: wave i holds the first ceil(pct_i % of N) nodes in hash order.

    A wave under 100 % holds at least one node, so a canary always exists. Nodes registered
    later fall into a wave by the same cut-offs.
    """
    ordered = sorted(position(rollout_id, uid) for uid in uids)
    n = len(ordered)
    cutoffs, sizes, taken = [], [], 0
    for pct in waves:
        upto = n if pct >= 100 else max(taken, min(n, max(1, math.ceil(pct * n / 100))))
        cutoffs.append(POSITIONS if pct >= 100 else ordered[upto - 1] + 1)
        sizes.append(upto - taken)
        taken = upto
    return cutoffs, sizes


def wave_of(rollout: Rollout, device_uid: str) -> int:
    """The first wave whose cut-off the node's position is under."""
    pos = position(rollout.id or 0, device_uid)
    for i, cut in enumerate(rollout.cutoffs):
        if pos < cut:
            return i
    return len(rollout.cutoffs) - 1


def revoked_signer(session: Session, release: Release) -> str | None:
    """The release's key id if that key is revoked now (by an operator or a statement)."""
    revoked = session.execute(select(SigningKey.id).where(
        SigningKey.key_id == release.key_id, SigningKey.revoked_at.is_not(None))).first()
    return release.key_id if revoked is not None else None


def revoked_reason(kid: str) -> str:
    """The state reason of a rollout stopped because its release's key was revoked."""
    return f"release signed by revoked key {kid}"


def pause_rollouts_signed_by(session: Session, key_ids: list[str]) -> list[Rollout]:
    """Pause every active rollout whose release one of these (just revoked) keys signed.

    Runs in the transaction that revokes them; the caller commits.
    """
    if not key_ids:
        return []
    rows = session.execute(
        select(Rollout, Release.key_id).join(Release, Release.id == Rollout.release_id)
        .where(Rollout.state == "active", Release.key_id.in_(key_ids))
        .with_for_update(of=Rollout)).all()
    for rollout, kid in rows:
        _set_state(session, rollout, "paused", revoked_reason(kid))
    return [rollout for rollout, _ in rows]


def get_rollout(session: Session, rollout_id: int) -> Rollout:
    """The rollout with this id; NotFound names it."""
    row = session.get(Rollout, rollout_id)
    if row is None:
        raise NotFound(f"no rollout {rollout_id}")
    return row


def _check_window(window: dict[str, Any] | None) -> None:
    """Refuse a daytime window that is empty or names an unknown time zone."""
    if window is None:
        return
    if window["start_hour"] == window["end_hour"]:
        raise Invalid("window start_hour and end_hour must differ")
    try:
        ZoneInfo(window["tz"])
    except (KeyError, ValueError):
        raise Invalid(f"unknown time zone {window['tz']!r}") from None


def create_rollout(session: Session, release: Release, *, name: str, target: dict[str, Any],
                   waves: list[int], failure_threshold_pct: float,
                   success_threshold_pct: float | None, window: dict[str, Any] | None,
                   allow_downgrade: bool, actor: str) -> Rollout:
    """Create a rollout; its waves are planned over the nodes that match it now."""
    _check_window(window)
    kid = revoked_signer(session, release)
    if kid is not None:
        raise Conflict(f"{revoked_reason(kid)}: sign {release.version} again with a "
                       "trusted key and upload it with a higher sequence")
    if not waves or waves != sorted(waves) or waves[-1] != 100 or waves[0] <= 0:
        raise Invalid("waves must be increasing percentages ending at 100, e.g. [5, 25, 100]")
    active = session.execute(select(Rollout).where(Rollout.release_id == release.id,
                                                   Rollout.state.in_(("active", "paused")))
                             ).scalars().first()
    if active is not None:
        raise Conflict(f"release {release.version} already has rollout {active.id} "
                       f"({active.state}); abort it first")
    rollout = Rollout(release_id=release.id or 0, name=name, target=target, waves=waves,
                      failure_threshold_pct=failure_threshold_pct,
                      success_threshold_pct=success_threshold_pct, window=window,
                      allow_downgrade=allow_downgrade, created_by=actor)
    session.add(rollout)
    session.flush()
    devices = session.execute(select(Device).where(Device.status == "active")).scalars().all()
    uids = [d.uid for d in devices if eligible(rollout, release, d)]
    if not uids:
        session.rollback()
        raise Invalid("no active node matches this target and runs an older version "
                      f"on a board the release supports ({', '.join(release.boards)})")
    rollout.cutoffs, rollout.sizes = plan_waves(rollout.id or 0, uids, waves)
    session.add(UpdateEvent(rollout_id=rollout.id or 0, state="created",
                            detail=f"by {actor}: {len(uids)} nodes, waves {waves}"))
    session.commit()
    return rollout


def assignment_for(session: Session, device: DeviceRow,
                   now: datetime | None = None) -> dict[str, Any] | None:
    """The update a node should be installing now, if any (recording that it was offered).

    Never a release whose signing key is revoked, whatever state its rollout is in.
    """
    now = now or utcnow()
    if session.execute(select(Rollout.id).where(Rollout.state == "active").limit(1)).first() \
            is None:
        return None  # the usual case: nothing rolling out
    rows = session.execute(
        select(Rollout, Release).join(Release, Release.id == Rollout.release_id)
        .join(SigningKey, SigningKey.key_id == Release.key_id)
        .where(Rollout.state == "active", SigningKey.revoked_at.is_(None))
        .order_by(Release.sequence.desc())
    ).all()
    for rollout, release in rows:
        status = session.execute(select(UpdateStatus).where(
            UpdateStatus.rollout_id == rollout.id, UpdateStatus.device_id == device.id)
        ).scalar_one_or_none()
        if status is not None:
            if status.state not in IN_PROGRESS:
                continue  # finished here (committed, failed, rolled back or refused)
        else:
            if not eligible(rollout, release, device):
                continue
            wave = wave_of(rollout, device.uid)
            if wave > rollout.wave or not window_open(rollout.window, now):
                continue
            status = UpdateStatus(rollout_id=rollout.id or 0, device_id=device.id or 0,
                                  wave=wave, state="offered")
            session.add(status)
            session.add(UpdateEvent(rollout_id=rollout.id or 0, device_id=device.id,
                                    state="offered", detail=f"wave {wave}"))
        return {"rollout_id": rollout.id, "release_id": release.id, "version": release.version,
                "sequence": release.sequence, "size": release.bundle_size,
                "sha256": release.bundle_sha256,
                "url": f"/device/v1/releases/{release.id}/bundle"}
    return None


def record_report(session: Session, device: DeviceRow, rollout_id: int, state: str,
                  detail: str) -> None:
    """Store a node's update state change and let the rollout react to it."""
    status = session.execute(select(UpdateStatus).where(
        UpdateStatus.rollout_id == rollout_id, UpdateStatus.device_id == device.id)
    ).scalar_one_or_none()
    if status is None or status.state == state:
        return  # not offered this rollout, or nothing new
    status.state, status.detail, status.updated_at = state, detail[:200], utcnow()
    session.add(status)
    session.add(UpdateEvent(rollout_id=rollout_id, device_id=device.id, state=state,
                            detail=detail[:200]))
    session.flush()
    if state in FAILED or state in DONE:
        evaluate(session, rollout_id)


def _wave_counts(session: Session, rollout_id: int, wave: int) -> dict[str, int]:
    rows = session.execute(
        select(UpdateStatus.state, func.count()).where(UpdateStatus.rollout_id == rollout_id,
                                                       UpdateStatus.wave == wave)
        .group_by(UpdateStatus.state)).all()
    return {state: count for state, count in rows}


def evaluate(session: Session, rollout_id: int) -> None:
    """Pause on too many failures in any wave; advance when the current wave succeeded enough."""
    rollout = session.execute(select(Rollout).where(Rollout.id == rollout_id)
                              .with_for_update()).scalar_one()
    if rollout.state != "active":
        return
    for wave in range(rollout.wave + 1):
        counts = _wave_counts(session, rollout_id, wave)
        failed = sum(counts.get(s, 0) for s in FAILED)
        size = max(1, rollout.sizes[wave])
        if failed and 100 * failed / size >= rollout.failure_threshold_pct:
            _set_state(session, rollout, "paused",
                       f"wave {wave}: {failed} of {rollout.sizes[wave]} nodes failed "
                       f"(threshold {rollout.failure_threshold_pct:g} %)")
            return
    if rollout.success_threshold_pct is None:
        return
    while rollout.state == "active":
        counts = _wave_counts(session, rollout_id, rollout.wave)
        size = rollout.sizes[rollout.wave]
        done = counts.get("committed", 0)
        if size and 100 * done / size < rollout.success_threshold_pct:
            return
        if rollout.wave + 1 >= len(rollout.waves):
            _set_state(session, rollout, "completed", f"last wave: {done} of {size} committed")
            return
        rollout.wave += 1
        session.add(UpdateEvent(rollout_id=rollout_id, state="advanced",
                                detail=f"to wave {rollout.wave} after {done} of {size} committed"))


def _set_state(session: Session, rollout: Rollout, state: str, reason: str) -> None:
    rollout.state, rollout.state_reason, rollout.updated_at = state, reason[:200], utcnow()
    session.add(rollout)
    session.add(UpdateEvent(rollout_id=rollout.id or 0, state=state, detail=reason[:200]))


def operator_action(session: Session, rollout: Rollout, action: str, actor: str) -> Rollout:
    """pause, resume, abort or advance, refused when it makes no sense in the current state."""
    allowed = {"pause": ("active",), "resume": ("paused",), "abort": ("active", "paused"),
               "advance": ("active", "paused")}
    if rollout.state not in allowed[action]:
        raise Conflict(f"rollout {rollout.id} is {rollout.state}; cannot {action}")
    if action == "resume":
        kid = revoked_signer(session, session.get(Release, rollout.release_id))
        if kid is not None:
            raise Conflict(f"rollout {rollout.id} cannot resume: {revoked_reason(kid)}; "
                           "abort it and roll out a release signed by a trusted key")
    if action == "advance":
        if rollout.wave + 1 >= len(rollout.waves):
            raise Conflict("rollout is already at its last wave")
        rollout.wave += 1
        session.add(UpdateEvent(rollout_id=rollout.id or 0, state="advanced",
                                detail=f"to wave {rollout.wave} by {actor}"))
        session.add(rollout)
    else:
        new = {"pause": "paused", "resume": "active", "abort": "aborted"}[action]
        _set_state(session, rollout, new, f"{action} by {actor}")
    session.commit()
    if action == "resume":
        evaluate(session, rollout.id or 0)
        session.commit()
    return rollout


def rollout_summary(session: Session, rollout: Rollout) -> list[dict[str, Any]]:
    """Per wave: its percentage, planned size and how many nodes are in each state."""
    rows = session.execute(
        select(UpdateStatus.wave, UpdateStatus.state, func.count())
        .where(UpdateStatus.rollout_id == rollout.id)
        .group_by(UpdateStatus.wave, UpdateStatus.state)).all()
    waves = [{"wave": i, "percent": pct, "planned": rollout.sizes[i], "states": {}}
             for i, pct in enumerate(rollout.waves)]
    for wave, state, count in rows:
        waves[wave]["states"][state] = count
    return waves
