"""The release-key statement chain: verified, stored, applied to the trusted keys, relayed to nodes.

One chain numbered by serial (docs/update-format.md): the server accepts a statement only as the
next serial, checked against its own key set (fleet.releases.key_ring), and applies its effect
to the SigningKey rows in the transaction that stores it. Nodes report their key set's serial
at check-in and receive the statements after it, in order.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from fleet.errors import Conflict, DomainError, Invalid, NotFound
from fleet.models import Device, KeyStatement, SigningKey, utcnow
from fleet.releases import key_ring, last_serial
from fleet.rollouts import pause_rollouts_signed_by
from ota.errors import StatementError
from ota.keys import canonical_envelope, check_statement, open_envelope, statement_serial

MAX_STATEMENTS_PER_REPLY = 8

_HINTS = {
    "unknown_key": "sign it with a key the server trusts (`lamplighter release keys`)",
    "revoked_key": "sign it with a key that is not revoked (`lamplighter release keys`)",
    "bad_signature": "the statement was changed after it was signed, or signed by another key",
    "malformed": "write it with `lamplighter release rotate` or `release revoke`",
    "no_key_left": "keep one usable key: rotate to a new key first, then revoke",
}


def _refused(error: type[DomainError], reason: str, message: str) -> DomainError:
    return error(f"statement refused ({reason}): {message}")


def _detail(exc: StatementError) -> str:
    return getattr(exc, "detail", str(exc))


def _next_serial_message(current: int, what: str = "this statement") -> str:
    return (f"the server's key set is at serial {current}: sign {what} with "
            f"--serial {current + 1}")


def summary(kind: str, document: dict[str, Any]) -> str:
    """One line saying what a statement does."""
    if kind == "rotation":
        retire = "old key retired" if document["retire_old"] else "old key kept"
        return f"rotation {document['old_key_id']} -> {document['new_key_id']} ({retire})"
    return "revokes " + ", ".join(document["revoked"])


def store_statement(session: Session, envelope: str, actor: str) -> KeyStatement:
    """Verify a statement against the server's key set, apply it to the keys, and keep it.

    Refused: a serial other than the next (Conflict, saying which serial to sign with), a rotation
    to a key the server knows (Conflict), a bad envelope, signer, signature or document, or a
    revocation that would leave no usable key (Invalid). A revoked key's active rollouts pause.
    """
    try:
        envelope = canonical_envelope(envelope)
    except StatementError as exc:
        raise _refused(Invalid, exc.reason, f"{_detail(exc)}; {_HINTS['malformed']}") from None
    ring = key_ring(session)
    stored = session.execute(select(KeyStatement.serial)
                             .where(KeyStatement.envelope == envelope)).first()
    if stored is not None:
        raise _refused(Conflict, "replayed",
                       f"this statement is stored already (serial {stored[0]}); "
                       + _next_serial_message(ring.serial, "a new statement"))
    try:
        kind, document, signer = check_statement(ring, envelope)
    except StatementError as exc:
        raise _statement_refusal(session, ring.serial, envelope, exc) from None
    serial = document["serial"]
    now = utcnow()
    revoked: list[str] = []
    if kind == "rotation":
        session.add(SigningKey(key_id=document["new_key_id"],
                               public_key=document["new_public_key"],
                               name=f"rotated from {signer}", introduced_by_serial=serial))
        if document["retire_old"]:
            revoked = [document["old_key_id"]]
    else:
        revoked = list(document["revoked"])
    for kid in revoked:
        row = session.execute(select(SigningKey).where(SigningKey.key_id == kid)
                              .with_for_update()).scalar_one_or_none()
        if row is None:  # a key id nobody uploaded: refused from now on, never trusted later
            row = SigningKey(key_id=kid, public_key="", name="revoked before it was known")
        row.revoked_at = row.revoked_at or now
        if row.revoked_by_serial is None:
            row.revoked_by_serial = serial
        session.add(row)
    pause_rollouts_signed_by(session, revoked)
    stored = KeyStatement(serial=serial, kind=kind, key_id=signer, envelope=envelope,
                          created_by=actor)
    session.add(stored)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise _refused(Conflict, "replayed", "the key set changed meanwhile (another statement, or "
                       "its new key, was stored); " + _next_serial_message(last_serial(session))
                       ) from None
    return stored


def _statement_refusal(session: Session, current: int, envelope: str,
                       exc: StatementError) -> DomainError:
    """The refusal for a statement the key set does not take, with what to do about it."""
    reason = exc.reason
    if reason in ("replayed", "out_of_order"):
        claimed = statement_serial(envelope)
        if claimed != current + 1:
            return _refused(Conflict, reason, f"the statement has serial {claimed}; "
                                         + _next_serial_message(current))
        # a rotation to a key the server knows already
        return _refused(Conflict, reason, f"{_detail(exc)}; a rotation introduces a key neither "
                                     "trusted nor revoked yet: do not `release trust` the new "
                                     "key by hand, the rotation makes the server trust it")
    if reason == "revoked_key":
        kid = open_envelope(envelope)[0]
        row = session.execute(select(SigningKey.revoked_by_serial)
                              .where(SigningKey.key_id == kid)).first()
        if row is not None and row[0] is None:
            return _refused(Invalid, reason, f"{_detail(exc)} (revoked on the server); "
                                         f"{_HINTS[reason]}")
    return _refused(Invalid, reason, f"{_detail(exc)}; {_HINTS.get(reason, '')}".rstrip("; "))


def statements_after(session: Session, serial: int,
                     limit: int = MAX_STATEMENTS_PER_REPLY) -> list[str]:
    """The envelopes of the statements after `serial`, in order, at most `limit`."""
    return list(session.execute(
        select(KeyStatement.envelope).where(KeyStatement.serial > serial)
        .order_by(KeyStatement.serial).limit(limit)).scalars())


def keyset_counts(session: Session) -> dict[int | None, int]:
    """Active nodes by the key-set serial they reported (None: never reported one)."""
    rows = session.execute(select(Device.keyset_serial, func.count())
                           .where(Device.status == "active")
                           .group_by(Device.keyset_serial)).all()
    return {serial: count for serial, count in rows}


def nodes_behind(counts: dict[int | None, int], serial: int) -> int:
    """How many of the counted nodes have not applied statement `serial`."""
    return sum(n for reported, n in counts.items() if reported is None or reported < serial)


def trusting_filter(row: SigningKey) -> Any:
    """The condition on Device for the active nodes that still trust revoked key `row`."""
    active = Device.status == "active"
    if row.revoked_by_serial is None:
        return active  # revoked on the server only: no node has been told
    return active & (Device.keyset_serial.is_(None)
                     | (Device.keyset_serial < row.revoked_by_serial))


def nodes_trusting(session: Session, kid: str, limit: int) -> list[Device]:
    """The active nodes that still trust revoked key `kid`, longest behind first.

    NotFound for a key the server never had; Conflict for one not revoked (every node trusts it).
    """
    row = session.execute(select(SigningKey).where(SigningKey.key_id == kid)).scalar_one_or_none()
    if row is None:
        raise NotFound(f"no key {kid}")
    if row.revoked_at is None:
        raise Conflict(f"key {kid} is not revoked: every node that has it trusts it")
    return list(session.execute(
        select(Device).where(trusting_filter(row))
        .order_by(Device.keyset_serial.is_not(None), Device.keyset_serial, Device.id)
        .limit(limit)).scalars())
