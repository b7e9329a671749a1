"""Creating, listing and revoking API tokens (only their SHA-256 is stored)."""

from __future__ import annotations

from sqlalchemy import select
from sqlmodel import Session

from fleet.auth import ROLES
from fleet.core.crypto import hash_token, new_api_token
from fleet.errors import NotFound
from fleet.models import ApiToken, utcnow


def create_token(session: Session, name: str, role: str) -> str:
    """Store a new token for `role` and return it (the only time it is seen in clear)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
    token = new_api_token(role)
    session.add(ApiToken(name=name, role=role, token_hash=hash_token(token)))
    session.commit()
    return token


def revoke_token(session: Session, name: str) -> int:
    """Revoke every live token with this name; returns how many were revoked."""
    rows = session.execute(select(ApiToken).where(ApiToken.name == name,
                                                  ApiToken.revoked_at.is_(None))).scalars().all()
    if not rows:
        raise NotFound(f"no live token named {name}")
    for row in rows:
        row.revoked_at = utcnow()
        session.add(row)
    session.commit()
    return len(rows)
