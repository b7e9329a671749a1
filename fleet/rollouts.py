"""Staged rollouts: deterministic waves, thresholds that pause or advance, per-node update state.

Any server process can answer a check-in: a node's wave follows from a hash of (rollout, node)
compared with cut-offs fixed when the rollout was created, and every threshold is evaluated in
the transaction that records the report which crossed it.

Every node of a rollout has a row (UpdateStatus) from the moment it is known: the nodes matched
at creation as `planned`, a node that joins later when it first checks in. A wave's members
(the denominator of both thresholds) are its rows, late joiners included, less the nodes that
left it (`skipped`: no longer eligible when offered; `superseded`: offered a rollout that takes
precedence).

Deadlines need no scheduler: a node whose state (`planned` in a current wave, `offered`,
`downloading`, `installing`, `installed`) outlives the rollout's deadline for it, counting
only time inside the rollout's window, becomes `timeout`, a failure. The server looks for
overdue nodes whenever a rollout is read through the API, and at most every SWEEP_EVERY_S per
rollout from the check-ins that find it active (the first check-in past that time takes the
rollout's row and sweeps, in its own transaction).
"""

from __future__ import annotations

import hashlib
import math
import re
from datetime import datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, insert, or_, select, update
from sqlmodel import Session

from fleet.errors import Conflict, Invalid, NotFound
from fleet.models import (
    Device,
    Release,
    Rollout,
    SigningKey,
    UpdateEvent,
    UpdateStatus,
    aware,
    utcnow,
)

if TYPE_CHECKING:
    from fleet.auth import DeviceRow

POSITIONS = 2**32
IN_PROGRESS = ("offered", "downloading", "installing", "installed")
WAITING = ("planned",) + IN_PROGRESS  # the states a deadline applies to
FAILED = ("failed", "rolled_back", "refused", "timeout")
DONE = ("committed",)
LEFT = ("skipped", "superseded")  # no longer members of their wave
OFFERED = IN_PROGRESS + ("timeout",)  # given the assignment while the rollout is active
UNFINISHED = ("planned",) + OFFERED  # a node its rollout still claims (overlap)
REPORTABLE = ("downloading", "installing", "installed", "committed", "failed", "rolled_back",
              "refused")
DEFAULT_DEADLINES = {"offered": 3600, "downloading": 7200, "installing": 1800,
                     "installed": 1800}
SWEEP_EVERY_S = 30
PERIOD_S = 86400
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


def window_span(window: dict[str, Any], now: datetime) -> tuple[datetime, datetime]:
    """The window's occurrence that is open at `now`, else the next one (UTC start and end)."""
    tz = ZoneInfo(window.get("tz", "UTC"))
    local = now.astimezone(tz)
    start_h, end_h = window["start_hour"], window["end_hour"]
    for days in (-1, 0, 1, 2):
        day = local.date() + timedelta(days=days)
        start = datetime.combine(day, time(start_h), tzinfo=tz)
        end_day = day if end_h > start_h else day + timedelta(days=1)
        end = datetime.combine(end_day, time(0), tzinfo=tz) + timedelta(hours=end_h)
        if end > now:
            return start.astimezone(now.tzinfo), end.astimezone(now.tzinfo)
    raise AssertionError("a daily window always has an occurrence within two days")


def window_for_node(window: dict[str, Any] | None, now: datetime) -> dict[str, int] | None:
    """The window as the assignment carries it: the open (else next) occurrence in epoch
    seconds and its period, so the node needs no time zone data and rolls it on by itself."""
    if not window:
        return None
    start, end = window_span(window, now)
    return {"start": int(start.timestamp()), "end": int(end.timestamp()), "period": PERIOD_S}


def open_seconds(window: dict[str, Any] | None, since: datetime, now: datetime,
                 enough: float) -> float:
    """Seconds of [since, now] inside the window (all of it without one), counted up to
    about `enough`."""
    if not window:
        return (now - since).total_seconds()
    total, at = 0.0, since
    for _ in range(400):
        start, end = window_span(window, at)
        if start >= now:
            break
        total += (min(end, now) - max(start, at)).total_seconds()
        if total >= enough:
            break
        at = end
    return total


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


def _overlaps(session: Session, device_ids: list[int]) -> dict[int, list[int]]:
    """Active or paused rollouts that still claim any of these nodes: rollout id -> node ids."""
    found: dict[int, list[int]] = {}
    for at in range(0, len(device_ids), 500):
        rows = session.execute(
            select(UpdateStatus.rollout_id, UpdateStatus.device_id)
            .join(Rollout, Rollout.id == UpdateStatus.rollout_id)
            .where(Rollout.state.in_(("active", "paused")),
                   UpdateStatus.state.in_(UNFINISHED),
                   UpdateStatus.device_id.in_(device_ids[at:at + 500]))).all()
        for rollout_id, device_id in rows:
            found.setdefault(rollout_id, []).append(device_id)
    return found


def _overlap_refusal(session: Session, overlaps: dict[int, list[int]]) -> str:
    """The 409's reason: which rollouts, on how many nodes, and how to say precedence."""
    parts = []
    for rid in sorted(overlaps):
        other = session.get(Rollout, rid)
        release = session.get(Release, other.release_id) if other else None
        uids = session.execute(select(Device.uid).where(Device.id.in_(overlaps[rid][:3]))
                               ).scalars().all()
        more = len(overlaps[rid]) - len(uids)
        parts.append(f"rollout {rid} ({release.version if release else '?'}, "
                     f"{other.state if other else '?'}) on {len(overlaps[rid])} node(s): "
                     f"{', '.join(uids)}{f' and {more} more' if more > 0 else ''}")
    return ("this rollout overlaps " + "; ".join(parts) + ". Say which takes precedence: "
            "\"precedence\": \"new\" offers this rollout first on the shared nodes, "
            "\"existing\" lets the other rollout(s) finish there first "
            "(lamplighter rollout create --precedence new|existing)")


def create_rollout(session: Session, release: Release, *, name: str, target: dict[str, Any],
                   waves: list[int], failure_threshold_pct: float,
                   success_threshold_pct: float | None, window: dict[str, Any] | None,
                   allow_downgrade: bool, actor: str,
                   deadlines: dict[str, int] | None = None,
                   precedence: str | None = None) -> Rollout:
    """Create a rollout; its waves are planned over the nodes that match it now, each of which
    gets a `planned` row, in the one transaction that creates it.

    Refused (409) when an active or paused rollout still claims one of those nodes, unless
    `precedence` says which goes first there: "new" (this one) or "existing".
    """
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
                      allow_downgrade=allow_downgrade, created_by=actor,
                      deadlines={**DEFAULT_DEADLINES, **(deadlines or {})})
    session.add(rollout)
    session.flush()
    devices = session.execute(select(Device).where(Device.status == "active")).scalars().all()
    members = [d for d in devices if eligible(rollout, release, d)]
    if not members:
        session.rollback()
        raise Invalid("no active node matches this target and runs an older version "
                      f"on a board the release supports ({', '.join(release.boards)})")
    overlaps = _overlaps(session, [d.id or 0 for d in members])
    if overlaps:
        if precedence is None:
            reason = _overlap_refusal(session, overlaps)
            session.rollback()
            raise Conflict(reason)
        others = session.execute(select(Rollout.priority).where(
            Rollout.id.in_(list(overlaps)))).scalars().all()
        rollout.priority = max(others) + 1 if precedence == "new" else min(others) - 1
    rollout.cutoffs, rollout.sizes = plan_waves(rollout.id or 0, [d.uid for d in members],
                                                waves)
    now = utcnow()
    session.execute(insert(UpdateStatus), [
        {"rollout_id": rollout.id, "device_id": d.id, "wave": wave_of(rollout, d.uid),
         "state": "planned", "detail": "", "reported": "", "updated_at": now, "since": now}
        for d in members])
    shared = f"; precedence {precedence} over rollout(s) {sorted(overlaps)}" if overlaps else ""
    session.add(UpdateEvent(rollout_id=rollout.id or 0, state="created",
                            detail=(f"by {actor}: {len(members)} nodes, waves {waves}"
                                    + shared)[:200]))
    session.commit()
    return rollout


def deadline_s(rollout: Rollout, state: str) -> int:
    """The rollout's deadline for a state (`planned` in a current wave: `offered`'s)."""
    key = "offered" if state == "planned" else state
    return int((rollout.deadlines or {}).get(key, DEFAULT_DEADLINES[key]))


def _event(session: Session, status: UpdateStatus, state: str, detail: str) -> None:
    session.add(UpdateEvent(rollout_id=status.rollout_id, device_id=status.device_id,
                            state=state, detail=detail[:200]))


def _move(session: Session, status: UpdateStatus, state: str, detail: str,
          now: datetime) -> None:
    """A node's row to a new state, its deadline clock restarted, with its history event."""
    status.state, status.detail, status.updated_at, status.since = state, detail[:200], now, now
    session.add(status)
    _event(session, status, state, detail)


def sweep(session: Session, rollout_id: int, now: datetime | None = None, *,
          throttle: bool = False) -> int:
    """Mark the overdue nodes of an active (or completed: its stragglers) rollout `timeout`
    and let the thresholds react.

    Runs in the caller's transaction, under the rollout's row lock; the caller commits. With
    `throttle` (check-ins) only when no request swept it in the last SWEEP_EVERY_S: the request
    that moves `swept_at` on sweeps, the others go on. A `planned` node decommissioned before
    its turn leaves its wave (`skipped`). Returns how many rows changed.
    """
    now = now or utcnow()
    if throttle:
        due = now - timedelta(seconds=SWEEP_EVERY_S)
        won = session.execute(update(Rollout).where(
            Rollout.id == rollout_id, Rollout.state == "active",
            or_(Rollout.swept_at.is_(None), Rollout.swept_at < due)).values(swept_at=now)
            .execution_options(synchronize_session=False))
        if not won.rowcount:  # type: ignore[attr-defined]
            return 0
    def overdue(rollout: Rollout) -> Any:
        shortest = min(deadline_s(rollout, s) for s in IN_PROGRESS)
        return select(UpdateStatus, Device.status).join(
            Device, Device.id == UpdateStatus.device_id).where(
            UpdateStatus.rollout_id == rollout_id, UpdateStatus.state.in_(WAITING),
            UpdateStatus.wave <= rollout.wave,
            UpdateStatus.since < now - timedelta(seconds=shortest))

    if not throttle:  # a read: take no lock and write nothing unless a node may be overdue
        rollout = session.get(Rollout, rollout_id)
        if rollout is None or session.execute(overdue(rollout).limit(1)).first() is None:
            return 0
    rollout = session.execute(select(Rollout).where(Rollout.id == rollout_id).with_for_update()
                              .execution_options(populate_existing=True)).scalar_one()
    if rollout.state not in ("active", "completed"):
        return 0  # a paused rollout's clocks stand still (resume restarts them)
    rows = session.execute(overdue(rollout)).all()
    changed = 0
    for status, device_status in rows:
        if status.state == "planned" and device_status != "active":
            _move(session, status, "skipped", f"node {device_status}", now)
            changed += 1
            continue  # a node retired before its turn leaves the wave
        limit = deadline_s(rollout, status.state)
        if open_seconds(rollout.window, aware(status.since), now, limit) < limit:
            continue
        what = ("not offered: no check-in" if status.state == "planned"
                else f"{status.state}, no further report")
        _move(session, status, "timeout", f"timeout: {what} for {limit} s"
              + (" of window time" if rollout.window else ""), now)
        changed += 1
    if changed and rollout.state == "active":
        session.flush()
        evaluate(session, rollout_id, now)
    return changed


def _supersede(session: Session, device_id: int, rollout_id: int, now: datetime) -> None:
    """The node is offered `rollout_id`: its unfinished downloads of other rollouts end there
    (the node drops a download or install for the new assignment)."""
    rows = session.execute(
        select(UpdateStatus).join(Rollout, Rollout.id == UpdateStatus.rollout_id)
        .where(UpdateStatus.device_id == device_id, UpdateStatus.rollout_id != rollout_id,
               UpdateStatus.state.in_(("offered", "downloading", "installing", "timeout")),
               Rollout.state.in_(("active", "paused")))).scalars().all()
    for status in rows:
        _move(session, status, "superseded", f"offered rollout {rollout_id} instead", now)


def assignment_for(session: Session, device: DeviceRow,
                   now: datetime | None = None) -> dict[str, Any] | None:
    """The update a node should be installing now, if any (recording that it was offered).

    Never a release whose signing key is revoked, whatever state its rollout is in. Rollouts
    are tried by precedence, then newest release first. A node not yet known to a rollout it
    is eligible for becomes a member of its wave here (a late joiner), offered at once when
    its wave is current and the window open. The assignment carries the window.
    """
    now = now or utcnow()
    if session.execute(select(Rollout.id).where(Rollout.state == "active").limit(1)).first() \
            is None:
        return None  # the usual case: nothing rolling out
    rows = session.execute(
        select(Rollout, Release).join(Release, Release.id == Rollout.release_id)
        .join(SigningKey, SigningKey.key_id == Release.key_id)
        .where(Rollout.state == "active", SigningKey.revoked_at.is_(None))
        .order_by(Rollout.priority.desc(), Release.sequence.desc())
    ).all()
    for rollout, release in rows:
        sweep(session, rollout.id or 0, now, throttle=True)
        if rollout.state != "active":
            continue  # paused by the sweep
        status = session.execute(select(UpdateStatus).where(
            UpdateStatus.rollout_id == rollout.id, UpdateStatus.device_id == device.id)
        ).scalar_one_or_none()
        if status is not None and status.state == "planned":
            if status.wave > rollout.wave or not window_open(rollout.window, now):
                continue
            if not eligible(rollout, release, device):
                _move(session, status, "skipped",
                      f"no longer eligible: runs {device.fw_version or 'no version'}", now)
                continue
            _move(session, status, "offered", f"wave {status.wave}", now)
            _supersede(session, device.id, rollout.id or 0, now)
        elif status is not None:
            if status.state not in OFFERED:
                continue  # finished here (committed, failed, refused…) or left the wave
        else:
            if not eligible(rollout, release, device):
                continue
            wave = wave_of(rollout, device.uid)
            current = wave <= rollout.wave and window_open(rollout.window, now)
            status = UpdateStatus(rollout_id=rollout.id or 0, device_id=device.id or 0,
                                  wave=wave, state="offered" if current else "planned",
                                  detail=f"wave {wave}, joined late", since=now, updated_at=now)
            session.add(status)
            _event(session, status, status.state, f"wave {wave}, joined late")
            if not current:
                continue
            _supersede(session, device.id, rollout.id or 0, now)
        assignment = {"rollout_id": rollout.id, "release_id": release.id,
                      "version": release.version, "sequence": release.sequence,
                      "size": release.bundle_size, "sha256": release.bundle_sha256,
                      "url": f"/device/v1/releases/{release.id}/bundle"}
        window = window_for_node(rollout.window, now)
        if window is not None:
            assignment["window"] = window
        return assignment
    return None


def record_report(session: Session, device: DeviceRow, rollout_id: int, state: str,
                  detail: str) -> None:
    """Store a node's update state change and let the rollout react to it.

    A node past its deadline (`timeout`) is still heard: its report goes into the history, and
    a final one (committed, failed, rolled back, refused) replaces the timeout. A `committed`
    report is checked against the version the same check-in says the node runs (its first
    check-in after committing); another version makes it `failed` (version_mismatch).
    """
    status = session.execute(select(UpdateStatus).where(
        UpdateStatus.rollout_id == rollout_id, UpdateStatus.device_id == device.id)
    ).scalar_one_or_none()
    if status is None or status.state == "planned" or status.reported == state:
        return  # not offered this rollout (yet), or nothing new
    now = utcnow()
    status.reported = state
    detail = detail[:200]
    if state == "committed":
        version = session.execute(select(Release.version).join(
            Rollout, Rollout.release_id == Release.id).where(Rollout.id == rollout_id)
        ).scalar_one()
        if device.fw_version != version:
            state = "failed"
            detail = (f"version_mismatch: reported committed but runs "
                      f"{device.fw_version or 'no version'}, release {version}")
    if status.state in ("skipped", "superseded") or (
            status.state == "timeout" and state not in FAILED + DONE):
        session.add(status)  # heard, but kept out of the counts it left (or never entered)
        _event(session, status, state, f"after {status.state}: {detail}")
        return
    if status.state == "timeout":
        detail = "after timeout: " + detail
    _move(session, status, state, detail, now)
    session.flush()
    if state in FAILED or state in DONE:
        evaluate(session, rollout_id, now)


def _wave_counts(session: Session, rollout_id: int, wave: int) -> dict[str, int]:
    rows = session.execute(
        select(UpdateStatus.state, func.count()).where(UpdateStatus.rollout_id == rollout_id,
                                                       UpdateStatus.wave == wave)
        .group_by(UpdateStatus.state)).all()
    return {state: count for state, count in rows}


def _members(counts: dict[str, int]) -> int:
    """A wave's members: every node in it now (late joiners too), less those that left."""
    return sum(n for state, n in counts.items() if state not in LEFT)


def _start_wave(session: Session, rollout: Rollout, now: datetime) -> None:
    """The next wave begins: its planned nodes' deadline clocks start now."""
    rollout.wave += 1
    session.add(rollout)
    session.execute(update(UpdateStatus).where(
        UpdateStatus.rollout_id == rollout.id, UpdateStatus.wave == rollout.wave,
        UpdateStatus.state == "planned").values(since=now))


def evaluate(session: Session, rollout_id: int, now: datetime | None = None) -> None:
    """Pause on too many failures in any wave; advance when the current wave succeeded enough,
    or when every member of it has settled (committed, failed or timed out) with failures
    under the failure threshold: a wave never waits on a node that cannot answer any more.

    Both percentages are over the wave's members now (late joiners included); a timeout is a
    failure.
    """
    now = now or utcnow()
    rollout = session.execute(select(Rollout).where(Rollout.id == rollout_id)
                              .with_for_update()).scalar_one()
    if rollout.state != "active":
        return
    for wave in range(rollout.wave + 1):
        counts = _wave_counts(session, rollout_id, wave)
        failed = sum(counts.get(s, 0) for s in FAILED)
        size = _members(counts)
        if failed and 100 * failed / max(1, size) >= rollout.failure_threshold_pct:
            timed = counts.get("timeout", 0)
            _set_state(session, rollout, "paused",
                       f"wave {wave}: {failed} of {size} nodes failed"
                       + (f", {timed} of them timed out" if timed else "")
                       + f" (threshold {rollout.failure_threshold_pct:g} %)")
            return
    if rollout.success_threshold_pct is None:
        return
    while rollout.state == "active":
        counts = _wave_counts(session, rollout_id, rollout.wave)
        size = _members(counts)
        done = counts.get("committed", 0)
        why = f"{done} of {size} committed"
        if size and 100 * done / size < rollout.success_threshold_pct:
            if any(counts.get(s, 0) for s in WAITING):
                return  # still waiting on nodes that may commit
            failed = sum(counts.get(s, 0) for s in FAILED)
            why += (f", the other {failed} failed ({counts.get('timeout', 0)} timed out), "
                    "under the failure threshold")
        if rollout.wave + 1 >= len(rollout.waves):
            _set_state(session, rollout, "completed", f"last wave: {why}")
            return
        _start_wave(session, rollout, now)
        session.add(UpdateEvent(rollout_id=rollout_id, state="advanced",
                                detail=f"to wave {rollout.wave} after {why}"[:200]))


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
    now = utcnow()
    if action == "advance":
        if rollout.wave + 1 >= len(rollout.waves):
            raise Conflict("rollout is already at its last wave")
        _start_wave(session, rollout, now)
        session.add(UpdateEvent(rollout_id=rollout.id or 0, state="advanced",
                                detail=f"to wave {rollout.wave} by {actor}"))
    else:
        new = {"pause": "paused", "resume": "active", "abort": "aborted"}[action]
        _set_state(session, rollout, new, f"{action} by {actor}")
    if action == "resume":
        # nodes held while it was paused: their deadlines start again now
        session.execute(update(UpdateStatus).where(
            UpdateStatus.rollout_id == rollout.id, UpdateStatus.state.in_(WAITING))
            .values(since=now))
        session.flush()
        evaluate(session, rollout.id or 0, now)
    session.commit()
    return rollout


def rollout_summary(session: Session, rollout: Rollout) -> list[dict[str, Any]]:
    """Per wave: its percentage, planned size, members now, and how many nodes are in each
    state (committed, failed with timeouts among them)."""
    rows = session.execute(
        select(UpdateStatus.wave, UpdateStatus.state, func.count())
        .where(UpdateStatus.rollout_id == rollout.id)
        .group_by(UpdateStatus.wave, UpdateStatus.state)).all()
    waves: list[dict[str, Any]] = [
        {"wave": i, "percent": pct, "planned": rollout.sizes[i], "states": {}}
        for i, pct in enumerate(rollout.waves)]
    for wave, state, count in rows:
        waves[wave]["states"][state] = count
    for w in waves:
        counts = w["states"]
        w.update(members=_members(counts), committed=counts.get("committed", 0),
                 failed=sum(counts.get(s, 0) for s in FAILED),
                 timed_out=counts.get("timeout", 0))
    return waves
