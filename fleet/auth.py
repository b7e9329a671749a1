"""Request authentication: HMAC-signed device requests and role-checked API tokens, kept apart."""

from __future__ import annotations

import random
import re
import time
from dataclasses import dataclass

from fastapi import HTTPException, Request
from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from fleet.core.crypto import decrypt_secret, hash_token, signature_matches
from fleet.core.settings import get_settings
from fleet.models import ApiToken, Device, DeviceEvent, DeviceNonce

ROLES = ("operator", "technician", "reader")
_NONCE_RE = re.compile(r"^[0-9A-Za-z_-]{16,64}$")
_PRUNE_PROBABILITY = 0.01


REPLY_KEY_STATE = "reply_key"  # where a request keeps the key its reply is signed with


def sign_replies_with(request: Request, key: bytes) -> None:
    """Sign this request's reply, whatever its status, with `key` (fleet.api.device.reply_signing
    does it as the reply leaves)."""
    setattr(request.state, REPLY_KEY_STATE, key)


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
    config_error: str | None
    config_behind_checkins: int
    key_version: int
    next_secret_enc: bytes | None


_DEVICE_COLUMNS = [getattr(Device, f) for f in DeviceRow.__dataclass_fields__]


@dataclass(frozen=True)
class DeviceIdentity:
    """The authenticated device behind a request, and the key that signed it."""

    device: DeviceRow
    secret: bytes


@dataclass(frozen=True)
class SignedHeaders:
    """A device request's signature headers, checked for form and freshness (not yet verified)."""

    uid: str
    ts_text: str
    ts: int
    nonce: str
    signature: str
    received_at: float
    stale: bool  # the timestamp is outside the allowed skew: refused once the signature is known


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
    now = time.time()
    if not _NONCE_RE.match(nonce):
        raise _unauthorized("X-Nonce must be 16–64 characters of [A-Za-z0-9_-]")
    stale = abs(now - ts) > get_settings().clock_skew_s
    return SignedHeaders(uid, ts_text, ts, nonce, signature, now, stale)


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
    signed, device, secret = _verified_signature(request, body, session)
    settings = get_settings()
    if signed.stale:
        skew = settings.clock_skew_s
        # Time is no secret, but only this signed reply may set it: the node corrects its
        # clock from the reply's X-Server-Time and signs again.
        raise _unauthorized(f"stale timestamp: {signed.ts} is {signed.ts - signed.received_at:+.0f}"
                            f" s from server time (allowed ±{skew} s); check the node's clock")
    if device.status != "active":
        raise HTTPException(status_code=403, detail=f"device is {device.status}")
    _consume_nonce(session, device.id, signed.nonce, signed.ts,
                   signed.received_at - 2 * settings.clock_skew_s)
    return DeviceIdentity(device=device, secret=secret)


def _verified_signature(request: Request, body: bytes,
                        session: Session) -> tuple[SignedHeaders, DeviceRow, bytes]:
    """The request's signature headers, its device and the key that signed it (replies are
    then signed with that key); 401 for an unknown device or a bad signature."""
    signed = signed_headers(request)
    row = session.execute(select(*_DEVICE_COLUMNS).where(Device.uid == signed.uid)).first()
    if row is None:
        raise _unauthorized("unknown device")
    device = DeviceRow(*row)
    secret = _signing_key(session, device, get_settings().master_key_bytes(), signed,
                          request.method, signed_path(request), body)
    if secret is None:
        raise _unauthorized("bad signature")
    sign_replies_with(request, secret)
    return signed, device, secret


def device_without_clock(request: Request, body: bytes, session: Session) -> DeviceRow:
    """A device's request signed without a clock (X-Timestamp 0): the signature is checked, the
    timestamp and nonce are not (nothing is written), so it serves only to ask the time."""
    signed, device, _secret = _verified_signature(request, body, session)
    if device.status != "active":
        raise HTTPException(status_code=403, detail=f"device is {device.status}")
    return device


def _signing_key(session: Session, device: DeviceRow, master_key: bytes, signed: SignedHeaders,
                 method: str, path: str, body: bytes) -> bytes | None:
    """The key that signed the request: the device's current key or, while a rotation awaits
    its proof, the next one — which this request proves, so it becomes the current key (in the
    request's transaction). None when neither signed it."""
    secret = decrypt_secret(master_key, device.secret_enc, device.uid)
    if signature_matches(secret, signed.signature, method, path, signed.ts_text, signed.nonce,
                         body):
        return secret
    if device.next_secret_enc is None:
        return None
    nxt = decrypt_secret(master_key, device.next_secret_enc, device.uid)
    if not signature_matches(nxt, signed.signature, method, path, signed.ts_text, signed.nonce,
                             body):
        return None
    if not signed.stale:
        device.key_version += 1
        session.execute(update(Device).where(Device.id == device.id).values(
            secret_enc=device.next_secret_enc, next_secret_enc=None,
            key_version=device.key_version))
        session.add(DeviceEvent(device_id=device.id, kind="key_rotated", detail={
            "key_version": device.key_version, "proved": True}))
        device.secret_enc, device.next_secret_enc = device.next_secret_enc, None
    return nxt


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


def token_caller(request: Request, session: Session) -> Caller:
    """The holder of the request's API token, whatever its role (else 401)."""
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


def role_refusal(caller: Caller, roles: tuple[str, ...]) -> HTTPException | None:
    """The 403 for a caller whose role is not one of `roles`; None when it is."""
    if caller.role in roles:
        return None
    return HTTPException(
        status_code=403,
        detail=f"a {caller.role} token cannot do this; it needs one of: {', '.join(roles)}")


def caller_with_role(request: Request, session: Session, roles: tuple[str, ...]) -> Caller:
    """The request's API token holder, whose role must be one of `roles` (else 401 or 403)."""
    caller = token_caller(request, session)
    refusal = role_refusal(caller, roles)
    if refusal is not None:
        raise refusal
    return caller
