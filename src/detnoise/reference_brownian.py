"""A pure-numpy Brownian tree (docs/SPEC.md §9), written from the spec alone.

It shares no code with the compiled kernels (csrc/include/detnoise/brownian.h) or with
detnoise.brownian on purpose; the node Gaussians are :func:`detnoise.reference.normal` draws. Every
float operation is one numpy operation on arrays of the stated type (numpy never fuses), in the
spec's order. Slow but exact; meant for tests and for reimplementers.

>>> from detnoise import reference_brownian as rb
>>> tree = rb.Tree(t0=0.0, t1=1.0, tol=0.25, seed=7, n=3, dtype="float32")
>>> tree.depth
2
>>> tree.increment(0.0, 0.0).tolist()
[0.0, 0.0, 0.0]
"""

from __future__ import annotations

import math

import numpy as np

from detnoise import reference

__all__ = ["Tree", "TREE_KEY_TWEAK", "tree_seed_from_block", "depth_for"]

# SPEC §9.2: the tree's key is the seed xor the 64 bits of pi after spawn's tweak.
TREE_KEY_TWEAK = 0x38D01377452821E6
_MAX_DEPTH = 52


def depth_for(length: float, tol: float) -> int:
    """SPEC §9.1: the smallest d >= 0 with ldexp(length, -d) <= tol (ValueError past 52)."""
    for d in range(_MAX_DEPTH + 1):
        if math.ldexp(length, -d) <= tol:
            return d
    raise ValueError(f"tol {tol} needs a depth above {_MAX_DEPTH} for an interval of length {length}")


def tree_seed_from_block(seed: int, stream: int, offset: int) -> int:
    """SPEC §9.5: the tree seed a generator at (seed, stream, offset) gives: w0 | w1 << 32 of its block."""
    words = reference.blocks(seed, stream, offset, 1)[0]
    return int(words[0]) | (int(words[1]) << 32)


class Tree:
    """One row of a Brownian tree: ``n`` elements, tree seed ``seed``, result dtype ``dtype``."""

    def __init__(self, t0: float, t1: float, tol: float, seed: int, n: int, dtype: str) -> None:
        t0, t1, tol = float(t0), float(t1), float(tol)
        if not (math.isfinite(t0) and math.isfinite(t1) and t0 < t1):
            raise ValueError("need finite t0 < t1")
        length = t1 - t0
        if not (math.isfinite(length) and length >= 2.0**-960):
            raise ValueError("t1 - t0 must be finite and at least 2**-960")
        if not (math.isfinite(tol) and tol > 0):
            raise ValueError("tol must be finite and positive")
        if dtype != "float64" and length > 2.0**240:
            raise ValueError("t1 - t0 above 2**240 with a float32 compute type")
        self.t0, self.t1, self.length = t0, t1, length
        self.depth = depth_for(length, tol)
        self.seed = seed % (1 << 64)
        self.n = n
        self.dtype = dtype
        self.compute = np.float64 if dtype == "float64" else np.float32
        self._key = self.seed ^ TREE_KEY_TWEAK
        # SPEC §9.3: f64 square roots, each rounded once to the compute type.
        self.sigma_end = self.compute(math.sqrt(length))
        self.sigma = [self.compute(math.sqrt(math.ldexp(length, -(d + 2)))) for d in range(self.depth)]

    def node_gaussians(self, node: int) -> np.ndarray:
        """Z_node: the normal draw of seed S ^ tweak, stream node, offset 0 (SPEC §9.2)."""
        draw_dtype = "float64" if self.compute is np.float64 else "float32"
        return reference.normal(self.n, draw_dtype, self._key, node, 0)

    def u_of(self, t: float) -> float:
        t = float(t)
        if not self.t0 <= t <= self.t1:
            raise ValueError(f"time {t} outside [{self.t0}, {self.t1}]")
        return (t - self.t0) / self.length

    def w_of(self, u: float) -> np.ndarray:
        """SPEC §9.4: W at unit time u, in the compute type."""
        w_b = self.sigma_end * self.node_gaussians(0)
        if u == 1.0:
            return w_b
        w_a = np.zeros(self.n, dtype=self.compute)
        half = self.compute(0.5)
        k = 0
        for d in range(self.depth):
            z = self.node_gaussians((1 << d) + k)
            w_m = ((w_a + w_b) * half) + (self.sigma[d] * z)
            m = float(2 * k + 1) * 2.0 ** -(d + 1)
            if u < m:
                k, w_b = 2 * k, w_m
            else:
                k, w_a = 2 * k + 1, w_m
        beta = (u - float(k) * 2.0**-self.depth) * 2.0**self.depth
        return w_a + (self.compute(beta) * (w_b - w_a))

    def increment(self, s: float, t: float) -> np.ndarray:
        """W(s, t) = W(t) - W(s) in the result dtype (16-bit: float32 difference narrowed; bfloat16 as bits)."""
        difference = self.w_of(self.u_of(t)) - self.w_of(self.u_of(s))
        if self.dtype in ("float16", "bfloat16"):
            return reference.narrow(difference, self.dtype)
        return difference
