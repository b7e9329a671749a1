"""Configuration profiles: a group's desired configuration, a node's override, their deep merge,
and the validation of each against the node's configuration schema (fleet.config_schema)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlmodel import Session

from fleet.checkin_rules import desired_config_version, profile_body
from fleet.config_schema import Refusal, deep_merge, defaults, find, leaves, validate
from fleet.config_state import reported_state
from fleet.errors import Invalid
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


def _profile(session: Session, scope: str, target: str) -> ConfigProfile | None:
    return session.execute(select(ConfigProfile).where(
        ConfigProfile.scope == scope, ConfigProfile.target == target)).scalar_one_or_none()


def _json_safe(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except ValueError:  # NaN or Infinity (Python's JSON parser takes them)
        return False
    return True


def _refuse(refusals: list[tuple[str, Refusal]]) -> None:
    """Raise the 422 of refused keys: one entry per key, `loc` its path in the body."""
    if refusals:
        raise Invalid([{"type": "config", "loc": ["body", "config", *r.path.split(".")],
                        "msg": prefix + r.message,
                        **({"input": r.value} if r.has_value and _json_safe(r.value) else {})}
                       for prefix, r in refusals])


def set_group_config(session: Session, group: str, config: dict[str, Any]) -> ConfigProfile:
    """Set a group's desired configuration; its nodes receive it at their next check-in.

    Invalid (422) names each refused key and its rule, also where a node's override would
    break a rule between two keys over the new group configuration (e.g. its own
    dimming.dim_level above the group's new dimming.full_level).
    """
    group_cfg, refusals = validate(config)
    _refuse([("", r) for r in refusals])
    overrides = session.execute(
        select(ConfigProfile.target, ConfigProfile.body)
        .join(Device, Device.uid == ConfigProfile.target)
        .where(ConfigProfile.scope == "device", Device.group_name == group)
        .order_by(ConfigProfile.target)).all()
    _refuse([(f"with the override of node {uid}: ", r) for uid, body in overrides
             for r in validate(body, group_cfg)[1] if r.between_keys])
    return _put(session, "group", group, config)


def set_device_config(session: Session, uid: str, config: dict[str, Any]) -> ConfigProfile:
    """Override configuration keys for one node (NotFound if there is no such node); Invalid
    (422) names each refused key and its rule, checked over the node's group configuration."""
    device = get_device(session, uid)
    group = _profile(session, "group", device.group_name)
    _refuse([("", r) for r in validate(config, validate(group.body if group else {})[0])[1]])
    return _put(session, "device", uid, config)


def config_view(session: Session, scope: str, target: str) -> dict[str, Any]:
    """What GET …/config answers: the scope's own stored document and version (as the PUT
    answers them), and the desired configuration it leads to, merged deeply (defaults < group
    < node), each key with its source, and what a node would refuse of it; for a node, also
    what it reports (fleet.config_state.reported_state)."""
    layers: list[tuple[str, ConfigProfile | None]] = []
    if scope == "device":
        device = get_device(session, target)
        layers.append(("group", _profile(session, "group", device.group_name)))
    own = _profile(session, scope, target)
    layers.append(("node" if scope == "device" else "group", own))
    desired = defaults()
    for _, row in layers:
        if row is not None:
            desired = deep_merge(desired, row.body)
    keys = []
    for path, value in leaves(desired).items():
        source = next((name for name, row in reversed(layers)
                       if row is not None and find(row.body, path)), "default")
        keys.append({"key": path, "value": value, "source": source})
    view: dict[str, Any] = {
        "scope": scope, "target": target, "version": own.version if own else 0,
        "config": own.body if own else {},
        # a node's: the check-in's rule (fleet.checkin_rules); a group's: its own version
        "desired_version": session.execute(select(desired_config_version(
            device.group_name, target))).scalar_one() if scope == "device" else
        (own.version if own else 0),
        "desired": desired, "keys": keys,
        "refused": [str(r) for r in validate(desired, allow_server_set=True)[1]],
    }
    if scope == "device":
        view["group"] = device.group_name
        view.update(reported_state(device))  # applied, refused and why, drifting
    return view


def desired_config(session: Session, device: DeviceRow | Device) -> tuple[int, dict[str, Any]]:
    """The node's desired configuration: its group's, overridden key by key by its own
    (deeply: a node's dimming.dusk_lux keeps the group's dimming.dim_level), and its version
    (fleet.checkin_rules.desired_config_version, the rule the check-in paths apply too).
    """
    version, group_body, device_body = session.execute(select(
        desired_config_version(device.group_name, device.uid),
        profile_body("group", device.group_name), profile_body("device", device.uid))).one()
    return version, deep_merge(group_body or {}, device_body or {})
