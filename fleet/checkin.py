"""A node's check-in: record its state, acknowledge its commands, answer with what it should do.

This is the hottest path of the server (every node, every few minutes), so it speaks SQL
through Core statements rather than loading ORM entities. What a check-in decides (the desired
configuration version and interval, whether a command, an update, a key statement or the
configuration is to be sent, the drift counter, the events to record) is one select of the
shared rules (fleet.checkin_rules), which the quick path on PostgreSQL
(fleet.checkin_quick) evaluates too: the two paths cannot disagree on them.
"""

from __future__ import annotations

import time
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Integer,
    Select,
    String,
    bindparam,
    literal,
    select,
    update,
)
from sqlmodel import Session

from fleet.auth import DeviceIdentity, DeviceRow
from fleet.checkin_rules import CheckinInputs, after_keyset, checkin_facts, desired_facts
from fleet.commands import deliverable
from fleet.config_profiles import desired_config
from fleet.core.crypto import decrypt_secret, rotation_pad, xor32
from fleet.core.settings import get_settings
from fleet.key_statements import MAX_STATEMENTS_PER_REPLY
from fleet.models import Command, Device, DeviceEvent, KeyStatement, utcnow
from fleet.rollouts import assignment_for, record_report
from fleet.schemas import CheckIn, CheckInReply, NextKey, PendingCommand

MAX_COMMANDS_PER_REPLY = 10


def keyset_values(report: CheckIn) -> dict[str, Any]:
    """The Device columns a check-in's key-set report changes.

    With `keyset`, the node states its key set: serial and refusal (absent: none stands).
    Without it (older firmware) both stay as they were; a lone keyset_error is still kept.
    """
    values: dict[str, Any] = {}
    if report.keyset is not None:
        values["keyset_serial"] = report.keyset
        values["keyset_error"] = report.keyset_error or None
    elif report.keyset_error:
        values["keyset_error"] = report.keyset_error
    return values


def config_refusal_values(report: CheckIn) -> dict[str, Any]:
    """The Device columns a check-in's configuration refusal sets (both None: none stands)."""
    refused = report.config_refused
    if refused is None:
        return {"config_refused_version": None, "config_error": None}
    return {"config_refused_version": refused.version, "config_error": refused.reason}


@cache
def facts_query() -> Select:
    """The select of everything a check-in decides (fleet.checkin_rules), built once; its
    parameters are `checkin_params`."""
    def param(name: str, kind: Any) -> Any:
        return bindparam(name, type_=kind)

    inputs = CheckinInputs(
        device_id=param("device_id", BigInteger),
        config_behind_checkins=param("config_behind_checkins", Integer),
        stored_keyset_error=param("stored_keyset_error", String),
        stored_config_error=param("stored_config_error", String),
        config_version=param("config_version", BigInteger),
        config_refused_version=param("config_refused_version", BigInteger),
        config_error=param("config_error", String), keyset=param("keyset", BigInteger),
        sets_keyset_error=param("sets_keyset_error", Boolean),
        keyset_error=param("keyset_error", String))
    desired = select(*(expr.label(name) for name, expr in desired_facts(
        param("group_name", String), param("uid", String),
        param("default_interval", Integer)).items())).subquery()
    return select(desired, *(expr.label(name) for name, expr in checkin_facts(
        inputs, param("now", DateTime(timezone=True)), desired.c.desired_version).items()))


def checkin_params(device: DeviceRow, report: CheckIn, now: datetime) -> dict[str, Any]:
    """The parameters of `facts_query` for one node: its stored columns and its report."""
    keyset, refusal = keyset_values(report), config_refusal_values(report)
    return {"device_id": device.id, "group_name": device.group_name, "uid": device.uid,
            "config_behind_checkins": device.config_behind_checkins,
            "stored_keyset_error": device.keyset_error,
            "stored_config_error": device.config_error,
            "config_version": report.config_version, **refusal, "keyset": report.keyset,
            "sets_keyset_error": "keyset_error" in keyset,
            "keyset_error": keyset.get("keyset_error"), "now": now,
            "default_interval": get_settings().checkin_interval_s}


def next_key_for(device: DeviceRow, current: bytes) -> NextKey | None:
    """The pending next key, hidden under the current one, while a rotation awaits proof."""
    if device.next_secret_enc is None:
        return None
    nxt = decrypt_secret(get_settings().master_key_bytes(), device.next_secret_enc, device.uid)
    version = device.key_version + 1
    pad = rotation_pad(current, device.uid, version)
    return NextKey(version=version, key=xor32(nxt, pad).hex())


def handle_checkin(session: Session, ident: DeviceIdentity, report: CheckIn) -> CheckInReply:
    """Apply one check-in in a single transaction and build the reply."""
    device = ident.device
    now = utcnow()
    device.fw_version = report.fw_version
    keyset = keyset_values(report)
    refusal = config_refusal_values(report)
    facts = session.execute(facts_query(), checkin_params(device, report, now)).one()
    session.execute(update(Device).where(Device.id == device.id).values(
        last_seen=now, fw_version=report.fw_version,
        applied_config_version=report.config_version,
        last_status=report.model_dump(exclude={"acks"}, exclude_none=True, mode="json"),
        config_behind_checkins=facts.behind_checkins,
        **keyset, **refusal))
    if facts.keyset_event:
        session.add(DeviceEvent(device_id=device.id, at=now, kind="keyset_error", detail={
            "error": keyset["keyset_error"] or "", "previous": device.keyset_error or "",
            "keyset": report.keyset}))
    if facts.config_event:
        session.add(DeviceEvent(device_id=device.id, at=now, kind="config_refused", detail={
            "version": refusal["config_refused_version"], "reason": refusal["config_error"]}))
    for ack in report.acks:  # an answer counts even after the expiry: the node did receive it
        session.execute(
            update(Command)
            .where(Command.id == ack.id, Command.device_id == device.id,
                   Command.acked_at.is_(None))
            .values(acked_at=now, ok=ack.ok, reason=ack.reason, result=ack.result)
        )
    if report.update is not None:
        record_report(session, device, report.update.rollout_id, report.update.state,
                      report.update.detail)
    pending = _pending_commands(session, device, now, {a.id for a in report.acks}) \
        if facts.has_command else []
    reply = CheckInReply(
        server_time=int(time.time()),
        next_checkin_s=facts.interval_s,
        commands=[PendingCommand(id=row.id, type=row.type, args=row.args) for row in pending],
        update=assignment_for(session, device, now) if facts.rollout_active else None,
    )
    reply.next_key = next_key_for(device, ident.secret)
    if facts.statement_after:
        reply.key_statements = list(session.execute(
            select(KeyStatement.envelope).where(after_keyset(literal(report.keyset)))
            .order_by(KeyStatement.serial).limit(MAX_STATEMENTS_PER_REPLY)).scalars())
    if facts.sends_config:
        reply.config_version, reply.config = desired_config(session, device)
    session.commit()
    return reply


def _pending_commands(session: Session, device: DeviceRow, now: datetime,
                      acked: set[int]) -> list:
    """The commands the reply carries (marked delivered): the first deliverable ones, less
    those the check-in answers."""
    pending = [
        row for row in session.execute(
            select(Command.id, Command.type, Command.args, Command.delivered_at)
            .where(Command.device_id == device.id, deliverable(now))
            .order_by(Command.id).limit(MAX_COMMANDS_PER_REPLY + len(acked))
        ).all() if row.id not in acked
    ][:MAX_COMMANDS_PER_REPLY]
    undelivered = [row.id for row in pending if row.delivered_at is None]
    if undelivered:
        session.execute(update(Command).where(Command.id.in_(undelivered))
                        .values(delivered_at=now))
    return pending
