"""The update format's conformance vectors, run on the MicroPython unix port through the node's
verifier (firmware/lib/updater), all in one MicroPython process.

Bundle vectors: updater.verify.BundleCheck fed the whole bundle, then in 61-byte chunks, then
(bundles up to 4 KB) byte by byte: the verdict must not depend on how the bytes arrive.
Statement vectors: updater.keyring.apply (updater.verify.check_statement, then the new key set).
The script prints one JSON line per run; every mismatch with the vector's `expect` is listed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.rigs.micropython import run_micropython
from tools.firmware_tree import FIRMWARE_DIR, FIRMWARE_LIB

VECTOR_DIR = Path(__file__).resolve().parent / "update_format"
NODE_VERIFIER = FIRMWARE_LIB / "updater" / "verify.py"
BYTE_BY_BYTE_UP_TO = 4096

NODE_SCRIPT = r"""
import binascii
import json
import sys

from updater import keyring, verify
from updater.format import Refused

DIR = %(dir)r
NAMES = %(names)r
BYTE_BY_BYTE_UP_TO = %(byte_by_byte)d


def refused(exc):
    return {"verdict": exc.reason, "detail": str(exc.detail)}


def run_bundle(v, data, chunk):
    trusted = {}
    for kid in v["trusted"]:
        trusted[kid] = binascii.unhexlify(v["trusted"][kid])
    check = verify.BundleCheck(trusted, v["revoked"], v["installed_sequence"], v["board"],
                               v["now"], v["hardware"])
    try:
        step = chunk or max(len(data), 1)
        for at in range(0, len(data), step):
            check.feed(data[at:at + step])
        m = check.finish()
    except Refused as exc:
        return refused(exc)
    files = [f[0] for f in m.files()]
    return {"verdict": "ok", "manifest": {"kind": m.kind, "sequence": m.sequence,
                                          "version": m.version, "files": files}}


def run_statement(v):
    try:
        new = keyring.apply(v["keys"], v["envelope"])
    except Refused as exc:
        return refused(exc)
    return {"verdict": "ok", "keys": {"keys": new["keys"], "revoked": sorted(new["revoked"]),
                                      "serial": new["serial"]}}


for name in NAMES:
    with open(DIR + "/" + name) as f:
        v = json.load(f)
    runs = []
    if v["type"] == "bundle":
        data = binascii.unhexlify(v["bundle"])
        v["bundle"] = None
        runs = [0, 61]
        if len(data) <= BYTE_BY_BYTE_UP_TO:
            runs.append(1)
        for chunk in runs:
            try:
                out = run_bundle(v, data, chunk)
            except Exception as exc:
                out = {"verdict": "crash", "detail": repr(exc)}
            out["name"] = v["name"]
            out["chunk"] = chunk
            print(json.dumps(out))
    else:
        try:
            out = run_statement(v)
        except Exception as exc:
            out = {"verdict": "crash", "detail": repr(exc)}
        out["name"] = v["name"]
        print(json.dumps(out))
"""


def _load_vectors() -> dict[str, dict]:
    return {v["name"]: v for v in (json.loads(p.read_text())
                                   for p in sorted(VECTOR_DIR.glob("*.json")))}


@pytest.fixture(scope="module")
def node_results(tmp_path_factory) -> list[dict]:
    if not NODE_VERIFIER.exists():
        pytest.skip("the node's verifier (firmware/lib/updater/verify.py) is not there yet")
    workdir = tmp_path_factory.mktemp("node_vectors")
    names = sorted(p.name for p in VECTOR_DIR.glob("*.json"))
    script = NODE_SCRIPT % {"dir": str(VECTOR_DIR), "names": names,
                            "byte_by_byte": BYTE_BY_BYTE_UP_TO}
    proc = run_micropython(script, path_dirs=[FIRMWARE_LIB, FIRMWARE_DIR], heap_kb=4096,
                           cwd=workdir, timeout=600)
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def _mismatch(vector: dict, result: dict) -> str | None:
    expect = vector["expect"]
    where = vector["name"] + (f" (chunks of {result['chunk'] or 'all'})"
                              if "chunk" in result else "")
    if result["verdict"] != expect:
        return (f"{where}: expected {expect}, node says {result['verdict']}"
                f" ({result.get('detail', '')}) -- {vector['shows']}")
    if expect == "ok" and vector["type"] == "bundle" \
            and result["manifest"] != vector["expect_manifest"]:
        return f"{where}: manifest {result['manifest']} != {vector['expect_manifest']}"
    if expect == "ok" and vector["type"] == "statement" \
            and result["keys"] != vector["expect_keys"]:
        return f"{where}: key set {result['keys']} != {vector['expect_keys']}"
    return None


def _check(node_results: list[dict], kind: str) -> None:
    vectors = {n: v for n, v in _load_vectors().items() if v["type"] == kind}
    seen = {r["name"] for r in node_results}
    problems = [f"{name}: no verdict from the node" for name in sorted(vectors)
                if name not in seen]
    problems += [p for r in node_results if r["name"] in vectors
                 if (p := _mismatch(vectors[r["name"]], r))]
    if problems:
        pytest.fail(f"{len(problems)} {kind} vector run(s) disagree with the node:\n"
                    + "\n".join(problems), pytrace=False)


def test_every_bundle_vector_on_the_node(node_results):
    _check(node_results, "bundle")


def test_every_statement_vector_on_the_node(node_results):
    _check(node_results, "statement")
