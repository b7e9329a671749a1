"""Configuration profiles: a group's desired configuration, a node's override, and their merge."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlmodel import Session

from fleet.models import ConfigProfile, Device, utcnow
from fleet.registry import get_device

if TYPE_CHECKING:
    from fleet.auth import DeviceRow


def _put(session: Session, scope: str, target: str, config: dict[str, Any]) -> ConfigProfile:
    """Store `config` as the profile of (scope, target), one version above the last."""
    row = session.execute(select(ConfigProfile).where(
        ConfigProfile.scope == scope, ConfigProfile.target == target)).scalar_one_or_none()
    if row is None:
        row = ConfigProfile(scope=scope, target=target, version=1, body=config)
    else:
        row.version += 1
        row.body = config
        row.updated_at = utcnow()
    session.add(row)
    session.commit()
    return row


def set_group_config(session: Session, group: str, config: dict[str, Any]) -> ConfigProfile:
    """Set a group's desired configuration; its nodes receive it at their next check-in."""
    return _put(session, "group", group, config)


def set_device_config(session: Session, uid: str, config: dict[str, Any]) -> ConfigProfile:
    """Override configuration keys for one node (NotFound if there is no such node)."""
    get_device(session, uid)
    return _put(session, "device", uid, config)


def desired_config(session: Session, device: DeviceRow | Device) -> tuple[int, dict[str, Any]]:
    """The node's desired configuration: its group's, overridden key by key by its own.

    The version is the sum of the two profiles' versions: both only grow, so any change to
    either gives the node a higher number than it has applied.
    """
    rows = session.execute(
        select(ConfigProfile.scope, ConfigProfile.version, ConfigProfile.body).where(
            ((ConfigProfile.scope == "group") & (ConfigProfile.target == device.group_name))
            | ((ConfigProfile.scope == "device") & (ConfigProfile.target == device.uid))
        )
    ).all()
    by_scope = {scope: (version, body) for scope, version, body in rows}
    version, merged = 0, {}
    for scope in ("group", "device"):
        if scope in by_scope:
            version += by_scope[scope][0]
            merged.update(by_scope[scope][1])
    return version, merged
