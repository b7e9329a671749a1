"""The update format's conformance vectors, run through the host side (ota).

Bundle vectors: ota.policy.check_bundle, everything a node checks in the node's order (header,
signer, signature, grammar, key_id, install policy, every file, the end). Statement vectors:
ota.keys.apply_statement on the vector's key set. Each verdict must be the vector's `expect`;
a refusal is compared by its reason code (OtaError.reason).
"""

from __future__ import annotations

import io
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from ota.errors import OtaError
from ota.keys import KeyRing
from ota.manifest import FileEntry, Manifest
from ota.policy import check_bundle

VECTOR_DIR = Path(__file__).resolve().parent / "update_format"
VECTORS = [json.loads(p.read_text()) for p in sorted(VECTOR_DIR.glob("*.json"))]


def by_type(kind: str) -> list[Any]:
    return [pytest.param(v, id=v["name"]) for v in VECTORS if v["type"] == kind]


def ring_of(vector: dict[str, Any]) -> KeyRing:
    ring = KeyRing(revoked=set(vector["revoked"]))
    for kid, public in vector["trusted"].items():
        assert ring.add(bytes.fromhex(public)) == kid
    return ring


def run_bundle(vector: dict[str, Any]) -> tuple[str, Manifest | None, str]:
    try:
        manifest = check_bundle(
            io.BytesIO(bytes.fromhex(vector["bundle"])), ring_of(vector),
            installed_sequence=vector["installed_sequence"], board=vector["board"],
            now=vector["now"], hardware=vector["hardware"])
    except OtaError as exc:
        return exc.reason, None, str(exc)
    return "ok", manifest, ""


@pytest.mark.parametrize("vector", by_type("bundle"))
def test_bundle_vector(vector):
    verdict, manifest, detail = run_bundle(vector)
    assert verdict == vector["expect"], f"{vector['name']}: {vector['shows']} ({detail})"
    if manifest is not None:
        assert {"kind": manifest.kind, "sequence": manifest.sequence,
                "version": manifest.version,
                "files": [f.path for f in manifest.files]} == vector["expect_manifest"]


def _key_set(ring: KeyRing) -> dict[str, Any]:
    doc = ring.to_json()
    return {"keys": doc["keys"], "revoked": sorted(doc["revoked"]), "serial": ring.serial}


@pytest.mark.parametrize("vector", by_type("statement"))
def test_statement_vector(vector):
    from ota.keys import apply_statement

    ring = KeyRing.from_json(vector["keys"])
    before = _key_set(ring)
    try:
        apply_statement(ring, vector["envelope"])
    except OtaError as exc:
        assert exc.reason == vector["expect"], f"{vector['name']}: {vector['shows']} ({exc})"
        assert _key_set(ring) == before, "a refused statement changed the key set"
        return
    assert vector["expect"] == "ok", f"{vector['name']}: {vector['shows']} (applied)"
    assert _key_set(ring) == vector["expect_keys"]


def test_the_host_builder_writes_the_ok_vectors_manifest_byte_for_byte():
    """Manifest.create (sorting the files itself) gives exactly the hand-made canonical bytes."""
    for name in ("ok_app", "ok_path_order_slash_first", "ok_names_at_limits", "ok_firmware",
                 "ok_manifest_16384_bytes"):
        vector = next(v for v in VECTORS if v["name"] == name)
        doc = json.loads(vector["manifest_text"])
        files = [FileEntry(f["path"], f["size"], f["sha256"]) for f in reversed(doc["files"])]
        built = Manifest.create(version=doc["version"], sequence=doc["sequence"],
                                board=doc["board"], files=files, expires=doc["expires"],
                                created=doc["created"], kind=doc["kind"],
                                hardware=doc.get("hardware"))
        assert replace(built, key_id=doc["key_id"]).canonical() \
            == vector["manifest_text"].encode(), name
