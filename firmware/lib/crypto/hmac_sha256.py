"""HMAC-SHA256 (RFC 2104) over MicroPython's hashlib, which has no hmac module."""

from micropython import const
import hashlib

_BLOCK = const(64)


def _pad(key, b):
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    out = bytearray(_BLOCK)
    for i in range(len(key)):
        out[i] = key[i] ^ b
    for i in range(len(key), _BLOCK):
        out[i] = b
    return out


class HmacSha256:
    """A reusable signer: the padded keys are computed once per device key."""

    def __init__(self, key):
        self._pads = (_pad(key, 0x36), _pad(key, 0x5C))  # inner, outer

    def digest(self, *parts):
        """MAC of the concatenation of `parts` (bytes-like), without joining them in RAM."""
        inner = hashlib.sha256(self._pads[0])
        for part in parts:
            inner.update(part)
        outer = hashlib.sha256(self._pads[1])
        outer.update(inner.digest())
        return outer.digest()
