"""The normal transform meets SPEC §5.4's error bounds against the exact Box-Muller formula."""

from __future__ import annotations

import numpy as np

from detnoise import reference

PI_LONG = np.longdouble("3.14159265358979323846264338327950288")

EDGE_WORDS_32 = np.array(
    [0, 1, 2, 3, 2**32 - 1, 2**32 - 2, 2**32 - 128, 2**32 - 129, 2**29 - 1, 2**29, 2**29 + 1, 2**30, 2**31,
     3 * 2**29, 3 * 2**29 + 1, 7 * 2**29 - 1, 7 * 2**29]
    + [2**k for k in range(32)] + [2**k - 1 for k in range(1, 32)],
    dtype=np.uint64,
).astype(np.uint32)

EDGE_WORDS_64 = np.array(
    [0, 1, 2**12, 2**12 - 1, 2**53, 2**61 - 1, 2**61, 2**62, 2**63, 3 * 2**61, 7 * 2**61, 2**64 - 2**12, 2**64 - 1],
    dtype=np.uint64,
)


def _pairs(edges: np.ndarray, random: np.ndarray, random2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return (np.concatenate([random, np.repeat(edges, edges.size)]), np.concatenate([random2, np.tile(edges, edges.size)]))


def test_float32_error_bound() -> None:
    rng = np.random.default_rng(20261126)
    n = 1 << 20
    x_radius, x_angle = _pairs(EDGE_WORDS_32, rng.integers(0, 2**32, n, dtype=np.uint32), rng.integers(0, 2**32, n, dtype=np.uint32))
    z_even, z_odd = reference.normal_pairs_f32(x_radius, x_angle)
    u = ((2 * x_radius.astype(np.int64) + 1).astype(np.float64).astype(np.float32) * np.float32(2.0**-33)).astype(np.longdouble)
    radius = np.sqrt(-2 * np.log(u))
    angle = 2 * PI_LONG * (x_angle.astype(np.longdouble) / 2**32)
    for got, exact in ((z_even, radius * np.cos(angle)), (z_odd, radius * np.sin(angle))):
        error = np.abs(got.astype(np.longdouble) - exact) / np.maximum(1, np.abs(exact))
        assert float(error.max()) <= 2.0**-21, float(error.max()) / 2.0**-21


def test_float64_error_bound() -> None:
    rng = np.random.default_rng(7)
    n = 1 << 18
    words = rng.integers(0, 2**64, n, dtype=np.uint64, endpoint=False)
    words2 = rng.integers(0, 2**64, n, dtype=np.uint64, endpoint=False)
    word_radius, word_angle = _pairs(EDGE_WORDS_64, words, words2)
    z_even, z_odd = reference.normal_pairs_f64(word_radius, word_angle)
    u = (2 * (word_radius >> np.uint64(12)).astype(np.int64) + 1).astype(np.float64) * 2.0**-53
    radius = np.sqrt(-2 * np.log(u.astype(np.longdouble)))
    angle = 2 * PI_LONG * ((word_angle >> np.uint64(11)).astype(np.longdouble) / np.longdouble(2) ** 53)
    for got, exact in ((z_even, radius * np.cos(angle)), (z_odd, radius * np.sin(angle))):
        error = np.abs(got.astype(np.longdouble) - exact) / np.maximum(1, np.abs(exact))
        assert float(error.max()) <= 2.0**-50, float(error.max() / np.longdouble(2) ** -50)


def test_log_f32_within_one_ulp_on_a_dense_grid() -> None:
    """Every 97th float32 in [2^-33, 1] (about 3 million values); SPEC §5.4 reports the full scan."""
    low = int(np.float32(2.0**-33).view(np.uint32))
    high = int(np.float32(1.0).view(np.uint32))
    values = np.arange(low, high + 1, 97, dtype=np.uint32).view(np.float32)
    got = reference.log_f32(values).astype(np.float64)
    exact = np.log(values.astype(np.float64))
    ulp = np.spacing(np.abs(exact).astype(np.float32)).astype(np.float64)
    assert float((np.abs(got - exact) / ulp).max()) < 1.0


def test_u_is_never_zero_and_tails_reach_6_5() -> None:
    u_smallest = np.float32(np.float32(1.0) * np.float32(2.0**-33))
    z_even, _ = reference.normal_pairs_f32(np.array([0], np.uint32), np.array([0], np.uint32))
    assert float(z_even[0]) >= 6.5
    assert float(z_even[0]) == float(np.sqrt(np.float32(-2) * reference.log_f32(np.array([u_smallest]))[0]))
    z64, _ = reference.normal_pairs_f64(np.array([0], np.uint64), np.array([0], np.uint64))
    assert float(z64[0]) > 8.5


def test_u_equal_to_one_gives_positive_zero() -> None:
    """x = 2^32 - 1 rounds u up to 1: the radius is +0 (0 - 2 log u), never -0."""
    z_even, z_odd = reference.normal_pairs_f32(np.array([2**32 - 1], np.uint32), np.array([0], np.uint32))
    assert z_even.view(np.uint32)[0] == 0 and z_odd.view(np.uint32)[0] == 0
