"""Operator commands for a node: checked and queued here, delivered and acknowledged at check-in."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlmodel import Session

from fleet.errors import Conflict, Invalid
from fleet.models import Command
from fleet.registry import get_device

MAX_LISTED = 200


def queue_command(session: Session, uid: str, kind: str, args: dict[str, Any]) -> Command:
    """Queue a command for an active node's next check-in (a retired node's is a Conflict)."""
    device = get_device(session, uid)
    if device.status != "active":
        raise Conflict(f"device {uid} is {device.status}")
    if kind == "lamp_override":
        level, minutes = args.get("level_pct"), args.get("minutes", 60)
        if not isinstance(level, int | float) or not 0 <= level <= 100:
            raise Invalid("lamp_override needs args.level_pct between 0 and 100")
        if not isinstance(minutes, int) or not 1 <= minutes <= 1440:
            raise Invalid("lamp_override args.minutes must be 1–1440")
    cmd = Command(device_id=device.id or 0, type=kind, args=args)
    session.add(cmd)
    session.commit()
    return cmd


def recent_commands(session: Session, uid: str) -> list[Command]:
    """The node's latest commands, newest first."""
    device = get_device(session, uid)
    return list(session.execute(select(Command).where(Command.device_id == device.id)
                                .order_by(Command.id.desc()).limit(MAX_LISTED)).scalars())
