"""Operator API for nodes: register, list, inspect, configure, command, rotate, decommission."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Response
from sqlalchemy import func, select
from sqlmodel import Session

from fleet.api.deps import OperatorDep, ReaderDep, SessionDep, TechnicianDep
from fleet.core.settings import get_settings
from fleet.errors import Conflict, Invalid
from fleet.models import Command, ConfigProfile, Device, utcnow
from fleet.registry import (
    decommission,
    get_device,
    issue_enrollment,
    register_devices,
    rotate_key,
)
from fleet.schemas import (
    CommandIn,
    CommandOut,
    ConfigBody,
    ConfigOut,
    DeviceBatch,
    DeviceCredentials,
    DeviceOut,
    DeviceRegistration,
    Name,
)

router = APIRouter(prefix="/api/v1", tags=["devices"])


def _aware(ts: datetime | None) -> datetime | None:
    if ts is None or ts.tzinfo is not None:
        return ts
    return ts.replace(tzinfo=UTC)  # SQLite hands back naive UTC timestamps


def device_out(device: Device) -> DeviceOut:
    """The API view of a device; `online` is derived from the silence since its last check-in."""
    last_seen = _aware(device.last_seen)
    cutoff = utcnow() - timedelta(seconds=get_settings().offline_after_s)
    return DeviceOut(
        device_id=device.uid, pole_id=device.pole_id, district=device.district,
        group=device.group_name, lat=device.lat, lon=device.lon, board=device.board,
        tags=device.tags, status=device.status,
        online=device.status == "active" and last_seen is not None and last_seen >= cutoff,
        last_seen=last_seen, fw_version=device.fw_version,
        applied_config_version=device.applied_config_version, key_version=device.key_version,
        last_status=device.last_status, keyset=device.keyset_serial,
        keyset_error=device.keyset_error)


@router.post("/devices", response_model=DeviceCredentials, status_code=201,
             responses={409: {"description": "pole id already registered"}})
def register_one(body: DeviceRegistration, caller: TechnicianDep,
                 session: SessionDep) -> DeviceCredentials:
    """Register one node; the response is the only time its secret is shown."""
    return register_devices(session, [body], enrollment=False, enrollment_ttl_days=30,
                            actor=caller.name)[0]


@router.post("/devices/batch", response_model=list[DeviceCredentials], status_code=201,
             responses={409: {"description": "a pole id is taken; nothing was registered"}})
def register_batch(body: DeviceBatch, caller: TechnicianDep,
                   session: SessionDep) -> list[DeviceCredentials]:
    """Register many nodes in one transaction, optionally with enrollment codes."""
    return register_devices(session, body.devices, enrollment=body.enrollment,
                            enrollment_ttl_days=body.enrollment_ttl_days, actor=caller.name)


@router.get("/devices", response_model=list[DeviceOut])
def list_devices(
    _: ReaderDep, session: SessionDep,
    group: str | None = None, district: str | None = None, tag: str | None = None,
    status: Annotated[str | None, Query(pattern="^(active|decommissioned)$")] = None,
    online: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[DeviceOut]:
    """List nodes, filtered by group, district, tag, status and online state."""
    query = select(Device).order_by(Device.id)
    if group:
        query = query.where(Device.group_name == group)
    if district:
        query = query.where(Device.district == district)
    if status:
        query = query.where(Device.status == status)
    if online is not None:
        cutoff = utcnow() - timedelta(seconds=get_settings().offline_after_s)
        seen = Device.last_seen >= cutoff
        query = query.where((Device.status == "active") & seen if online else
                            (Device.status != "active") | Device.last_seen.is_(None) | ~seen)
    rows = session.execute(query).scalars().all()
    if tag:
        rows = [d for d in rows if tag in d.tags]
    return [device_out(d) for d in rows[offset:offset + limit]]


@router.get("/devices/{device_id}", response_model=DeviceOut,
            responses={404: {"description": "no such device"}})
def show_device(device_id: str, _: ReaderDep,
                session: SessionDep) -> DeviceOut:
    """One node with its last reported state."""
    return device_out(get_device(session, device_id))


@router.post("/devices/{device_id}/rotate-key", response_model=DeviceCredentials,
             responses={404: {"description": "no such device"}, 409: {"description": "retired"}})
def rotate(device_id: str, caller: TechnicianDep,
           session: SessionDep) -> DeviceCredentials:
    """Issue a new secret for the node; the old one is refused from now on."""
    return rotate_key(session, device_id, caller.name)


@router.post("/devices/{device_id}/decommission", response_model=DeviceOut,
             responses={404: {"description": "no such device"}})
def retire(device_id: str, caller: OperatorDep,
           session: SessionDep) -> DeviceOut:
    """Retire a node: its requests are refused; its telemetry is kept."""
    return device_out(decommission(session, device_id, caller.name))


@router.post("/devices/{device_id}/enrollment", status_code=201,
             responses={404: {"description": "no such device"}, 409: {"description": "retired"}})
def new_enrollment(device_id: str, caller: TechnicianDep, session: SessionDep,
                   ttl_days: Annotated[int, Query(ge=1, le=365)] = 30) -> dict[str, str]:
    """A one-time code the node's factory image redeems on first boot."""
    return {"device_id": device_id,
            "enrollment_code": issue_enrollment(session, device_id, ttl_days, caller.name)}


def _put_config(session: Session, scope: str, target: str, body: ConfigBody) -> ConfigOut:
    row = session.execute(select(ConfigProfile).where(
        ConfigProfile.scope == scope, ConfigProfile.target == target)).scalar_one_or_none()
    if row is None:
        row = ConfigProfile(scope=scope, target=target, version=1, body=body.config)
    else:
        row.version += 1
        row.body = body.config
        row.updated_at = utcnow()
    session.add(row)
    session.commit()
    return ConfigOut(scope=scope, target=target, version=row.version, config=row.body)


@router.put("/groups/{group}/config", response_model=ConfigOut)
def put_group_config(group: Name, body: ConfigBody, _: OperatorDep,
                     session: SessionDep) -> ConfigOut:
    """Set the desired configuration of a group; its nodes receive it at their next check-in."""
    return _put_config(session, "group", group, body)


@router.put("/devices/{device_id}/config", response_model=ConfigOut,
            responses={404: {"description": "no such device"}})
def put_device_config(device_id: str, body: ConfigBody, _: OperatorDep,
                      session: SessionDep) -> ConfigOut:
    """Override configuration keys for one node (merged over its group's)."""
    get_device(session, device_id)
    return _put_config(session, "device", device_id, body)


def _command_out(cmd: Command, uid: str) -> CommandOut:
    return CommandOut(id=cmd.id or 0, device_id=uid, type=cmd.type, args=cmd.args,
                      created_at=_aware(cmd.created_at) or cmd.created_at,
                      delivered_at=_aware(cmd.delivered_at), acked_at=_aware(cmd.acked_at),
                      result=cmd.result)


@router.post("/devices/{device_id}/commands", response_model=CommandOut, status_code=201,
             responses={404: {"description": "no such device"}, 409: {"description": "retired"},
                        422: {"description": "bad arguments"}})
def send_command(device_id: str, body: CommandIn, _: OperatorDep,
                 session: SessionDep) -> CommandOut:
    """Queue a command (reboot, identify, lamp_override) for the node's next check-in."""
    device = get_device(session, device_id)
    if device.status != "active":
        raise Conflict(f"device {device_id} is {device.status}")
    if body.type == "lamp_override":
        level, minutes = body.args.get("level_pct"), body.args.get("minutes", 60)
        if not isinstance(level, int | float) or not 0 <= level <= 100:
            raise Invalid("lamp_override needs args.level_pct between 0 and 100")
        if not isinstance(minutes, int) or not 1 <= minutes <= 1440:
            raise Invalid("lamp_override args.minutes must be 1–1440")
    cmd = Command(device_id=device.id or 0, type=body.type, args=body.args)
    session.add(cmd)
    session.commit()
    return _command_out(cmd, device.uid)


@router.get("/devices/{device_id}/commands", response_model=list[CommandOut],
            responses={404: {"description": "no such device"}})
def list_commands(device_id: str, _: ReaderDep,
                  session: SessionDep) -> list[CommandOut]:
    """The node's commands, newest first, with delivery and acknowledgement times."""
    device = get_device(session, device_id)
    rows = session.execute(select(Command).where(Command.device_id == device.id)
                           .order_by(Command.id.desc()).limit(200)).scalars().all()
    return [_command_out(c, device.uid) for c in rows]


@router.get("/fleet/summary")
def fleet_summary(_: ReaderDep,
                  session: SessionDep) -> dict[str, int]:
    """Counts for the dashboard: nodes registered, active, online, decommissioned."""
    cutoff = utcnow() - timedelta(seconds=get_settings().offline_after_s)
    total = session.execute(select(func.count(Device.id))).scalar_one()
    active = session.execute(select(func.count(Device.id))
                             .where(Device.status == "active")).scalar_one()
    online = session.execute(select(func.count(Device.id)).where(
        Device.status == "active", Device.last_seen >= cutoff)).scalar_one()
    return {"registered": total, "active": active, "online": online,
            "offline": active - online, "decommissioned": total - active}


@router.get("/healthz", include_in_schema=False)
def healthz() -> Response:
    return Response("ok", media_type="text/plain")
