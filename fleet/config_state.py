"""A node's reported configuration state beside its desired one: the version it applied, the
version it refused and why (in its own words), and whether it is drifting.

The check-in records what the node says (fleet.checkin: Device.applied_config_version,
config_refused_version, config_error and config_behind_checkins, the check-ins in a row at
which it reported a version below its desired one); this module only reads it. A node drifts
once it has stayed behind for more than DRIFT_AFTER_CHECKINS check-ins: one check-in behind is
the normal delay of a new version (it arrives in that check-in's reply), and the next one
reports it applied.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlmodel import Session

from fleet.checkin_rules import desired_config_version
from fleet.core.settings import get_settings
from fleet.models import Device, aware, utcnow
from fleet.paging import MAX_LIMIT

DRIFT_AFTER_CHECKINS = 2


def reported_state(device: Device) -> dict[str, Any]:
    """What the node last reported of its configuration (the ConfigView fields of a node)."""
    refused = device.config_error is not None
    return {
        "applied_version": device.applied_config_version,
        "refused_version": device.config_refused_version if refused else None,
        "refused_reason": device.config_error,
        "drifting": device.config_behind_checkins > DRIFT_AFTER_CHECKINS,
        "behind_checkins": device.config_behind_checkins,
    }


def drifting_nodes(session: Session, group: str | None = None, after: int | None = None,
                   limit: int = 100) -> tuple[list[dict[str, Any]], int | None]:
    """Active nodes behind their desired configuration for more than DRIFT_AFTER_CHECKINS
    check-ins (by registration order, from after the cursor `after`), and the next cursor
    (None: no more). Each with its desired and applied versions and its refusal, if any."""
    query = select(Device, desired_config_version(Device.group_name, Device.uid)).where(
        Device.status == "active", Device.config_behind_checkins > DRIFT_AFTER_CHECKINS)
    if group:
        query = query.where(Device.group_name == group)
    if after is not None:
        query = query.where(Device.id > after)
    limit = max(1, min(limit, MAX_LIMIT))
    rows = list(session.execute(query.order_by(Device.id).limit(limit + 1)).all())
    more = len(rows) > limit
    rows = rows[:limit]
    cutoff = utcnow() - timedelta(seconds=get_settings().offline_after_s)
    nodes = []
    for device, desired_version in rows:
        last_seen = aware(device.last_seen)
        state = reported_state(device)
        nodes.append({
            "device_id": device.uid, "pole_id": device.pole_id, "group": device.group_name,
            "desired_version": int(desired_version),
            "applied_version": state["applied_version"],
            "behind_checkins": state["behind_checkins"],
            "refused_version": state["refused_version"],
            "refused_reason": state["refused_reason"],
            "last_seen": last_seen, "online": last_seen is not None and last_seen >= cutoff})
    return nodes, (rows[-1][0].id if more and rows else None)
