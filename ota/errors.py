"""Exceptions raised by the update format: every refusal is its own class, never a bare bool."""

from __future__ import annotations


class OtaError(Exception):
    """Base class of every update-format error; `reason` is a short machine-readable code."""

    reason = "error"


class MalformedManifest(OtaError):
    """The manifest (or its signed envelope) does not follow the documented format."""

    reason = "malformed"


class SignatureError(OtaError):
    """A signature check failed; the subclasses say why."""

    reason = "bad_signature"


class BadSignature(SignatureError):
    """The signature does not match the signed bytes and the named key."""

    reason = "bad_signature"


class UnknownKey(SignatureError):
    """The signing key id is not among the trusted keys."""

    reason = "unknown_key"


class RevokedKey(SignatureError):
    """The signing key id has been revoked."""

    reason = "revoked_key"


class ExpiredManifest(OtaError):
    """The manifest's expiry time has passed."""

    reason = "expired"


class KeyFileError(OtaError):
    """A key file cannot be read, has the wrong type, or the password is wrong."""

    reason = "bad_key_file"


class StatementError(OtaError):
    """A rotation statement or revocation list is malformed or does not apply."""

    reason = "bad_statement"


class BundleError(OtaError):
    """A bundle is malformed: bad header, truncated, too long, or a file that fails its hash."""

    reason = "bad_bundle"


class BuildError(OtaError):
    """Building a bundle failed (missing app directory, mpy-cross error, nothing to pack)."""

    reason = "build_failed"
