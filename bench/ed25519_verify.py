"""Ed25519 verify time on the MicroPython unix port, against a straightforward verifier and OpenSSL.

Both MicroPython verifiers run in the same process on the same signatures (made on the host
with `cryptography`), with the heap capped like an ESP32's and their rounds interleaved. The
straightforward verifier below is the baseline: textbook — separate double-and-add for [S]B
and [k]A, every reduction by `% p`, both points decompressed with `pow`.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from bench.report import Figure
from ota.bundle import mpy_cross_compile
from tests.rigs.micropython import run_micropython
from tools.emulator.micropython import ESP32_HEAP_KB
from tools.firmware_tree import FIRMWARE_LIB

SIGNATURES = 12
ROUNDS = 5

# A textbook Ed25519 verifier (RFC 8032 section 5.1.7 step by step), run as the baseline.
STRAIGHTFORWARD_VERIFIER = '''
from crypto.sha512 import sha512

P = 2 ** 255 - 19
L = 2 ** 252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, P - 2, P) % P
I = pow(2, (P - 1) // 4, P)


def recover(data):
    y = int.from_bytes(data, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    if y >= P:
        raise ValueError("y >= p")
    xx = (y * y - 1) * pow(D * y * y + 1, P - 2, P) % P
    x = pow(xx, (P + 3) // 8, P)
    if (x * x - xx) % P:
        x = x * I % P
    if (x * x - xx) % P:
        raise ValueError("not on curve")
    if x == 0 and sign:
        raise ValueError("x = 0 with sign")
    if x & 1 != sign:
        x = P - x
    return (x, y, 1, x * y % P)


def add(p1, p2):
    x1, y1, z1, t1 = p1
    x2, y2, z2, t2 = p2
    a = (y1 - x1) * (y2 - x2) % P
    b = (y1 + x1) * (y2 + x2) % P
    c = 2 * D * t1 * t2 % P
    d = 2 * z1 * z2 % P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def mul(s, pt):
    acc = (0, 1, 1, 0)
    while s:
        if s & 1:
            acc = add(acc, pt)
        pt = add(pt, pt)
        s >>= 1
    return acc


BASE = recover(bytes([0x58] + [0x66] * 31))


def verify(pub, msg, sig):
    a = recover(pub)
    r = recover(sig[:32])
    s = int.from_bytes(sig[32:], "little")
    if s >= L:
        raise ValueError("S >= L")
    k = int.from_bytes(sha512(sig[:32] + pub + msg).digest(), "little") % L
    left = mul(s, BASE)
    right = add(r, mul(k, a))
    same_x = (left[0] * right[2] - right[0] * left[2]) % P == 0
    if not same_x or (left[1] * right[2] - right[1] * left[2]) % P:
        raise ValueError("bad signature")
'''

DEVICE_TIMER = '''
import gc, json, time
from binascii import unhexlify
fresh = [[unhexlify(x) for x in v] for v in json.load(open("fresh.json"))]
pinned = [[unhexlify(x) for x in v] for v in json.load(open("pinned.json"))]
gc.collect()
before = gc.mem_alloc()
from crypto import ed25519
ed25519.verify(*fresh[0])
gc.collect()
held = gc.mem_alloc() - before


def once(verify, vectors):
    t0 = time.ticks_us()
    for pub, msg, sig in vectors:
        verify(pub, msg, sig)
    return time.ticks_diff(time.ticks_us(), t0) / len(vectors)


# Rounds interleave the verifiers so that a busy machine slows them alike; best round counts.
best = {}
for _ in range(ROUNDS):
    for name, verify, vectors in (("fast_us", ed25519.verify, fresh),
                                  ("ref_us", reference_verify, fresh),
                                  ("pinned_us", ed25519.verify, pinned)):
        us = once(verify, vectors)
        best[name] = min(best.get(name, us), us)
best["held"] = held
print(json.dumps(best))
'''



def _vectors(count: int, pinned: bool = False) -> list[list[str]]:
    """Keys signing 44-byte messages (the size of a signed manifest digest): a fresh key for
    each signature, or one key for all of them (a node's pinned release key)."""
    vectors = []
    one_key = Ed25519PrivateKey.generate()
    for i in range(count):
        key = one_key if pinned else Ed25519PrivateKey.generate()
        pub = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        msg = b"LLv1-manifest" + hashlib.sha256(os.urandom(64) + bytes([i])).digest()[:31]
        vectors.append([pub.hex(), msg.hex(), key.sign(msg).hex()])
    return vectors


def _openssl_us(vectors: list[list[str]]) -> float:
    """Best per-verify time of OpenSSL (through `cryptography`) on the same signatures."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    loaded = [
        (Ed25519PublicKey.from_public_bytes(bytes.fromhex(p)), bytes.fromhex(m), bytes.fromhex(s))
        for p, m, s in vectors
    ]
    best = float("inf")
    for _ in range(20):
        t0 = time.perf_counter()
        for key, msg, sig in loaded:
            key.verify(sig, msg)
        best = min(best, (time.perf_counter() - t0) / len(loaded) * 1e6)
    return best


def measure() -> dict[str, float]:
    """Run both MicroPython verifiers and OpenSSL on the same signatures; times in µs."""
    vectors = _vectors(SIGNATURES)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "fresh.json").write_text(json.dumps(vectors))
        (work / "pinned.json").write_text(json.dumps(_vectors(SIGNATURES, pinned=True)))
        # Compiled as a bundle ships them, so the heap figure is what a node pays.
        (work / "crypto").mkdir()
        for module in ("__init__", "sha512", "ed25519"):
            mpy_cross_compile(FIRMWARE_LIB / "crypto" / f"{module}.py",
                              work / "crypto" / f"{module}.mpy", f"crypto/{module}.py")
        code = (
            STRAIGHTFORWARD_VERIFIER.replace("def verify(", "def reference_verify(")
            + f"ROUNDS = {ROUNDS}\n"
            + DEVICE_TIMER
        )
        proc = run_micropython(code, path_dirs=[work], heap_kb=ESP32_HEAP_KB, cwd=work,
                               timeout=600)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["openssl_us"] = _openssl_us(vectors)
    return result


def run() -> list[Figure]:
    r = measure()
    fast_ms = r["fast_us"] / 1000
    ref_ms = r["ref_us"] / 1000
    return [
        Figure(
            "Ed25519 verify, unix port (heap 100 KB), new key each time", fast_ms, "ms",
            baseline="straightforward verifier", baseline_value=ref_ms,
            target="≥ 3× faster than straightforward", met=fast_ms * 3 <= ref_ms,
        ),
        Figure(
            "Ed25519 verify with the node's pinned key (key table kept)", r["pinned_us"] / 1000,
            "ms", baseline="straightforward verifier", baseline_value=ref_ms,
        ),
        Figure(
            "OpenSSL verify (cryptography), host", r["openssl_us"] / 1000, "ms",
            baseline="unix-port verify", baseline_value=fast_ms,
        ),
        Figure("heap held by sha512 + ed25519 (.mpy) after a verify", r["held"] / 1024, "KB",
               target="≤ 24 KB", met=r["held"] <= 24 * 1024),
    ]
