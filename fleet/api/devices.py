"""Nodes: register, list, inspect, override configuration (and read what the node reports of
it), read their events, decommission."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import select

from fleet.api.deps import OPERATOR, TECHNICIAN, ReaderDep, SessionDep, audited
from fleet.audit import AuditEntry, Created
from fleet.config_profiles import config_view, set_device_config
from fleet.config_schema import leaves
from fleet.core.settings import get_settings
from fleet.device_events import EventFilter, read_events
from fleet.models import Device, aware, utcnow
from fleet.registry import decommission, get_device, register_devices
from fleet.schemas import (
    ConfigBody,
    ConfigOut,
    ConfigView,
    DeviceBatch,
    DeviceCredentials,
    DeviceEventOut,
    DeviceOut,
    DeviceRegistration,
    EventPage,
    EventQuery,
)

router = APIRouter(tags=["devices"])


def device_out(device: Device) -> DeviceOut:
    """The API view of a device; `online` is derived from the silence since its last check-in."""
    last_seen = aware(device.last_seen)
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
def register_one(body: DeviceRegistration, audit: Annotated[AuditEntry, audited(
                     "device.register", "devices", TECHNICIAN, Created(Device, "device:{uid}"))],
                 session: SessionDep) -> DeviceCredentials:
    """Register one node; the response is the only time its secret is shown."""
    audit.target = f"pole:{body.pole_id}"
    audit.detail.update(pole_id=body.pole_id, group=body.group, board=body.board)
    return register_devices(session, [body], enrollment=False, enrollment_ttl_days=30,
                            actor=audit.actor)[0]


@router.post("/devices/batch", response_model=list[DeviceCredentials], status_code=201,
             responses={409: {"description": "a pole id is taken; nothing was registered"}})
def register_batch(body: DeviceBatch, audit: Annotated[AuditEntry, audited(
                       "device.register", "devices", TECHNICIAN, Created(Device, "device:{uid}"))],
                   session: SessionDep) -> list[DeviceCredentials]:
    """Register many nodes in one transaction (one audit record each), optionally with
    enrollment codes."""
    audit.detail.update(batch=len(body.devices), enrollment=body.enrollment)
    return register_devices(session, body.devices, enrollment=body.enrollment,
                            enrollment_ttl_days=body.enrollment_ttl_days, actor=audit.actor)


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
def show_device(device_id: str, _: ReaderDep, session: SessionDep) -> DeviceOut:
    """One node with its last reported state."""
    return device_out(get_device(session, device_id))


@router.post("/devices/{device_id}/decommission", response_model=DeviceOut,
             responses={404: {"description": "no such device"}})
def retire(device_id: str, audit: Annotated[AuditEntry, audited(
               "device.decommission", "device:{device_id}", OPERATOR)],
           session: SessionDep) -> DeviceOut:
    """Retire a node: its requests are refused; its telemetry is kept."""
    return device_out(decommission(session, device_id, audit.actor))


@router.put("/devices/{device_id}/config", response_model=ConfigOut,
            responses={404: {"description": "no such device"}})
def put_device_config(device_id: str, body: ConfigBody, audit: Annotated[AuditEntry, audited(
                          "config.set", "device:{device_id}", OPERATOR)],
                      session: SessionDep) -> ConfigOut:
    """Override configuration keys for one node (merged deeply over its group's, key by key).

    Checked against the node's configuration schema over its group's configuration: a 422
    names each refused key (`loc`) and its rule (`msg`)."""
    audit.detail["keys"] = sorted(leaves(body.config))
    row = set_device_config(session, device_id, body.config)
    return ConfigOut(scope="device", target=device_id, version=row.version, config=row.body)


@router.get("/devices/{device_id}/config", response_model=ConfigView,
            responses={404: {"description": "no such device"}})
def get_device_config(device_id: str, _: ReaderDep, session: SessionDep) -> ConfigView:
    """A node's stored overrides and its desired configuration (defaults < group < node,
    merged deeply), each key with its source; and what the node reports: the version it last
    applied, the version it refused and why (while that refusal stands), and whether it is
    drifting (behind its desired version for more than two check-ins in a row)."""
    return ConfigView.model_validate(config_view(session, "device", device_id))


@router.get("/devices/{device_id}/events", response_model=EventPage,
            responses={404: {"description": "no such device"}})
def list_device_events(device_id: str, _: ReaderDep, session: SessionDep,
                       q: Annotated[EventQuery, Query()]) -> EventPage:
    """What happened to the node, newest first: registered, enrollment_issued, key rotations,
    key_retired, keyset_error and config_refused (the node's reason), telemetry_conflict,
    decommissioned. Filter by kind and time; page with `cursor`."""
    rows, cursor = read_events(session, device_id, EventFilter(
        kind=q.kind, since=q.since, until=q.until, before=q.cursor, limit=q.limit))
    return EventPage(events=[DeviceEventOut(id=e.id or 0, at=aware(e.at), kind=e.kind,
                                            detail=e.detail) for e in rows],
                     next_cursor=cursor)
