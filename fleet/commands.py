"""Operator commands for a node: checked and queued here, delivered and acknowledged at check-in.

A command's life: queued, delivered (sent in a check-in reply, and again in every reply until
the node answers), then acked (the node's answer: ok, or refused with a reason, and what it
did) — or expired, when `expires_at` passes before the node answered: it is no longer
delivered. A late answer to a command the node did receive is still recorded (it was carried
out), so an acked command may have been acknowledged after its expiry. The state is derived
from the row's times when it is read; nothing needs to run when a command expires.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import ColumnElement, and_, select
from sqlmodel import Session

from fleet.errors import Conflict, Invalid, NotFound
from fleet.models import Command, aware, utcnow
from fleet.registry import get_device
from fleet.schemas import COMMAND_TTL_S

MAX_LISTED = 200

CommandState = Literal["queued", "delivered", "acked", "expired"]


def queue_command(session: Session, uid: str, kind: str, args: dict[str, Any],
                  expires_in_s: int = COMMAND_TTL_S) -> Command:
    """Queue a command for an active node's next check-in (a retired node's is a Conflict).

    It expires `expires_in_s` seconds from now (the API bounds it) unless the node answers.
    """
    device = get_device(session, uid)
    if device.status != "active":
        raise Conflict(f"device {uid} is {device.status}")
    if kind == "lamp_override":
        level, minutes = args.get("level_pct"), args.get("minutes", 60)
        if not isinstance(level, int | float) or not 0 <= level <= 100:
            raise Invalid("lamp_override needs args.level_pct between 0 and 100")
        if not isinstance(minutes, int) or not 1 <= minutes <= 1440:
            raise Invalid("lamp_override args.minutes must be 1–1440")
    now = utcnow()
    cmd = Command(device_id=device.id or 0, type=kind, args=args, created_at=now,
                  expires_at=now + timedelta(seconds=expires_in_s))
    session.add(cmd)
    session.commit()
    return cmd


def deliverable(now: datetime) -> ColumnElement[bool]:
    """The commands a check-in at `now` delivers: not answered, not expired."""
    return and_(Command.acked_at.is_(None), Command.expires_at > now)


def command_state(cmd: Command, now: datetime | None = None) -> CommandState:
    """Where the command is in its life at `now`."""
    if cmd.acked_at is not None:
        return "acked"
    if aware(cmd.expires_at) <= (now or utcnow()):
        return "expired"
    return "delivered" if cmd.delivered_at is not None else "queued"


def recent_commands(session: Session, uid: str) -> list[Command]:
    """The node's latest commands, newest first."""
    device = get_device(session, uid)
    return list(session.execute(select(Command).where(Command.device_id == device.id)
                                .order_by(Command.id.desc()).limit(MAX_LISTED)).scalars())


def get_command(session: Session, uid: str, command_id: int) -> Command:
    """One of the node's commands (another node's is not found)."""
    device = get_device(session, uid)
    cmd = session.execute(select(Command).where(Command.id == command_id,
                                                Command.device_id == device.id)).scalar()
    if cmd is None:
        raise NotFound(f"no command {command_id} for device {uid}")
    return cmd
