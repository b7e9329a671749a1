"""The node's Ed25519 verifier accepts exactly the valid signatures (RFC 8032 and OpenSSL-made)."""

from __future__ import annotations

import hashlib
import json
import os

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, P - 2, P) % P

# RFC 8032 section 7.1: (public key, message, signature), hex.
RFC8032 = [
    ("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bac"
     "c61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"),
    ("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e"
     "458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"),
    ("fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
     "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290"
     "ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"),
    ("ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
     hashlib.sha512(b"abc").hexdigest(),
     "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b58909351fc9ac90b3ec"
     "fdfbc7c66431e0303dca179c138ac17ad9bef1177331a704"),
]

# Prints, for each case, "ok" or the exception class name and whether it is a ValueError.
DEVICE = """
import json
from binascii import unhexlify
from crypto import ed25519
for line in open("cases.jsonl"):
    pub, msg, sig = json.loads(line)
    try:
        result = ed25519.verify(unhexlify(pub), unhexlify(msg), unhexlify(sig))
        print(json.dumps("ok" if result is None else "returned " + repr(result)))
    except ed25519.BadSignature as exc:
        print(json.dumps(["BadSignature", isinstance(exc, ValueError), str(exc)]))
"""


def run_cases(mpy, tmp_path, cases: list[tuple[str, str, str]]) -> list:
    (tmp_path / "cases.jsonl").write_text("".join(json.dumps(c) + "\n" for c in cases))
    out = mpy(DEVICE)
    assert len(out) == len(cases)
    return out


def signed(message: bytes) -> tuple[bytes, bytes, bytes]:
    key = Ed25519PrivateKey.generate()
    pub = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return pub, message, key.sign(message)


def encode(y: int, sign: int = 0) -> bytes:
    return (y | (sign << 255)).to_bytes(32, "little")


def le32(n: int) -> bytes:
    return n.to_bytes(32, "little")


def off_curve_y() -> int:
    """Smallest y for which no x puts (x, y) on the curve."""
    y = 2
    while True:
        xx = (y * y - 1) * pow(D * y * y + 1, P - 2, P) % P
        if pow(xx, (P - 1) // 2, P) == P - 1:
            return y
        y += 1


def _affine_add(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    (x1, y1), (x2, y2) = a, b
    t = D * x1 * x2 * y1 * y2 % P
    return ((x1 * y2 + y1 * x2) * pow(1 + t, P - 2, P) % P,
            (y1 * y2 + x1 * x2) * pow(1 - t, P - 2, P) % P)


def _affine_mul(n: int, point: tuple[int, int]) -> tuple[int, int]:
    acc = (0, 1)
    while n:
        if n & 1:
            acc = _affine_add(acc, point)
        point = _affine_add(point, point)
        n >>= 1
    return acc


def _odd_multiples_hex(point: tuple[int, int], count: int) -> list[str]:
    twice = _affine_add(point, point)
    rows = []
    for _ in range(count):
        px, py = point
        rows.append(b"".join(le32(v) for v in ((py + px) % P, (py - px) % P,
                                               2 * D * px * py % P)).hex())
        point = _affine_add(point, twice)
    return rows


@pytest.mark.parametrize("table,multiplier", [("_BASE_MULTIPLES", 1),
                                              ("_BASE128_MULTIPLES", 2**128)])
def test_precomputed_tables_are_odd_multiples_of_the_base_point(mpy, table, multiplier):
    y = 4 * pow(5, P - 2, P) % P
    xx = (y * y - 1) * pow(D * y * y + 1, P - 2, P) % P
    x = pow(xx, (P + 3) // 8, P)
    if (x * x - xx) % P:
        x = x * pow(2, (P - 1) // 4, P) % P
    base = (P - x if x & 1 else x, y)
    out = mpy("from crypto import ed25519\nimport json, binascii\n"
              f"t = ed25519.{table}\n"
              "print(json.dumps([binascii.hexlify(t[i:i + 96]).decode()"
              " for i in range(0, len(t), 96)]))\n")
    assert len(out[0]) == 16
    assert out[0] == _odd_multiples_hex(_affine_mul(multiplier, base), len(out[0]))


def test_a_kept_key_table_never_lets_a_bad_signature_through(mpy, tmp_path):
    """The same key verifies good, bad, good; a different key in between changes nothing."""
    pub, msg, sig = signed(b"first")
    other = signed(b"second")
    forged = sig[:32] + le32((int.from_bytes(sig[32:], "little") + 1) % L)
    cases = [(pub, msg, sig), (pub, msg, forged), (pub, b"firsT", sig), other,
             (pub, msg, sig), (other[0], msg, sig), (pub, msg, sig)]
    out = run_cases(mpy, tmp_path, [tuple(x.hex() for x in c) for c in cases])
    assert [r if r == "ok" else r[0] for r in out] == [
        "ok", "BadSignature", "BadSignature", "ok", "ok", "BadSignature", "ok"]


def test_rfc8032_vectors_verify(mpy, tmp_path):
    assert run_cases(mpy, tmp_path, RFC8032) == ["ok"] * len(RFC8032)


def test_signatures_made_by_openssl_verify(mpy, tmp_path):
    sizes = [0, 1, 31, 44, 63, 64, 111, 200, 1000] + [os.urandom(1)[0] * 3 for _ in range(31)]
    cases = [tuple(x.hex() for x in signed(os.urandom(n))) for n in sizes]
    assert run_cases(mpy, tmp_path, cases) == ["ok"] * len(cases)


def _tampered_cases() -> dict[str, tuple[bytes, bytes, bytes]]:
    pub, msg, sig = signed(b"LLv1-manifest" + os.urandom(32))
    s = int.from_bytes(sig[32:], "little")
    bad_y = off_curve_y()

    def flip(data: bytes, index: int, bit: int = 1) -> bytes:
        out = bytearray(data)
        out[index] ^= bit
        return bytes(out)

    other_pub = signed(b"")[0]
    return {
        "flipped bit in R": (pub, msg, flip(sig, 3)),
        "flipped sign bit of R": (pub, msg, flip(sig, 31, 0x80)),
        "flipped bit in S": (pub, msg, flip(sig, 40)),
        "flipped bit in message": (pub, flip(msg, 20), sig),
        "message one byte longer": (pub, msg + b"\x00", sig),
        "signature by another key": (other_pub, msg, sig),
        "S + L (non-canonical S, same point)": (pub, msg, sig[:32] + le32(s + L)),
        "S = L": (pub, msg, sig[:32] + le32(L)),
        "S all ones": (pub, msg, sig[:32] + b"\xff" * 32),
        "R not on the curve": (pub, msg, encode(bad_y) + sig[32:]),
        "R with y >= p": (pub, msg, encode(P + 1) + sig[32:]),
        "public key not on the curve": (encode(bad_y), msg, sig),
        "public key with y >= p": (encode(P + 3), msg, sig),
        "public key y = p exactly": (encode(P), msg, sig),
        "public key x = 0 with sign bit": (encode(1, 1), msg, sig),
        "public key with flipped sign bit": (flip(pub, 31, 0x80), msg, sig),
        "short signature": (pub, msg, sig[:63]),
        "short public key": (pub[:31], msg, sig),
    }


def test_every_tampered_or_malformed_input_raises_bad_signature(mpy, tmp_path):
    cases = _tampered_cases()
    out = run_cases(mpy, tmp_path, [tuple(x.hex() for x in c) for c in cases.values()])
    for name, result in zip(cases, out, strict=True):
        assert result[:2] == ["BadSignature", True], name


@pytest.mark.parametrize("case,reason", [
    ("S + L (non-canonical S, same point)", "S >= L"),
    ("public key with y >= p", "y >= p"),
    ("public key not on the curve", "not on the curve"),
    ("public key x = 0 with sign bit", "x = 0"),
])
def test_malformed_inputs_are_refused_for_the_right_reason(mpy, tmp_path, case, reason):
    (out,) = run_cases(mpy, tmp_path, [tuple(x.hex() for x in _tampered_cases()[case])])
    assert reason in out[2]


def test_heap_held_after_verifying_stays_bounded(mpy, tmp_path):
    pub, msg, sig = signed(b"x" * 44)
    (tmp_path / "v.json").write_text(json.dumps([pub.hex(), msg.hex(), sig.hex()]))
    out = mpy(
        "import gc, json\nfrom binascii import unhexlify\nfrom crypto import ed25519\n"
        "pub, msg, sig = [unhexlify(x) for x in json.load(open('v.json'))]\n"
        "gc.collect()\nbefore = gc.mem_alloc()\n"
        "for _ in range(5):\n    ed25519.verify(pub, msg, sig)\n"
        "gc.collect()\nprint(json.dumps(gc.mem_alloc() - before))\n",
        heap_kb=64,
    )
    assert out[0] < 16 * 1024  # the base-point table, kept for later verifies
