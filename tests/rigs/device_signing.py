"""Host-side device request signing, for tests, benchmarks and tools that speak as a node."""

from __future__ import annotations

import secrets
import time

from fleet.core.crypto import sign_request


def signed_headers(device_id: str, secret_hex: str, method: str, path: str, body: bytes,
                   *, ts: int | None = None, nonce: str | None = None) -> dict[str, str]:
    """The four headers a node sends with a request to a /device/v1 endpoint."""
    ts_text = str(int(time.time()) if ts is None else ts)
    nonce = nonce or secrets.token_hex(12)
    sig = sign_request(bytes.fromhex(secret_hex), method, path, ts_text, nonce, body)
    return {"X-Device-Id": device_id, "X-Timestamp": ts_text, "X-Nonce": nonce,
            "X-Signature": sig, "Content-Type": "application/json"}


def reply_signed_by(resp, key: bytes, nonce: str) -> bool:
    """True when an httpx response carries a valid X-Reply-Signature under `key` for `nonce`."""
    import hashlib
    import hmac

    from fleet.core.crypto import sign_reply

    mac = resp.headers.get("x-reply-signature")
    if not mac:
        return False
    digest = resp.headers.get("x-bundle-sha256") or hashlib.sha256(resp.content).hexdigest()
    expected = sign_reply(key, nonce, resp.status_code, resp.headers.get("x-server-time", ""),
                          digest)
    return hmac.compare_digest(expected, mac)


def reply_headers(secret_hex: str, nonce: str, status: int, body: bytes = b"",
                  bundle_sha256: str | None = None) -> dict[str, str]:
    """The headers the fleet server adds to a device reply (fleet.api.device.reply_signing),
    for test servers that stand in for it; a bundle reply signs its announced SHA-256."""
    import hashlib

    from fleet.core.crypto import sign_reply

    server_time = str(int(time.time()))
    digest = bundle_sha256 or hashlib.sha256(body).hexdigest()
    headers = {"X-Server-Time": server_time,
               "X-Reply-Signature": sign_reply(bytes.fromhex(secret_hex), nonce, status,
                                               server_time, digest)}
    if bundle_sha256:
        headers["X-Bundle-SHA256"] = bundle_sha256
    return headers
