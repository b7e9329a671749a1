"""What a node may install, on the host side: the node's policy checks and its whole-bundle order.

`lamplighter release verify --board` uses this to tell, before anything is sent, whether a node
would take a release; the conformance vectors (tests/conformance) hold both sides to the same
verdicts.
The node's own copy is firmware/lib/updater/verify.py; docs/update-format.md has the rules.
"""

from __future__ import annotations

from typing import BinaryIO

from ota.bundle import iter_files, read_envelope
from ota.errors import ClockUnset, ExpiredManifest, Rollback, WrongBoard, WrongHardware
from ota.keys import KeyRing
from ota.manifest import Manifest, verify_manifest

# A clock before 2024-01-01 has not been set: expiry cannot be judged, so nothing is installed.
MIN_VALID_CLOCK = 1704067200


def check_install(manifest: Manifest, *, installed_sequence: int, board: str, now: float,
                  hardware: str | None = None) -> None:
    """Return None if a node in this state may install `manifest`, else raise, in this order:

    ClockUnset (`now` before 2024-01-01), ExpiredManifest (`now` >= expires), Rollback
    (sequence not above `installed_sequence`), WrongBoard (`board` not listed), WrongHardware
    (the manifest lists hardware and the node's, `None` included, is not among it).
    The manifest must already be verified (signature, grammar, key_id against the signer).
    """
    if now < MIN_VALID_CLOCK:
        raise ClockUnset(f"clock reads {now}, before 2024-01-01")
    if now >= manifest.expires:
        raise ExpiredManifest(f"manifest expired at {manifest.expires}")
    if manifest.sequence <= installed_sequence:
        raise Rollback(f"sequence {manifest.sequence} is not newer than {installed_sequence}")
    if board not in manifest.board:
        raise WrongBoard(f"board {board!r} is not among {', '.join(manifest.board)}")
    if manifest.hardware is not None and hardware not in manifest.hardware:
        raise WrongHardware(
            f"hardware {hardware!r} is not among {', '.join(manifest.hardware)}")


def check_bundle(stream: BinaryIO, ring: KeyRing, *, installed_sequence: int, board: str,
                 now: float, hardware: str | None = None) -> Manifest:
    """Everything a node checks of a bundle, in the node's order; the manifest, or OtaError.

    Header (MalformedBundle, FileTruncated), signer and signature (MalformedManifest, RevokedKey,
    UnknownKey, BadSignature), grammar and key_id (MalformedManifest), check_install, then every
    file (FileTruncated, BadFileHash) and the end (FileTooLong).
    """
    manifest = verify_manifest(read_envelope(stream), ring)
    check_install(manifest, installed_sequence=installed_sequence, board=board, now=now,
                  hardware=hardware)
    for _ in iter_files(stream, manifest):
        pass
    return manifest
