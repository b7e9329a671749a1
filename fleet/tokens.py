"""Creating, listing and revoking API tokens (only their SHA-256 is stored), audited."""

from __future__ import annotations

from sqlalchemy import select
from sqlmodel import Session

from fleet.audit import AuditEntry, local_actor
from fleet.auth import ROLES
from fleet.core.crypto import hash_token, new_api_token
from fleet.errors import NotFound
from fleet.models import ApiToken, utcnow


def create_token(session: Session, name: str, role: str, actor: str | None = None) -> str:
    """Store a new token for `role` and return it (the only time it is seen in clear).

    Recorded in the audit trail as token.create by `actor` (default: local:<os user>, for the
    server's own command line), in the same transaction; the token itself never is.
    """
    audit = AuditEntry(session, actor=actor or local_actor(), action="token.create",
                       target=f"token:{name}", detail={"role": role})
    if role not in ROLES:
        reason = f"unknown role {role!r}; choose one of {', '.join(ROLES)}"
        audit.refused(reason)
        raise ValueError(reason)
    token = new_api_token(role)
    with audit.recording():
        session.add(ApiToken(name=name, role=role, token_hash=hash_token(token)))
        session.commit()
    return token


def revoke_token(session: Session, name: str, actor: str | None = None) -> int:
    """Revoke every live token with this name; returns how many were revoked (audited as
    token.revoke by `actor`, default local:<os user>)."""
    audit = AuditEntry(session, actor=actor or local_actor(), action="token.revoke",
                       target=f"token:{name}")
    rows = session.execute(select(ApiToken).where(ApiToken.name == name,
                                                  ApiToken.revoked_at.is_(None))).scalars().all()
    if not rows:
        audit.refused(f"no live token named {name}")
        raise NotFound(f"no live token named {name}")
    audit.detail["revoked"] = len(rows)
    with audit.recording():
        for row in rows:
            row.revoked_at = utcnow()
            session.add(row)
        session.commit()
    return len(rows)
