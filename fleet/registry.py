"""The node registry: register, enrollment codes, rotate keys, decommission (a transaction each)."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlmodel import Session

from fleet.core.crypto import (
    encrypt_secret,
    hash_token,
    new_device_secret,
    new_enrollment_code,
)
from fleet.core.settings import get_settings
from fleet.errors import Conflict, Forbidden, Gone, NotFound
from fleet.models import Device, DeviceEvent, Enrollment, utcnow
from fleet.schemas import DeviceCredentials, DeviceRegistration


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


def rotate_key(session: Session, uid: str, actor: str) -> DeviceCredentials:
    """Give the node a new secret; the old one stops working at once."""
    device = get_device(session, uid)
    if device.status != "active":
        raise Conflict(f"device {uid} is {device.status}; its key cannot be rotated")
    secret = new_device_secret()
    device.secret_enc = encrypt_secret(get_settings().master_key_bytes(), secret, uid)
    device.key_version += 1
    assert device.id is not None
    session.add(DeviceEvent(device_id=device.id, kind="key_rotated",
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


def redeem_enrollment(session: Session, code: str) -> DeviceCredentials:
    """Exchange a one-time code for the node's identity; issues a fresh secret (key rotation)."""
    row = session.execute(
        select(Enrollment).where(Enrollment.code_hash == hash_token(code.strip().upper()))
    ).scalar_one_or_none()
    now = datetime.now(UTC)
    if row is None:
        raise NotFound("unknown enrollment code")
    if row.used_at is not None:
        raise Conflict("enrollment code already used; ask an operator for a new one")
    expires = row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=UTC)
    if expires < now:
        raise Gone("enrollment code expired; ask an operator for a new one")
    device = session.get(Device, row.device_id)
    assert device is not None
    if device.status != "active":
        raise Forbidden(f"device is {device.status}")
    row.used_at = now
    session.add(row)
    session.flush()
    creds = rotate_key(session, device.uid, actor="enrollment")
    return creds
