"""The node registry: register, enrollment codes, rotate keys, decommission (a transaction each)."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from fleet.core.crypto import (
    encrypt_secret,
    hash_token,
    new_device_secret,
    new_enrollment_code,
)
from fleet.core.settings import get_settings
from fleet.errors import Conflict, Forbidden, Gone, NotFound, TooMany
from fleet.models import Device, DeviceEvent, EnrollAttempt, Enrollment, utcnow
from fleet.schemas import DeviceCredentials, DeviceRegistration, KeyRotation


def _new_uid() -> str:
    return "ll-" + secrets.token_hex(6)


def register_devices(session: Session, regs: list[DeviceRegistration], *, enrollment: bool,
                     enrollment_ttl_days: int, actor: str) -> list[DeviceCredentials]:
    """Create nodes with fresh secrets; all or nothing (a duplicate pole id refuses the batch)."""
    poles = [r.pole_id for r in regs]
    dupes = sorted({p for p in poles if poles.count(p) > 1})
    if dupes:
        raise Conflict(f"pole ids repeated in the batch: {', '.join(dupes)}")
    taken = session.execute(select(Device.pole_id).where(Device.pole_id.in_(poles))).scalars().all()
    if taken:
        raise Conflict(f"pole ids already registered: {', '.join(sorted(taken))}; "
                       "nothing was registered")
    key = get_settings().master_key_bytes()
    out: list[DeviceCredentials] = []
    for reg in regs:
        uid = _new_uid()
        secret = new_device_secret()
        device = Device(uid=uid, pole_id=reg.pole_id, district=reg.district,
                        group_name=reg.group, lat=reg.lat, lon=reg.lon, board=reg.board,
                        tags=list(reg.tags), secret_enc=encrypt_secret(key, secret, uid))
        session.add(device)
        session.flush()
        assert device.id is not None
        session.add(DeviceEvent(device_id=device.id, kind="registered", detail={"by": actor}))
        code = None
        if enrollment:
            code = new_enrollment_code()
            session.add(Enrollment(code_hash=hash_token(code), device_id=device.id,
                                   expires_at=utcnow() + timedelta(days=enrollment_ttl_days)))
        out.append(DeviceCredentials(device_id=uid, pole_id=reg.pole_id, secret=secret.hex(),
                                     key_version=1, enrollment_code=code))
    session.commit()
    return out


def get_device(session: Session, uid: str) -> Device:
    """The device with public id `uid`; NotFound names it."""
    device = session.execute(select(Device).where(Device.uid == uid)).scalar_one_or_none()
    if device is None:
        raise NotFound(f"no device {uid}")
    return device


def rotate_key(session: Session, uid: str, actor: str) -> KeyRotation:
    """Start an over-the-air rotation: a next key, delivered in the node's check-in replies
    (hidden under its current key); both keys are accepted until the node signs with the
    next, which then becomes the only one. Refused while one is already pending."""
    device = get_device(session, uid)
    if device.status != "active":
        raise Conflict(f"device {uid} is {device.status}; its key cannot be rotated")
    next_version = device.key_version + 1
    if device.next_secret_enc is not None:
        raise Conflict(f"device {uid} has a rotation to key version {next_version} pending "
                       "(it is delivered at the node's next check-in and takes effect when the "
                       "node signs with it); to cut the node off now, retire its key instead")
    device.next_secret_enc = encrypt_secret(get_settings().master_key_bytes(),
                                            new_device_secret(), uid)
    assert device.id is not None
    session.add(DeviceEvent(device_id=device.id, kind="key_rotation_started",
                            detail={"by": actor, "next_key_version": next_version}))
    session.commit()
    return KeyRotation(device_id=uid, key_version=device.key_version,
                       next_key_version=next_version,
                       detail="the next key goes to the node at its next check-in; the current "
                              "key stays valid until the node signs with the next")


def retire_key(session: Session, uid: str, actor: str) -> DeviceCredentials:
    """Give the node a new secret now; the old one (and any pending rotation) stops working
    at once, so the node must be re-provisioned with the secret returned (a compromised
    node, a lost identity)."""
    device = get_device(session, uid)
    if device.status != "active":
        raise Conflict(f"device {uid} is {device.status}; its key cannot be retired")
    secret = new_device_secret()
    device.secret_enc = encrypt_secret(get_settings().master_key_bytes(), secret, uid)
    device.next_secret_enc = None
    device.key_version += 1
    assert device.id is not None
    session.add(DeviceEvent(device_id=device.id, kind="key_retired",
                            detail={"by": actor, "key_version": device.key_version}))
    session.commit()
    return DeviceCredentials(device_id=uid, pole_id=device.pole_id, secret=secret.hex(),
                             key_version=device.key_version)


def decommission(session: Session, uid: str, actor: str) -> Device:
    """Retire a node: its signature is refused from now on; its telemetry stays."""
    device = get_device(session, uid)
    if device.status != "decommissioned":
        device.status = "decommissioned"
        assert device.id is not None
        session.add(DeviceEvent(device_id=device.id, kind="decommissioned", detail={"by": actor}))
        session.commit()
    return device


def issue_enrollment(session: Session, uid: str, ttl_days: int, actor: str) -> str:
    """A new one-time enrollment code for an active node."""
    device = get_device(session, uid)
    if device.status != "active":
        raise Conflict(f"device {uid} is {device.status}")
    code = new_enrollment_code()
    assert device.id is not None
    session.add(Enrollment(code_hash=hash_token(code), device_id=device.id,
                           expires_at=utcnow() + timedelta(days=ttl_days)))
    session.add(DeviceEvent(device_id=device.id, kind="enrollment_issued", detail={"by": actor}))
    session.commit()
    return code


# A node whose enrollment reply was lost (a power cut, a dropped connection) redeems its code
# again: within this time, and while the identity it was given has not been used, it gets a
# fresh one and the previous is retired.
ENROLL_GRACE = timedelta(hours=1)
# Per window: attempts on one code (guessing or hammering it), and refused attempts from one
# address (guessing codes; a depot's nodes enrolling at once behind one address all succeed).
ENROLL_LIMITS = {"code": (10, 3600), "addr": (30, 600)}


def _count(session: Session, bucket: str, window_s: int, add: int) -> tuple[int, int]:
    """Add `add` to a fixed-window counter, committed at once; (its count, seconds until its
    window ends)."""
    now = utcnow()
    bucket = bucket[:80]
    for _ in range(2):
        row = session.get(EnrollAttempt, bucket, with_for_update=True)
        if row is None:
            row = EnrollAttempt(bucket=bucket, window_start=now, count=0)
        start = row.window_start if row.window_start.tzinfo else \
            row.window_start.replace(tzinfo=UTC)
        if (now - start).total_seconds() >= window_s:
            row.window_start, row.count, start = now, 0, now
        row.count += add
        session.add(row)
        try:
            session.commit()
            break
        except IntegrityError:  # another request made the bucket first: count there
            session.rollback()
    return row.count, int(window_s - (now - start).total_seconds()) + 1


def admit_enrollment(session: Session, code: str, address: str) -> None:
    """Count the attempt against its code; TooMany when the code has had too many attempts
    or the address too many refusals in their windows."""
    limit, window_s = ENROLL_LIMITS["addr"]
    refused, retry = _count(session, f"addr:{address}", window_s, 0)
    if refused >= limit:
        raise TooMany(f"too many refused enrollment attempts from this address; try again in "
                      f"{retry} s", retry)
    limit, window_s = ENROLL_LIMITS["code"]
    tries, retry = _count(session, f"code:{hash_token(code.strip().upper())}", window_s, 1)
    if tries > limit:
        raise TooMany(f"too many enrollment attempts for this code; try again in {retry} s",
                      retry)


def count_refused_enrollment(session: Session, address: str) -> None:
    """A refused redemption (unknown, used, expired code) counts against its address."""
    _count(session, f"addr:{address}", ENROLL_LIMITS["addr"][1], 1)


def redeem_enrollment(session: Session, code: str) -> DeviceCredentials:
    """Exchange a one-time code for the node's identity; issues a fresh secret (key rotation).

    A code already redeemed is accepted again within ENROLL_GRACE while its identity has not
    been used (the node never got the reply): a fresh identity, the previous one retired.
    """
    row = session.execute(
        select(Enrollment).where(Enrollment.code_hash == hash_token(code.strip().upper()))
    ).scalar_one_or_none()
    now = datetime.now(UTC)
    if row is None:
        raise NotFound("unknown enrollment code")
    expires = row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=UTC)
    device = session.get(Device, row.device_id)
    assert device is not None
    if row.used_at is not None:
        used = row.used_at if row.used_at.tzinfo else row.used_at.replace(tzinfo=UTC)
        seen = device.last_seen
        seen = seen if seen is None or seen.tzinfo else seen.replace(tzinfo=UTC)
        if now - used > ENROLL_GRACE or (seen is not None and seen >= used):
            raise Conflict("enrollment code already used; ask an operator for a new one")
    elif expires < now:
        raise Gone("enrollment code expired; ask an operator for a new one")
    if device.status != "active":
        raise Forbidden(f"device is {device.status}")
    again = row.used_at is not None
    row.used_at = now
    session.add(row)
    session.flush()
    return retire_key(session, device.uid, actor="enrollment again" if again else "enrollment")
