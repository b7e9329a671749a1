"""The conformance vectors themselves: generated, complete, and covering every reason code."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
VECTOR_DIR = HERE / "update_format"

# Every verdict a verifier of bundles and key statements can reach (docs/update-format.md);
# the download-level reasons (over_budget, too_many_attempts, not_announced) belong to the
# node's client, not to a bundle's bytes.
VERDICTS = {
    "bundle": {"ok", "malformed", "unknown_key", "revoked_key", "bad_signature", "clock_unset",
               "expired", "rollback", "wrong_board", "wrong_hardware", "file_too_long",
               "file_truncated", "bad_file_hash"},
    "statement": {"ok", "malformed", "unknown_key", "revoked_key", "bad_signature", "replayed",
                  "out_of_order", "no_key_left"},
}


def _generator():
    spec = importlib.util.spec_from_file_location("make_vectors", HERE / "make_vectors.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_regenerating_gives_the_committed_files():
    files = _generator().build_vectors()
    on_disk = {p.name: p.read_text() for p in VECTOR_DIR.glob("*.json")}
    assert sorted(on_disk) == sorted(files), "run tests/conformance/make_vectors.py"
    changed = [name for name in files if files[name] != on_disk[name]]
    assert not changed, f"stale vectors (run tests/conformance/make_vectors.py): {changed}"


def test_vectors_cover_every_verdict_and_are_well_formed():
    seen: dict[str, set[str]] = {"bundle": set(), "statement": set()}
    for path in VECTOR_DIR.glob("*.json"):
        vector = json.loads(path.read_text())
        assert vector["name"] == path.stem
        assert vector["shows"] and vector["type"] in VERDICTS
        assert vector["expect"] in VERDICTS[vector["type"]], vector["name"]
        seen[vector["type"]].add(vector["expect"])
        if vector["type"] == "bundle":
            assert {"trusted", "revoked", "now", "installed_sequence", "board", "hardware",
                    "bundle"} <= set(vector)
        else:
            assert {"keys", "envelope"} <= set(vector)
    assert seen == VERDICTS
    assert len(list(VECTOR_DIR.glob("*.json"))) >= 60
