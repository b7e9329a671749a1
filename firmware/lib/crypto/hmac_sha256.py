"""HMAC-SHA256 (RFC 2104) over MicroPython's hashlib, which has no hmac module."""

import hashlib

_BLOCK = 64


def _pad(key, byte):
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    out = bytearray(_BLOCK)
    for i in range(len(key)):
        out[i] = key[i] ^ byte
    for i in range(len(key), _BLOCK):
        out[i] = byte
    return out


class HmacSha256:
    """A reusable signer: the padded keys are computed once per device key."""

    def __init__(self, key):
        self._ipad = _pad(key, 0x36)
        self._opad = _pad(key, 0x5C)

    def digest(self, *parts):
        """MAC of the concatenation of `parts` (bytes-like), without joining them in RAM."""
        inner = hashlib.sha256(self._ipad)
        for part in parts:
            inner.update(part)
        outer = hashlib.sha256(self._opad)
        outer.update(inner.digest())
        return outer.digest()
