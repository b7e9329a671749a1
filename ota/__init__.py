"""Update format shared by the fleet server and the CLI: manifests, keys, signatures, bundles."""

from ota.bundle import (
    HEADER_SIZE,
    MAGIC,
    extract_bundle,
    iter_files,
    read_envelope,
    stage_release,
    verify_bundle,
    write_bundle,
)
from ota.errors import (
    BadSignature,
    BuildError,
    BundleError,
    ExpiredManifest,
    KeyFileError,
    MalformedManifest,
    OtaError,
    RevokedKey,
    SignatureError,
    StatementError,
    UnknownKey,
)
from ota.keys import KeyRing, generate_private_key, key_id, load_private_key, load_public_key
from ota.manifest import FileEntry, Manifest, SignedManifest, sign_manifest, verify_manifest

__all__ = [
    "HEADER_SIZE", "MAGIC", "BadSignature", "BuildError", "BundleError", "ExpiredManifest",
    "FileEntry", "KeyFileError", "KeyRing", "MalformedManifest", "Manifest", "OtaError",
    "RevokedKey", "SignatureError", "SignedManifest", "StatementError", "UnknownKey",
    "extract_bundle", "generate_private_key", "iter_files", "key_id", "load_private_key",
    "load_public_key", "read_envelope", "sign_manifest", "stage_release", "verify_bundle",
    "verify_manifest", "write_bundle",
]
