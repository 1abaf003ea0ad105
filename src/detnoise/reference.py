"""A pure-numpy implementation of stream v1, written from docs/SPEC.md alone.

It shares no code with the compiled kernels on purpose: the tests compare the C++ kernel against
it bit for bit, and the C++ kernel is then the oracle for CUDA. Every float operation below is a
single IEEE operation on numpy arrays of the stated type (numpy never fuses them), done in the
order the spec gives. Slow but exact; meant for tests and for reimplementers.

Values come back as numpy arrays: uint32, float32, float64, float16, and bfloat16 as its raw
uint16 bit patterns (numpy has no bfloat16 type).

>>> from detnoise import reference
>>> reference.philox4x32_10([0, 0, 0, 0], [0, 0])
(1713891541, 3781805453, 3159862348, 2600524760)
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "philox4x32_10", "blocks", "bits", "uniform", "normal", "narrow", "fold_in_stream", "spawn_stream",
    # SPEC §10 (v1 additions: torch's other samplers)
    "normal_affine", "normal_complex", "uniform_range", "exponential", "bernoulli", "integers", "permutation",
    "multinomial",
]

_M32 = np.uint64(0xFFFFFFFF)
_PHILOX_M = (np.uint64(0xD2511F53), np.uint64(0xCD9E8D57))
_PHILOX_W = (0x9E3779B9, 0xBB67AE85)
_DTYPES = ("float32", "float64", "float16", "bfloat16")


# ---- SPEC §1: Philox4x32-10 -----------------------------------------------------------------


def _philox_words(c0, c1, c2, c3, key0: int, key1: int):
    """Vectorised rounds on uint64 arrays holding 32-bit words."""
    for round_index in range(10):
        if round_index:
            key0 = (key0 + _PHILOX_W[0]) & 0xFFFFFFFF
            key1 = (key1 + _PHILOX_W[1]) & 0xFFFFFFFF
        p0 = _PHILOX_M[0] * c0  # < 2^64: exact in uint64
        p1 = _PHILOX_M[1] * c2
        c0, c1, c2, c3 = (
            (p1 >> np.uint64(32)) ^ c1 ^ np.uint64(key0),
            p1 & _M32,
            (p0 >> np.uint64(32)) ^ c3 ^ np.uint64(key1),
            p0 & _M32,
        )
    return c0, c1, c2, c3


def philox4x32_10(counter, key) -> tuple[int, int, int, int]:
    """One block: 4 counter words, 2 key words -> 4 words (Random123's philox4x32_10)."""
    words = [np.array([int(w)], dtype=np.uint64) for w in counter]
    out = _philox_words(*words, int(key[0]), int(key[1]))
    return tuple(int(w[0]) for w in out)  # type: ignore[return-value]


# ---- SPEC §2: stream layout ------------------------------------------------------------------


def blocks(seed: int, stream: int, first_block: int, count: int) -> np.ndarray:
    """Blocks first_block ... first_block + count - 1 of (seed, stream) as a (count, 4) uint32 array."""
    seed %= 1 << 64
    stream %= 1 << 64
    if first_block < 0 or first_block + count > 1 << 64:
        raise ValueError("blocks must lie in [0, 2**64)")
    index = np.arange(count, dtype=np.uint64) + np.uint64(first_block)  # no wrap: checked above
    c2 = np.full(count, stream & 0xFFFFFFFF, dtype=np.uint64)
    c3 = np.full(count, stream >> 32, dtype=np.uint64)
    out = _philox_words(index & _M32, index >> np.uint64(32), c2, c3, seed & 0xFFFFFFFF, seed >> 32)
    return np.stack(out, axis=1).astype(np.uint32)


def _words(n: int, per_block: int, seed: int, stream: int, offset: int, first_element: int) -> np.ndarray:
    """The blocks covering elements [first_element, first_element + n) as (blocks, 4) uint32."""
    first = first_element // per_block
    last = (first_element + n + per_block - 1) // per_block
    return blocks(seed, stream, offset + first, last - first)


def _take(values: np.ndarray, n: int, per_block: int, first_element: int) -> np.ndarray:
    start = first_element % per_block
    return values.reshape(-1)[start : start + n]


def bits(n: int, seed: int, stream: int = 0, offset: int = 0, first_element: int = 0) -> np.ndarray:
    """Raw words: element i is word i % 4 of block offset + i // 4."""
    return _take(_words(n, 4, seed, stream, offset, first_element), n, 4, first_element)


# ---- SPEC §4: uniform ------------------------------------------------------------------------


# SPEC §6: the one NaN of each 16-bit format (positive, quiet, no payload), whatever NaN it narrows.
_NAN16 = {"float16": np.uint16(0x7E00), "bfloat16": np.uint16(0x7FC0)}


def narrow(values: np.ndarray, dtype: str) -> np.ndarray:
    """SPEC §6: float32 ``values`` rounded to nearest even to ``dtype`` ('float16': a float16 array;
    'bfloat16': its uint16 bit patterns; any other dtype: ``values`` unchanged). Infinities stay
    infinities, magnitudes that round past the largest finite value become infinities, and every
    NaN becomes the format's one NaN, 0x7E00 or 0x7FC0.

    >>> narrow(np.array([65519.0, 65520.0, -np.inf, np.nan], dtype=np.float32), "float16").view(np.uint16).tolist()
    [31743, 31744, 64512, 32256]
    """
    if dtype not in _NAN16:
        return values
    f32 = np.asarray(values, dtype=np.float32)
    if dtype == "float16":
        with np.errstate(over="ignore", invalid="ignore"):
            rounded = f32.astype(np.float16).view(np.uint16)  # numpy's IEEE round-to-nearest-even conversion
    else:
        b = f32.view(np.uint32).astype(np.uint64)
        rounded = ((b + np.uint64(0x7FFF) + ((b >> np.uint64(16)) & np.uint64(1))) >> np.uint64(16)).astype(np.uint16)
    rounded = np.where(np.isnan(f32), _NAN16[dtype], rounded).astype(np.uint16)
    return rounded.view(np.float16) if dtype == "float16" else rounded


_narrow = narrow


def uniform(n: int, dtype: str, seed: int, stream: int = 0, offset: int = 0, first_element: int = 0) -> np.ndarray:
    """Uniform [0, 1) values of a draw of dtype ``dtype`` ('float32', 'float64', 'float16', 'bfloat16')."""
    _check_dtype(dtype)
    if dtype == "float64":
        w = _words(n, 2, seed, stream, offset, first_element).astype(np.uint64)
        lo = w[:, 0::2]
        hi = w[:, 1::2]
        word = (hi << np.uint64(32)) | lo
        values = (word >> np.uint64(11)).astype(np.float64) * np.float64(2.0**-53)
        return _take(values, n, 2, first_element)
    w = _words(n, 4, seed, stream, offset, first_element)
    keep_bits = {"float32": 24, "float16": 11, "bfloat16": 8}[dtype]
    values = (w >> np.uint32(32 - keep_bits)).astype(np.float32) * np.float32(2.0**-keep_bits)
    return _take(_narrow(values, dtype), n, 4, first_element)


# ---- SPEC §5: normal -------------------------------------------------------------------------

_LOGF = {
    "ln2_hi": np.float32(float.fromhex("0x1.62e300p-1")),
    "ln2_lo": np.float32(float.fromhex("0x1.2fefa2p-17")),
    "lg": [np.float32(float.fromhex(h)) for h in ("0x1.555554p-1", "0x1.999c26p-2", "0x1.23d3dcp-2", "0x1.f13c4cp-3")],
}
_LOG = {
    "ln2_hi": float.fromhex("0x1.62e42feep-1"),
    "ln2_lo": float.fromhex("0x1.a39ef35793c76p-33"),
    "lg": [
        float.fromhex(h)
        for h in (
            "0x1.5555555555593p-1", "0x1.999999997fa04p-2", "0x1.2492494229359p-2", "0x1.c71c51d8e78afp-3",
            "0x1.7466496cb03dep-3", "0x1.39a09d078c69fp-3", "0x1.2f112df3e5244p-3",
        )
    ],
}
_SIN32 = [np.float32(float.fromhex(h)) for h in ("0x1.921fb6p-1", "-0x1.4abbcep-4", "0x1.466bc6p-9", "-0x1.32d2ccp-15", "0x1.507834p-22")]
_COS32 = [np.float32(float.fromhex(h)) for h in ("-0x1.3bd3ccp-2", "0x1.03c1f0p-6", "-0x1.55d3c8p-12", "0x1.e1f506p-19", "-0x1.a6d1f2p-26")]
_SIN64 = [
    float.fromhex(h)
    for h in (
        "0x1.921fb54442d18p-1", "-0x1.4abbce625be53p-4", "0x1.466bc6775aae2p-9", "-0x1.32d2cce62bd86p-15",
        "0x1.50783487ee782p-22", "-0x1.e3074fde8871fp-30", "0x1.e8f434d018d63p-38", "-0x1.6fadb9f155744p-46",
    )
]
_COS64 = [
    float.fromhex(h)
    for h in (
        "-0x1.3bd3cc9be45dep-2", "0x1.03c1f081b5ac4p-6", "-0x1.55d3c7e3cbffap-12", "0x1.e1f506891babbp-19",
        "-0x1.a6d1f2a204a8cp-26", "0x1.f9d38a3763cc3p-34", "-0x1.b6e24f44b128fp-42", "0x1.20c62c2f2d7f5p-50",
    )
]


def _horner(t2: np.ndarray, coefficients, dtype) -> np.ndarray:
    """c0 + t2 * (c1 + t2 * (... + t2 * c_last)), one rounding per operation."""
    acc = np.full_like(t2, coefficients[-1], dtype=dtype)
    for c in reversed(coefficients[:-1]):
        acc = dtype(c) + t2 * acc
    return acc


def log_f32(x: np.ndarray) -> np.ndarray:
    """SPEC §5.2, float32: natural log of positive normal float32 values."""
    ix = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    ix = (ix + np.uint64(0x3F800000 - 0x3F3504F3)) & _M32
    k = (ix >> np.uint64(23)).astype(np.int64) - 0x7F
    m = ((ix & np.uint64(0x007FFFFF)) + np.uint64(0x3F3504F3)).astype(np.uint32).view(np.float32)
    f = m - np.float32(1.0)
    s = f / (np.float32(2.0) + f)
    z = s * s
    w = z * z
    lg1, lg2, lg3, lg4 = _LOGF["lg"]
    t1 = w * (lg2 + w * lg4)
    t2 = z * (lg1 + w * lg3)
    r = t2 + t1
    hfsq = (np.float32(0.5) * f) * f
    dk = k.astype(np.float32)  # |k| < 2^7: exact
    return (((s * (hfsq + r) + dk * _LOGF["ln2_lo"]) - hfsq) + f) + dk * _LOGF["ln2_hi"]


def log_f64(x: np.ndarray) -> np.ndarray:
    """SPEC §5.2, float64: natural log of positive normal float64 values."""
    bits64 = x.astype(np.float64).view(np.uint64)
    hx = ((bits64 >> np.uint64(32)) + np.uint64(0x3FF00000 - 0x3FE6A09E)) & _M32
    k = (hx >> np.uint64(20)).astype(np.int64) - 0x3FF
    hx = (hx & np.uint64(0x000FFFFF)) + np.uint64(0x3FE6A09E)
    f = ((hx << np.uint64(32)) | (bits64 & _M32)).view(np.float64) - 1.0
    hfsq = (0.5 * f) * f
    s = f / (2.0 + f)
    z = s * s
    w = z * z
    lg1, lg2, lg3, lg4, lg5, lg6, lg7 = _LOG["lg"]
    t1 = w * (lg2 + w * (lg4 + w * lg6))
    t2 = z * (lg1 + w * (lg3 + w * (lg5 + w * lg7)))
    r = t2 + t1
    dk = k.astype(np.float64)
    return (((s * (hfsq + r) + dk * _LOG["ln2_lo"]) - hfsq) + f) + dk * _LOG["ln2_hi"]


def _rotate(quarter: np.ndarray, cos_r: np.ndarray, sin_r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sin, cos) of the remainder angle plus `quarter` quarter turns."""
    odd = (quarter & 1) == 1
    c = np.where(odd, sin_r, cos_r)
    s = np.where(odd, cos_r, sin_r)
    cos_v = np.where((quarter == 1) | (quarter == 2), -c, c)
    sin_v = np.where(quarter >= 2, -s, s)
    return sin_v, cos_v


def sincos_turn_f32(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """SPEC §5.3, float32: sin and cos of 2*pi*x/2^32 for uint32 x."""
    x64 = x.astype(np.uint64)
    nearest = ((x64 + np.uint64(0x20000000)) & _M32) >> np.uint64(30)
    remainder = ((x64 - (nearest << np.uint64(30))) & _M32).astype(np.uint32).view(np.int32)
    t = remainder.astype(np.float64).astype(np.float32) * np.float32(2.0**-29)  # one rounding
    t2 = t * t
    sin_r = t * _horner(t2, _SIN32, np.float32)
    cos_r = np.float32(1.0) + t2 * _horner(t2, _COS32, np.float32)
    return _rotate(nearest.astype(np.int64) & 3, cos_r, sin_r)


def sincos_turn_f64(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """SPEC §5.3, float64: sin and cos of 2*pi*(y >> 11)/2^53 for uint64 y."""
    v = y.astype(np.uint64) >> np.uint64(11)
    nearest = (v + np.uint64(1 << 50)) >> np.uint64(51)  # 0..4
    remainder = v.astype(np.int64) - (nearest.astype(np.int64) << 51)
    t = remainder.astype(np.float64) * 2.0**-50  # |remainder| <= 2^50: exact
    t2 = t * t
    sin_r = t * _horner(t2, _SIN64, np.float64)
    cos_r = 1.0 + t2 * _horner(t2, _COS64, np.float64)
    return _rotate(nearest.astype(np.int64) & 3, cos_r, sin_r)


def normal_pairs_f32(x_radius: np.ndarray, x_angle: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """SPEC §5.1, float32: (z_even, z_odd) from the words of a pair."""
    odd = 2 * x_radius.astype(np.int64) + 1  # < 2^33: exact in float64, so one rounding to float32
    u = odd.astype(np.float64).astype(np.float32) * np.float32(2.0**-33)
    log_u = log_f32(u)
    radius = np.sqrt(np.float32(0.0) - (log_u + log_u))
    sin_v, cos_v = sincos_turn_f32(x_angle)
    return radius * cos_v, radius * sin_v


def normal_pairs_f64(word_radius: np.ndarray, word_angle: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """SPEC §5.1, float64: (z_even, z_odd) from the two 64-bit words of a block."""
    odd = 2 * (word_radius.astype(np.uint64) >> np.uint64(12)).astype(np.int64) + 1  # < 2^53: exact
    u = odd.astype(np.float64) * 2.0**-53
    log_u = log_f64(u)
    radius = np.sqrt(0.0 - (log_u + log_u))
    sin_v, cos_v = sincos_turn_f64(word_angle)
    return radius * cos_v, radius * sin_v


def normal(n: int, dtype: str, seed: int, stream: int = 0, offset: int = 0, first_element: int = 0) -> np.ndarray:
    """Standard normal values of a draw of dtype ``dtype``; 16-bit ones are the float32 values rounded."""
    _check_dtype(dtype)
    if dtype == "float64":
        w = _words(n, 2, seed, stream, offset, first_element).astype(np.uint64)
        radius_word = (w[:, 1] << np.uint64(32)) | w[:, 0]
        angle_word = (w[:, 3] << np.uint64(32)) | w[:, 2]
        z_even, z_odd = normal_pairs_f64(radius_word, angle_word)
        return _take(np.stack([z_even, z_odd], axis=1), n, 2, first_element)
    w = _words(n, 4, seed, stream, offset, first_element)
    z = np.empty(w.shape, dtype=np.float32)
    z[:, 0], z[:, 1] = normal_pairs_f32(w[:, 0], w[:, 1])
    z[:, 2], z[:, 3] = normal_pairs_f32(w[:, 2], w[:, 3])
    return _take(_narrow(z, dtype), n, 4, first_element)


# ---- SPEC §3: derived streams ------------------------------------------------------------------


def _derive(seed: int, stream: int, data: int, tweak: tuple[int, int]) -> int:
    seed %= 1 << 64
    stream %= 1 << 64
    data %= 1 << 64
    counter = (data & 0xFFFFFFFF, data >> 32, stream & 0xFFFFFFFF, stream >> 32)
    key = ((seed & 0xFFFFFFFF) ^ tweak[0], (seed >> 32) ^ tweak[1])
    words = philox4x32_10(counter, key)
    return words[0] | (words[1] << 32)


def fold_in_stream(seed: int, stream: int, data: int) -> int:
    """Stream id of Generator.fold_in(data) on (seed, stream)."""
    return _derive(seed, stream, data, (0xA4093822, 0x299F31D0))


def spawn_stream(seed: int, stream: int, block: int) -> int:
    """Stream id of the spawn child made from parent block ``block``."""
    return _derive(seed, stream, block, (0x082EFA98, 0xEC4E6C89))


def _check_dtype(dtype: str) -> None:
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {_DTYPES}, got {dtype!r}")


# ---- SPEC §10: v1 additions for torch's other samplers ---------------------------------------------
# Written from SPEC §10's text: Python ints for the integer kinds (exact by construction), numpy
# float arrays (one IEEE operation per step, never fused) for the float ones.

_COMPUTE = {"float32": np.float32, "float64": np.float64, "float16": np.float32, "bfloat16": np.float32}


# SPEC §10: the NaN every NaN result becomes, in the compute type (positive, quiet, no payload).
_CANONICAL_NAN = {np.float32: (np.uint32, 0x7FC00000), np.float64: (np.uint64, 0x7FF8000000000000)}


def _finish_float(values: np.ndarray, dtype: str) -> np.ndarray:
    """§10: NaNs of the compute type made the canonical NaN, then narrowed to ``dtype`` (§6)."""
    unsigned, nan_bits = _CANONICAL_NAN[values.dtype.type]
    values = np.where(np.isnan(values), unsigned(nan_bits).view(values.dtype), values).astype(values.dtype)
    return _narrow(values, dtype) if dtype in ("float16", "bfloat16") else values


def _rounded(number: float, compute) -> np.generic:
    """A Python number rounded to nearest even in the compute type (overflow gives +-inf, as IEEE)."""
    with np.errstate(over="ignore"):
        return compute(number)


def normal_affine(n: int, dtype: str, seed: int, stream: int = 0, offset: int = 0, mean: float = 0.0,
                  std: float = 1.0) -> np.ndarray:
    """§10.1: normal values times std, plus mean (Python numbers; 1 and 0 skip their operation)."""
    compute = _COMPUTE[dtype]
    values = normal(n, "float32" if compute is np.float32 else "float64", seed, stream, offset)
    with np.errstate(over="ignore", invalid="ignore"):  # IEEE: overflow gives +-inf, 0*inf and inf-inf NaN
        if std != 1:
            values = values * _rounded(std, compute)
        if mean != 0:
            values = values + _rounded(mean, compute)
    return _finish_float(values, dtype)


def normal_complex(n: int, dtype: str, seed: int, stream: int = 0, offset: int = 0) -> np.ndarray:
    """§10.2: complex64/complex128 normals from 2n real normals times sqrt(1/2) rounded."""
    real = {"complex64": "float32", "complex128": "float64"}[dtype]
    scale = {"float32": np.float32(float.fromhex("0x1.6a09e6p-1")), "float64": float.fromhex("0x1.6a09e667f3bcdp-1")}[real]
    values = normal(2 * n, real, seed, stream, offset) * scale
    return values[0::2] + 1j * values[1::2].astype(values.dtype)


def uniform_range(n: int, dtype: str, seed: int, stream: int = 0, offset: int = 0, low: float = 0.0,
                  high: float = 1.0) -> np.ndarray:
    """§10.3: u * (high - low) + low, the width rounded from binary64."""
    values = uniform(n, dtype, seed, stream, offset)
    if (low, high) == (0.0, 1.0):
        return values
    compute = _COMPUTE[dtype]
    if dtype == "bfloat16":  # the reference keeps bfloat16 as bit patterns: back to float32 exactly
        values = (values.astype(np.uint32) << np.uint32(16)).view(np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        values = values.astype(compute) * _rounded(float(high) - float(low), compute)
        values = values + _rounded(low, compute)
    return _finish_float(values, dtype)


def exponential(n: int, dtype: str, seed: int, stream: int = 0, offset: int = 0, lambd: float = 1.0) -> np.ndarray:
    """§10.4: E = (z0*z0 + z1*z1) * 0.5 from 2n normals, then times 1/lambd rounded."""
    compute = _COMPUTE[dtype]
    z = normal(2 * n, "float32" if compute is np.float32 else "float64", seed, stream, offset)
    z0, z1 = z[0::2], z[1::2]
    values = ((z0 * z0) + (z1 * z1)) * compute(0.5)
    if lambd != 1:
        with np.errstate(over="ignore", invalid="ignore"):  # a tiny lambd: r = +inf, and E = +0 gives NaN
            values = values * _rounded(1.0 / float(lambd), compute)
    return _finish_float(values, dtype)


def bernoulli(n: int, p, seed: int, stream: int = 0, offset: int = 0) -> np.ndarray:
    """§10.5: 1 where the float64 uniform is below p (binary64 comparison), else 0."""
    return (uniform(n, "float64", seed, stream, offset) < np.asarray(p, dtype=np.float64)).astype(np.uint8)


def _words64(n: int, seed: int, stream: int, offset: int) -> list[int]:
    w = [int(x) for x in bits(2 * n, seed, stream, offset)]
    return [w[2 * k] | (w[2 * k + 1] << 32) for k in range(n)]


def integers(n: int, low: int, high: int, seed: int, stream: int = 0, offset: int = 0) -> list[int]:
    """§10.6: low + floor(W * (high - low) / 2^64), one 64-bit word W per element."""
    span = high - low
    return [low + ((word * span) >> 64) for word in _words64(n, seed, stream, offset)]


def permutation(n: int, seed: int, stream: int = 0, offset: int = 0) -> list[int]:
    """§10.7: indices ordered by their 64-bit key (unsigned), ties by index."""
    keys = _words64(n, seed, stream, offset)
    return sorted(range(n), key=lambda index: (keys[index], index))


def multinomial(probs, samples: int, replacement: bool, seed: int, stream: int = 0, offset: int = 0) -> list[list[int]]:
    """§10.8: exponential races over the rows of ``probs`` (a list of rows of float64 weights)."""
    rows = [np.asarray(row, dtype=np.float64) for row in probs]
    categories = len(rows[0])
    rounds = samples if replacement else 1
    z = normal(2 * len(rows) * rounds * categories, "float64", seed, stream, offset)
    exp = ((z[0::2] * z[0::2]) + (z[1::2] * z[1::2])) * 0.5
    out = []
    for r, row in enumerate(rows):
        with np.errstate(divide="ignore"):
            keys = exp[r * rounds * categories : (r + 1) * rounds * categories].reshape(rounds, categories) / row
        if replacement:
            out.append([min(range(categories), key=lambda i, k=k: (k[i], i)) for k in keys])
        else:
            order = sorted(range(categories), key=lambda i: (keys[0][i], i))
            out.append(order[:samples])
    return out
