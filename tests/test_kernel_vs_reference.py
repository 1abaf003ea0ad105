"""Layer 2, transforms: the compiled CPU kernel equals the numpy reference bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import detnoise
from detnoise import _native, reference

from conftest import DTYPES, assert_bits_equal

SEEDS = [0, 1, 2**32 - 1, 2**32, 2**63, 2**64 - 1, -1]
OFFSETS = [0, 1, 2**32 - 1, 2**32, 2**63]
SIZES = [0, 1, 3, 4, 5, 1023, 10**6 + 3]
DRAWS = [("normal", name) for name in DTYPES] + [("uniform", name) for name in DTYPES] + [("bits", "uint32")]


def kernel_draw(kind: str, dtype_name: str, n: int, seed: int, stream: int, offset: int) -> torch.Tensor:
    if kind == "bits":
        return detnoise.bits(n, seed=seed, stream=stream, offset=offset)
    function = detnoise.normal if kind == "normal" else detnoise.uniform
    return function(n, seed=seed, stream=stream, offset=offset, dtype=DTYPES[dtype_name])


def reference_draw(kind: str, dtype_name: str, n: int, seed: int, stream: int, offset: int, first: int = 0) -> np.ndarray:
    if kind == "bits":
        return reference.bits(n, seed, stream, offset, first)
    return getattr(reference, kind)(n, dtype_name, seed, stream, offset, first)


@pytest.mark.parametrize(("kind", "dtype_name"), DRAWS)
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("offset", OFFSETS)
def test_kernel_equals_reference(kind: str, dtype_name: str, seed: int, offset: int) -> None:
    for n in SIZES:
        got = kernel_draw(kind, dtype_name, n, seed, 0, offset)
        assert got.numel() == n
        assert_bits_equal(got, reference_draw(kind, dtype_name, n, seed, 0, offset), f"{kind} {dtype_name} n={n}")


@pytest.mark.parametrize(("kind", "dtype_name"), DRAWS)
@pytest.mark.parametrize("stream", [1, 2**32, 2**64 - 1])
def test_nonzero_streams_equal_reference(kind: str, dtype_name: str, stream: int) -> None:
    got = kernel_draw(kind, dtype_name, 4099, 12345, stream, 77)
    assert_bits_equal(got, reference_draw(kind, dtype_name, 4099, 12345, stream, 77))


@pytest.mark.parametrize(("kind", "dtype_name"), DRAWS)
@pytest.mark.parametrize("first", [1, 3, 2**32 - 3, 2**32 + 1, 2**62 + 5])
def test_element_subranges_use_64_bit_indices(kind: str, dtype_name: str, first: int) -> None:
    """A range starting at element `first` (mid-block, past 2^32) equals the reference there."""
    dtype = torch.uint32 if kind == "bits" else DTYPES[dtype_name]
    code = {"bits": _native.KIND_BITS, "uniform": _native.KIND_UNIFORM, "normal": _native.KIND_NORMAL}[kind]
    out = torch.empty(1001, dtype=dtype)
    _native.launch(code, out, 99, 5, 3, first_element=first)
    assert_bits_equal(out, reference_draw(kind, dtype_name, 1001, 99, 5, 3, first))


def test_comparison_can_fail() -> None:
    """The exact comparison notices a one-ulp change (guards against a vacuous helper)."""
    got = detnoise.normal(64, seed=3)
    bumped = got.clone()
    bumped[17] = torch.nextafter(bumped[17], torch.tensor(np.inf))
    with pytest.raises(AssertionError):
        assert_bits_equal(bumped, reference.normal(64, "float32", 3))
    negative_zero = torch.zeros(1)
    with pytest.raises(AssertionError):
        assert_bits_equal(-negative_zero, negative_zero)
