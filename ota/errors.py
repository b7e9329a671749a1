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


class KeyFileError(OtaError):
    """A key file cannot be read, has the wrong type, or the password is wrong."""

    reason = "bad_key_file"


class StatementError(OtaError):
    """A rotation statement or revocation list is malformed or does not apply."""

    reason = "bad_statement"


class PolicyError(OtaError):
    """A sound, validly signed manifest that this node may not install; the subclasses say why.

    Raised by ota.policy.check_install in the node's order: clock_unset, expired, rollback,
    wrong_board, wrong_hardware.
    """

    reason = "policy"


class ClockUnset(PolicyError):
    """The node's clock reads before 2024-01-01, so expiry cannot be judged."""

    reason = "clock_unset"


class ExpiredManifest(PolicyError):
    """The manifest's expiry time has passed."""

    reason = "expired"


class Rollback(PolicyError):
    """The manifest's sequence is not above the one the node runs."""

    reason = "rollback"


class WrongBoard(PolicyError):
    """The node's board is not among the manifest's boards."""

    reason = "wrong_board"


class WrongHardware(PolicyError):
    """The manifest lists hardware revisions and the node's is not among them."""

    reason = "wrong_hardware"


class BundleError(OtaError):
    """A bundle cannot be used; the subclasses are the refusals, each with the node's reason."""

    reason = "bad_bundle"


class MalformedBundle(BundleError):
    """The bundle header is wrong: magic, format, or a manifest length outside 2..16384."""

    reason = "malformed"


class FileTooLong(BundleError):
    """A byte past the bundle's end (past its last file's declared size)."""

    reason = "file_too_long"


class FileTruncated(BundleError):
    """The bundle ends before its header, manifest or last file does."""

    reason = "file_truncated"


class BadFileHash(BundleError):
    """A file's bytes do not hash to the SHA-256 its manifest declares."""

    reason = "bad_file_hash"


class BuildError(OtaError):
    """Building a bundle failed (missing app directory, mpy-cross error, nothing to pack)."""

    reason = "build_failed"
