"""Request authentication: HMAC-signed device requests and role-checked API tokens, kept apart."""

from __future__ import annotations

import random
import re
import time
from dataclasses import dataclass

from fastapi import HTTPException, Request
from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from fleet.core.crypto import decrypt_secret, hash_token, signature_matches
from fleet.core.settings import get_settings
from fleet.models import ApiToken, Device, DeviceNonce

ROLES = ("operator", "technician", "reader")
_NONCE_RE = re.compile(r"^[0-9A-Za-z_-]{16,64}$")
_PRUNE_PROBABILITY = 0.01


def _unauthorized(reason: str) -> HTTPException:
    return HTTPException(status_code=401, detail=reason)


@dataclass
class DeviceRow:
    """The columns of a device that device requests need, read without the ORM's bookkeeping."""

    id: int
    uid: str
    status: str
    secret_enc: bytes
    group_name: str
    district: str
    board: str
    tags: list[str]
    fw_version: str
    keyset_serial: int | None
    keyset_error: str | None


_DEVICE_COLUMNS = [getattr(Device, f) for f in DeviceRow.__dataclass_fields__]


@dataclass(frozen=True)
class DeviceIdentity:
    """The authenticated device behind a request."""

    device: DeviceRow


@dataclass(frozen=True)
class SignedHeaders:
    """A device request's signature headers, checked for form and freshness (not yet verified)."""

    uid: str
    ts_text: str
    ts: int
    nonce: str
    signature: str
    received_at: float


def signed_headers(request: Request) -> SignedHeaders:
    """Read and pre-check the signature headers; no database work, so it runs on the event loop.

    Headers: X-Device-Id, X-Timestamp (Unix seconds), X-Nonce (16–64 of [A-Za-z0-9_-]),
    X-Signature (hex HMAC-SHA256 over method, path?query, timestamp, nonce, SHA-256 of the body).
    """
    headers = request.headers
    if "authorization" in headers:
        raise _unauthorized("device endpoints take a device signature, not an API token")
    uid = headers.get("x-device-id")
    ts_text = headers.get("x-timestamp")
    nonce = headers.get("x-nonce")
    signature = headers.get("x-signature")
    if not (uid and ts_text and nonce and signature):
        raise _unauthorized(
            "missing device signature headers (X-Device-Id, X-Timestamp, X-Nonce, X-Signature)")
    try:
        ts = int(ts_text)
    except ValueError:
        raise _unauthorized("X-Timestamp must be whole Unix seconds") from None
    skew = get_settings().clock_skew_s
    now = time.time()
    if abs(now - ts) > skew:
        raise HTTPException(
            status_code=401,
            detail=f"stale timestamp: {ts} is {ts - now:+.0f} s from server time "
                   f"(allowed ±{skew} s); check the node's clock",
            # Time is no secret: a node whose clock drifted corrects it and signs again.
            headers={"X-Server-Time": str(int(now))})
    if not _NONCE_RE.match(nonce):
        raise _unauthorized("X-Nonce must be 16–64 characters of [A-Za-z0-9_-]")
    return SignedHeaders(uid, ts_text, ts, nonce, signature, now)


def signed_path(request: Request) -> str:
    """The path a device signs: the path, and the query string when there is one."""
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


def authenticated_device(request: Request, body: bytes, session: Session) -> DeviceIdentity:
    """Verify a device request's HMAC signature, timestamp and nonce; return its device.

    A plain function, always called in the thread pool (by fleet.api.deps.current_device, or in
    a route's own pool call): blocking the event loop on a database lock would stall every other
    request, including the one holding it.
    """
    signed = signed_headers(request)
    row = session.execute(select(*_DEVICE_COLUMNS).where(Device.uid == signed.uid)).first()
    if row is None:
        raise _unauthorized("unknown device")
    device = DeviceRow(*row)
    settings = get_settings()
    secret = decrypt_secret(settings.master_key_bytes(), device.secret_enc, device.uid)
    if not signature_matches(secret, signed.signature, request.method, signed_path(request),
                             signed.ts_text, signed.nonce, body):
        raise _unauthorized("bad signature")
    if device.status != "active":
        raise HTTPException(status_code=403, detail=f"device is {device.status}")
    _consume_nonce(session, device.id, signed.nonce, signed.ts,
                   signed.received_at - 2 * settings.clock_skew_s)
    return DeviceIdentity(device=device)


def _consume_nonce(session: Session, device_id: int, nonce: str, ts: int,
                   prune_before: float) -> None:
    """Record the nonce in the request's transaction (committed with the request's writes).

    The unique key refuses a replay even from another server process sharing the database.
    """
    if random.random() < _PRUNE_PROBABILITY:
        session.execute(delete(DeviceNonce).where(DeviceNonce.ts < prune_before))
    try:
        session.execute(insert(DeviceNonce).values(device_id=device_id, nonce=nonce, ts=ts))
    except IntegrityError:
        session.rollback()
        raise _unauthorized("replayed nonce") from None


@dataclass(frozen=True)
class Caller:
    """The authenticated operator, technician or data reader behind a request."""

    token_id: int
    name: str
    role: str


def _token_caller(request: Request, session: Session) -> Caller:
    if "x-signature" in request.headers:
        raise _unauthorized("operator endpoints take an API token, not a device signature")
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise _unauthorized("missing API token: send 'Authorization: Bearer <token>'")
    row = session.execute(
        select(ApiToken).where(ApiToken.token_hash == hash_token(token.strip()))
    ).scalar_one_or_none()
    if row is None or row.revoked_at is not None:
        raise _unauthorized("unknown or revoked API token")
    assert row.id is not None
    return Caller(token_id=row.id, name=row.name, role=row.role)


def caller_with_role(request: Request, session: Session, roles: tuple[str, ...]) -> Caller:
    """The request's API token holder, whose role must be one of `roles` (else 401 or 403)."""
    caller = _token_caller(request, session)
    if caller.role not in roles:
        raise HTTPException(
            status_code=403,
            detail=f"a {caller.role} token cannot do this; it needs one of: {', '.join(roles)}")
    return caller
