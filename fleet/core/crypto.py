"""Secrets at rest (AES-256-GCM), device request signatures (HMAC-SHA256) and token hashing."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SECRET_BYTES = 32
_NONCE_BYTES = 12


def new_device_secret() -> bytes:
    """A fresh 32-byte device key."""
    return secrets.token_bytes(SECRET_BYTES)


def encrypt_secret(master_key: bytes, secret: bytes, device_uid: str) -> bytes:
    """AES-GCM encrypt `secret`, bound to the device uid as associated data."""
    nonce = os.urandom(_NONCE_BYTES)
    return nonce + AESGCM(master_key).encrypt(nonce, secret, device_uid.encode())


def decrypt_secret(master_key: bytes, blob: bytes, device_uid: str) -> bytes:
    """Inverse of encrypt_secret; raises ValueError when the key or the uid does not match."""
    try:
        return AESGCM(master_key).decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:],
                                          device_uid.encode())
    except InvalidTag as exc:
        raise ValueError("device secret cannot be decrypted with this master key") from exc


def string_to_sign(method: str, path: str, timestamp: str, nonce: str, body: bytes) -> bytes:
    """The exact bytes a device signs: method, path (with query), timestamp, nonce, body digest."""
    digest = hashlib.sha256(body).hexdigest()
    return "\n".join((method.upper(), path, timestamp, nonce, digest)).encode()


def sign_request(secret: bytes, method: str, path: str, timestamp: str, nonce: str,
                 body: bytes) -> str:
    """Hex HMAC-SHA256 signature of a device request (what the node computes)."""
    return hmac.new(secret, string_to_sign(method, path, timestamp, nonce, body),
                    hashlib.sha256).hexdigest()


def signature_matches(secret: bytes, signature: str, method: str, path: str, timestamp: str,
                      nonce: str, body: bytes) -> bool:
    """Constant-time comparison of a presented signature with the expected one."""
    expected = sign_request(secret, method, path, timestamp, nonce, body)
    return hmac.compare_digest(expected, signature.lower())


def hash_token(token: str) -> str:
    """SHA-256 hex of an API token or enrollment code (tokens are random, so no salt is needed)."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_api_token(role: str) -> str:
    """A new random API token whose prefix shows its role (e.g. llo_… for an operator)."""
    return f"ll{role[0]}_{secrets.token_urlsafe(32)}"


def new_enrollment_code() -> str:
    """A one-time enrollment code short enough to print on a label (about 80 bits)."""
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    raw = "".join(secrets.choice(alphabet) for _ in range(16))
    return "-".join(raw[i:i + 4] for i in range(0, 16, 4))


def sign_reply(key: bytes, nonce: str, status: int, server_time: str, digest_hex: str) -> str:
    """Hex HMAC-SHA256 over a reply to a device request (what the node checks).

    The string: "reply", the request's nonce, the status, X-Server-Time and the SHA-256 hex of
    the body (for a bundle download, the bundle's X-Bundle-SHA256), one per line. The nonce
    binds the reply to the one request; the key is the one that signed the request (for an
    enrollment, the enrollment code).
    """
    text = "\n".join(("reply", nonce, str(status), server_time, digest_hex)).encode()
    return hmac.new(key, text, hashlib.sha256).hexdigest()


def rotation_pad(current: bytes, device_uid: str, next_version: int) -> bytes:
    """The 32 bytes that hide the next device key in a check-in reply: HMAC-SHA256 under the
    current key over the device and the next key's version (one pad per key version)."""
    text = f"rotate\n{device_uid}\n{next_version}".encode()
    return hmac.new(current, text, hashlib.sha256).digest()


def xor32(a: bytes, b: bytes) -> bytes:
    """Two 32-byte strings XORed (a key and its pad)."""
    return bytes(x ^ y for x, y in zip(a, b, strict=True))
