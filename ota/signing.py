"""Ed25519 sign / verify (via `cryptography`) of domain-separated SHA-256 digests.

What is signed is never the raw payload but `tag + SHA-256(payload)`: the tag (at most 15 ASCII
bytes) says what kind of document it is, so a signature on one kind can never be replayed as
another, and the signed message always fits the single SHA-512 block a node hashes.
"""

from __future__ import annotations

import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ota.errors import BadSignature

MANIFEST_TAG = b"LLv1-manifest"
ROTATION_TAG = b"LLv1-rotation"
REVOCATION_TAG = b"LLv1-revocation"
MAX_TAG_LENGTH = 15  # tag + 32-byte digest + R + A fit one 128-byte SHA-512 block on the node


def signed_message(tag: bytes, payload: bytes) -> bytes:
    """The exact bytes the Ed25519 signature covers for `payload` of kind `tag`."""
    if not 0 < len(tag) <= MAX_TAG_LENGTH:
        raise ValueError(f"signing tag must be 1..{MAX_TAG_LENGTH} bytes")
    return tag + hashlib.sha256(payload).digest()


def sign_tagged(private_key: Ed25519PrivateKey, tag: bytes, payload: bytes) -> bytes:
    """64-byte Ed25519 signature over `tag + SHA-256(payload)`."""
    return private_key.sign(signed_message(tag, payload))


def verify_tagged(public_key: Ed25519PublicKey | bytes, tag: bytes, payload: bytes,
                  signature: bytes) -> None:
    """Return None if `signature` is valid for `payload`; raise BadSignature otherwise."""
    if isinstance(public_key, bytes | bytearray):
        if len(public_key) != 32:
            raise BadSignature("public key must be 32 raw bytes")
        public_key = Ed25519PublicKey.from_public_bytes(bytes(public_key))
    if len(signature) != 64:
        raise BadSignature("signature must be 64 bytes")
    try:
        public_key.verify(bytes(signature), signed_message(tag, payload))
    except InvalidSignature:
        raise BadSignature("signature does not match the signed bytes") from None
