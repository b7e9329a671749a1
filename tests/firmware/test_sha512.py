"""The pure-MicroPython SHA-512 gives the same digests as the host's, however the data is fed."""

from __future__ import annotations

import hashlib
import json

FIPS_ABC = (
    "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
    "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
)

DEVICE = """
import json
from crypto.sha512 import sha512
cases = json.load(open("cases.json"))
for n, chunk in cases:
    data = bytes((i * 131 + n) & 255 for i in range(n))
    h = sha512()
    for i in range(0, n, chunk):
        h.update(data[i:i + chunk])
    print(json.dumps([n, chunk, h.hexdigest()]))
"""


def _data(n: int) -> bytes:
    return bytes((i * 131 + n) & 255 for i in range(n))


def test_known_answer_abc(mpy):
    out = mpy(
        'from crypto.sha512 import sha512\nimport json\n'
        'print(json.dumps(sha512(b"abc").hexdigest()))\n'
    )
    assert out == [FIPS_ABC]


def test_matches_host_at_every_block_boundary_and_chunking(mpy, tmp_path):
    lengths = [0, 1, 55, 111, 112, 113, 127, 128, 129, 239, 240, 255, 256, 257, 1000]
    cases = [[n, c] for n in lengths for c in (1, 7, 128, 1000) if c <= max(n, 1) or c == 1000]
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    out = mpy(DEVICE)
    assert len(out) == len(cases)
    for n, chunk, digest in out:
        assert digest == hashlib.sha512(_data(n)).hexdigest(), (n, chunk)


def test_digest_does_not_end_the_stream(mpy):
    out = mpy(
        "import json\nfrom crypto.sha512 import sha512\n"
        "h = sha512(b'a' * 200)\nfirst = h.hexdigest()\nh.update(b'b' * 70)\n"
        "print(json.dumps([first, h.hexdigest(), len(h.digest())]))\n"
    )
    first, second, size = out[0]
    assert first == hashlib.sha512(b"a" * 200).hexdigest()
    assert second == hashlib.sha512(b"a" * 200 + b"b" * 70).hexdigest()
    assert size == 64
