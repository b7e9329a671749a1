"""A node's check-in: record its state, acknowledge its commands, answer with what it should do."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import select, update
from sqlmodel import Session

from fleet.models import Command, ConfigProfile, Device, utcnow
from fleet.rollouts import assignment_for, record_report
from fleet.schemas import CheckIn, CheckInReply, PendingCommand
from fleet.settings import get_settings

MAX_COMMANDS_PER_REPLY = 10


def desired_config(session: Session, device: Device) -> tuple[int, dict[str, Any]]:
    """The node's desired configuration: its group's, overridden key by key by its own.

    The version is the sum of the two profiles' versions: both only grow, so any change to
    either gives the node a higher number than it has applied.
    """
    rows = session.execute(
        select(ConfigProfile).where(
            ((ConfigProfile.scope == "group") & (ConfigProfile.target == device.group_name))
            | ((ConfigProfile.scope == "device") & (ConfigProfile.target == device.uid))
        )
    ).scalars().all()
    by_scope = {r.scope: r for r in rows}
    version, body = 0, {}
    for scope in ("group", "device"):
        if scope in by_scope:
            version += by_scope[scope].version
            body.update(by_scope[scope].body)
    return version, body


def handle_checkin(session: Session, device: Device, report: CheckIn) -> CheckInReply:
    """Apply one check-in in a single transaction and build the reply."""
    assert device.id is not None
    now = utcnow()
    device.last_seen = now
    device.fw_version = report.fw_version
    device.applied_config_version = report.config_version
    device.last_status = report.model_dump(exclude={"acks"}, exclude_none=True, mode="json")
    session.add(device)
    for ack in report.acks:
        session.execute(
            update(Command)
            .where(Command.id == ack.id, Command.device_id == device.id,
                   Command.acked_at.is_(None))
            .values(acked_at=now, result=(ack.result or ("ok" if ack.ok else "failed"))[:200])
        )
    if report.update is not None:
        record_report(session, device, report.update.rollout_id, report.update.state,
                      report.update.detail)
    acked = {a.id for a in report.acks}
    pending = [
        c for c in session.execute(
            select(Command).where(Command.device_id == device.id, Command.acked_at.is_(None))
            .order_by(Command.id).limit(MAX_COMMANDS_PER_REPLY + len(acked))
        ).scalars().all() if c.id not in acked
    ][:MAX_COMMANDS_PER_REPLY]
    for cmd in pending:
        if cmd.delivered_at is None:
            cmd.delivered_at = now
            session.add(cmd)
    version, body = desired_config(session, device)
    reply = CheckInReply(
        server_time=int(time.time()),
        next_checkin_s=get_settings().checkin_interval_s,
        commands=[PendingCommand(id=c.id or 0, type=c.type, args=c.args) for c in pending],
        update=assignment_for(session, device, now),
    )
    if version > report.config_version:
        reply.config_version, reply.config = version, body
    session.commit()
    return reply
