"""Ed25519 signature verification (RFC 8032) in pure MicroPython, tuned for speed and bounded memory.

verify(public_key32, message, signature64) returns None or raises BadSignature.

How it is fast:
- [S]B - [k]A is computed in one pass (Straus/Shamir): the ~253 doublings are shared by
  both scalars, which are recoded as sparse signed windows (wNAF: width 7 for the fixed base
  point B, width 5 for the public key A).
- The odd multiples of B are computed once, normalised to affine coordinates with a single
  inversion, and kept for later calls; each addition of one of them costs 7 multiplications.
- Points are in extended coordinates (X:Y:Z:T); T is only computed when an addition needs it.
- Field elements are reduced lazily by folding 2^255 = 19 instead of dividing by p.
- R is never decompressed: the result is encoded once (one inversion) and compared with R's
  bytes, which also rejects every non-canonical or off-curve R.
"""

from micropython import const

from sha512 import sha512

_P = const(0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFED)  # 2^255 - 19
_L = const(0x1000000000000000000000000000000014DEF9DEA2F79CD65812631A5CF5D3ED)  # group order
_MASK = const(0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF)  # 2^255 - 1
_D = const(0x52036CEE2B6FFE738CC740797779E89800700A4D4141D8AB75EB4DCA135978A3)  # -121665/121666
_D2 = const(0x2406D9DC56DFFCE7198E80F2EEF3D13000E0149A8283B156EBD69B9426B2F159)  # 2*d mod p
_SQRT_M1 = const(0x2B8324804FC1DF0B2B4D00993DFBD7A72F431806AD2FE478C4EE1B274A0EA0B0)

_WIDTH_B = const(7)  # wNAF width for the fixed base point: 32 precomputed odd multiples
_WIDTH_A = const(5)  # wNAF width for the public key: 8 odd multiples built per call
_DIGITS = const(256)

# Encoding of the base point B (y = 4/5, x even).
_B_BYTES = b"\x58" + b"\x66" * 31


class BadSignature(ValueError):
    """The signature, the public key or their encodings are not valid for this message."""


# Reused for every call: the signed-digit recodings of S and k, and the base-point table.
_naf_s = [0] * _DIGITS
_naf_k = [0] * _DIGITS
# y+x, y-x, 2d*x*y of B, 3B, 5B, ... (affine, fully reduced), 32 bytes little-endian each,
# filled on first use. One flat buffer allocated at import: a table of separate big integers
# would be scattered over the heap and fragment it for every later allocation.
_ENTRY = const(96)
_base_table = bytearray(_ENTRY << (_WIDTH_B - 2))
_base_view = memoryview(_base_table)
_base_ready = [False]


def _fold(x):
    """x reduced to about 256 bits (same value mod p); keeps products from growing."""
    x = (x & _MASK) + 19 * (x >> 255)
    return (x & _MASK) + 19 * (x >> 255)


def _sqn(x, n):
    """x^(2^n) mod p, reduced lazily."""
    m = _MASK
    for _ in range(n):
        x = x * x
        x = (x & m) + 19 * (x >> 255)
        x = (x & m) + 19 * (x >> 255)
    return x


def _pow_2_250_1(z):
    """(z^(2^250 - 1), z^11): the shared head of the inversion and square-root chains."""
    z2 = _fold(z * z)
    z9 = _fold(_sqn(z2, 2) * z)
    z11 = _fold(z9 * z2)
    a = _fold(_fold(z11 * z11) * z9)  # 2^5 - 1
    b = _fold(_sqn(a, 5) * a)  # 2^10 - 1
    c = _fold(_sqn(b, 10) * b)  # 2^20 - 1
    c = _fold(_sqn(c, 20) * c)  # 2^40 - 1
    c = _fold(_sqn(c, 10) * b)  # 2^50 - 1
    e = _fold(_sqn(c, 50) * c)  # 2^100 - 1
    e = _fold(_sqn(e, 100) * e)  # 2^200 - 1
    return _fold(_sqn(e, 50) * c), z11  # 2^250 - 1


def _inverse(z):
    """1/z mod p (z^(p-2))."""
    t, z11 = _pow_2_250_1(z % _P)
    return _sqn(t, 5) * z11 % _P


def _decode_point(data):
    """(x, y) of a 32-byte point encoding; raises BadSignature if it is not a canonical point."""
    y = int.from_bytes(data, "little")
    sign = y >> 255
    y &= _MASK
    if y >= _P:
        raise BadSignature("point encoding is not canonical (y >= p)")
    p = _P
    yy = y * y % p
    u = yy - 1
    v = (_D * yy + 1) % p
    v3 = v * v % p * v % p
    uv7 = u * v3 % p * v3 % p * v % p
    t, _ = _pow_2_250_1(uv7)
    x = u * v3 % p * _fold(_sqn(t, 2) * uv7) % p  # u v^3 (u v^7)^((p-5)/8)
    vxx = v * x % p * x % p
    if vxx != u % p:
        if vxx != (-u) % p:
            raise BadSignature("point is not on the curve")
        x = x * _SQRT_M1 % p
    if x == 0 and sign:
        raise BadSignature("point encoding is not canonical (x = 0 with sign bit set)")
    if (x & 1) != sign:
        x = p - x
    return x, y


def _recode(scalar, width, digits):
    """Fill `digits` (least significant first) with the width-`width` NAF of scalar; top index."""
    for i in range(_DIGITS):
        digits[i] = 0
    full = 1 << width
    half = full >> 1
    i = 0
    top = -1
    while scalar:
        if scalar & 1:
            d = scalar & (full - 1)
            if d >= half:
                d -= full
            scalar -= d
            digits[i] = d
            top = i
            scalar >>= width
            i += width
        else:
            # Skip a run of zero bits in one shift.
            low = scalar & 0xFF
            if low:
                n = 1
                while not (low >> n) & 1:
                    n += 1
            else:
                n = 8
            scalar >>= n
            i += n
    return top


def _base_table_get():
    """The affine odd multiples of B (built on first use: one inversion for all of them)."""
    if _base_ready[0]:
        return _base_view
    p = _P
    bx, by = _decode_point(_B_BYTES)
    count = 1 << (_WIDTH_B - 2)
    # 2B in extended coordinates, then B, 3B, 5B, ... by repeated additions of 2B.
    b2 = _double_ext(bx, by, 1, bx * by % p)
    q2 = _niels(b2[0], b2[1], b2[2], b2[3])
    points = [(bx, by, 1, bx * by % p)]
    for _ in range(count - 1):
        x, y, z, t = points[-1]
        points.append(_add_niels(x, y, z, t, q2))
    # Montgomery's trick: one inversion normalises every Z.
    prefix = [1] * count
    acc = 1
    for i in range(count):
        prefix[i] = acc
        acc = acc * points[i][2] % p
    inv = _inverse(acc)
    table = _base_table
    for i in range(count - 1, -1, -1):
        x, y, z, _ = points[i]
        zi = inv * prefix[i] % p
        inv = inv * z % p
        x = x * zi % p
        y = y * zi % p
        j = _ENTRY * i
        table[j:j + 32] = ((y + x) % p).to_bytes(32, "little")
        table[j + 32:j + 64] = ((y - x) % p).to_bytes(32, "little")
        table[j + 64:j + 96] = (_D2 * x % p * y % p).to_bytes(32, "little")
    _base_ready[0] = True
    return _base_view


def _double_ext(x, y, z, _t):
    """2P in extended coordinates (a = -1 twisted Edwards, dbl-2008-hwcd)."""
    a = _fold(x * x)
    b = _fold(y * y)
    c = _fold(z * z)
    c += c
    e = _fold(x * y)
    e += e
    g = b - a
    h = -a - b
    f = g - c
    return _fold(e * f), _fold(g * h), _fold(f * g), _fold(e * h)


def _niels(x, y, z, t):
    """(Y+X, Y-X, 2d*T, 2*Z): the form of a point that additions consume."""
    return _fold(y + x), _fold(y - x), _fold(_D2 * t), z + z


def _add_niels(x, y, z, t, q):
    """P + Q for P extended and Q in niels form (add-2008-hwcd-3)."""
    a = _fold((y - x) * q[1])
    b = _fold((y + x) * q[0])
    c = _fold(t * q[2])
    d = _fold(z * q[3])
    e = b - a
    f = d - c
    g = d + c
    h = b + a
    return _fold(e * f), _fold(g * h), _fold(f * g), _fold(e * h)


def _point_table(x, y):
    """Niels forms of P, 3P, ..., (2^(width-1) - 1)P for the public key (flat list of 4-tuples)."""
    p = _P
    t = x * y % p
    p2 = _niels(*_double_ext(x, y, 1, t))
    table = [_niels(x, y, 1, t)]
    cur = (x, y, 1, t)
    for _ in range((1 << (_WIDTH_A - 2)) - 1):
        cur = _add_niels(cur[0], cur[1], cur[2], cur[3], p2)
        table.append(_niels(*cur))
    return table


def _encode(x, y, z):
    """32-byte encoding of the projective point (X:Y:Z)."""
    zi = _inverse(z)
    xa = x * zi % _P
    ya = y * zi % _P
    return (ya | ((xa & 1) << 255)).to_bytes(32, "little")


def _double_scalar_mul(s, k, a_table):
    """Encoding of [s]B + [k]A' where a_table holds the odd multiples of A'."""
    base = _base_table_get()
    ns = _naf_s
    nk = _naf_k
    top = max(_recode(s, _WIDTH_B, ns), _recode(k, _WIDTH_A, nk))
    m = _MASK
    from_bytes = int.from_bytes
    x = 0
    y = 1
    z = 1
    t = 0
    i = top
    while i >= 0:
        ds = ns[i]
        dk = nk[i]
        # Doubling (dbl-2008-hwcd); T only when an addition follows at this position.
        a = x * x
        a = (a & m) + 19 * (a >> 255)
        b = y * y
        b = (b & m) + 19 * (b >> 255)
        c = z * z
        c = (c & m) + 19 * (c >> 255)
        c += c
        e = x * y
        e = (e & m) + 19 * (e >> 255)
        e += e
        g = b - a
        h = -a - b
        f = g - c
        x = e * f
        x = (x & m) + 19 * (x >> 255)
        x = (x & m) + 19 * (x >> 255)
        y = g * h
        y = (y & m) + 19 * (y >> 255)
        y = (y & m) + 19 * (y >> 255)
        z = f * g
        z = (z & m) + 19 * (z >> 255)
        z = (z & m) + 19 * (z >> 255)
        if ds or dk:
            t = e * h
            t = (t & m) + 19 * (t >> 255)
            t = (t & m) + 19 * (t >> 255)
        if ds:
            # Mixed addition of an affine multiple of B (Z2 = 1): 7 multiplications.
            j = _ENTRY * ((ds if ds > 0 else -ds) >> 1)
            qp = from_bytes(base[j:j + 32], "little")
            qm = from_bytes(base[j + 32:j + 64], "little")
            qt = from_bytes(base[j + 64:j + 96], "little")
            if ds < 0:
                qp, qm = qm, qp
                qt = -qt
            a = (y - x) * qm
            a = (a & m) + 19 * (a >> 255)
            b = (y + x) * qp
            b = (b & m) + 19 * (b >> 255)
            c = t * qt
            c = (c & m) + 19 * (c >> 255)
            d = z + z
            e = b - a
            f = d - c
            g = d + c
            h = b + a
            x = e * f
            x = (x & m) + 19 * (x >> 255)
            x = (x & m) + 19 * (x >> 255)
            y = g * h
            y = (y & m) + 19 * (y >> 255)
            y = (y & m) + 19 * (y >> 255)
            z = f * g
            z = (z & m) + 19 * (z >> 255)
            z = (z & m) + 19 * (z >> 255)
            if dk:
                t = e * h
                t = (t & m) + 19 * (t >> 255)
                t = (t & m) + 19 * (t >> 255)
        if dk:
            q = a_table[(dk if dk > 0 else -dk) >> 1]
            if dk > 0:
                qp = q[0]
                qm = q[1]
                qt = q[2]
            else:
                qp = q[1]
                qm = q[0]
                qt = -q[2]
            a = (y - x) * qm
            a = (a & m) + 19 * (a >> 255)
            b = (y + x) * qp
            b = (b & m) + 19 * (b >> 255)
            c = t * qt
            c = (c & m) + 19 * (c >> 255)
            d = z * q[3]
            d = (d & m) + 19 * (d >> 255)
            e = b - a
            f = d - c
            g = d + c
            h = b + a
            x = e * f
            x = (x & m) + 19 * (x >> 255)
            x = (x & m) + 19 * (x >> 255)
            y = g * h
            y = (y & m) + 19 * (y >> 255)
            y = (y & m) + 19 * (y >> 255)
            z = f * g
            z = (z & m) + 19 * (z >> 255)
            z = (z & m) + 19 * (z >> 255)
        i -= 1
    return _encode(x, y, z)


def verify(public_key, message, signature):
    """Check an Ed25519 signature; return None if it is valid, else raise BadSignature."""
    if len(public_key) != 32:
        raise BadSignature("public key must be 32 bytes")
    if len(signature) != 64:
        raise BadSignature("signature must be 64 bytes")
    s = int.from_bytes(signature[32:], "little")
    if s >= _L:
        raise BadSignature("signature is not canonical (S >= L)")
    ax, ay = _decode_point(public_key)
    h = sha512(signature[:32])
    h.update(public_key)
    h.update(message)
    k = int.from_bytes(h.digest(), "little") % _L
    # [S]B - [k]A must equal R: use the multiples of -A = (-x, y).
    table = _point_table(_P - ax, ay)
    if _double_scalar_mul(s, k, table) != bytes(signature[:32]):
        raise BadSignature("signature does not match")
