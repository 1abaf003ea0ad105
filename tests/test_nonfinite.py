"""Non-finite values (docs/SPEC.md §6, §10.11): the 16-bit narrowing of NaN and infinities, the
canonical NaN of §10's samplers, and the patched samplers against the numpy reference bit for bit
where valid parameters (an infinite std, a tiny lambda, extreme bounds) reach infinities and NaN."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import detnoise
from detnoise import reference

from conftest import DTYPES, assert_bits_equal

INF, NAN = math.inf, math.nan
# Block 24962728 of (seed 0, stream 0) has w2 = 0xffffffb9 >= 0xFFFFFF80: its second Box-Muller pair
# has radius +0 (SPEC §5.1), so float32 normals 2 and 3 there are zeros and exponential 1 is E = +0.
ZERO_RADIUS_BLOCK = 24962728


@pytest.fixture(params=detnoise.cpu_paths())
def cpu_path(request):
    previous = detnoise.get_cpu_path()
    detnoise.set_cpu_path(request.param)
    yield request.param
    detnoise.set_cpu_path(previous)


def _f32(bits: list[int]) -> np.ndarray:
    return np.array(bits, dtype=np.uint32).view(np.float32)


# ---- SPEC §6: narrowing ----------------------------------------------------------------------------

NANS_F32 = [0x7FC00000, 0xFFC00000, 0x7F800001, 0xFF800001, 0x7FFFFFFF, 0xFFFFFFFF, 0x7FBFFFFF, 0x7FC0FFFF]


@pytest.mark.parametrize(("dtype", "nan16"), [("float16", 0x7E00), ("bfloat16", 0x7FC0)])
def test_every_float32_nan_narrows_to_the_one_16_bit_nan(dtype: str, nan16: int) -> None:
    narrowed = reference.narrow(_f32(NANS_F32), dtype)
    assert [int(b) for b in np.asarray(narrowed).view(np.uint16)] == [nan16] * len(NANS_F32)


def test_infinities_and_overflow_thresholds_narrow_as_ieee() -> None:
    below_f16 = float(np.nextafter(np.float32(65520.0), np.float32(0)))
    f16 = reference.narrow(np.array([INF, -INF, 65520.0, -65520.0, below_f16, 3.4e38], dtype=np.float32), "float16")
    assert [hex(int(b)) for b in f16.view(np.uint16)] == ["0x7c00", "0xfc00", "0x7c00", "0xfc00", "0x7bff", "0x7c00"]
    threshold = float.fromhex("0x1.ffp+127")  # midpoint between bfloat16's 0x1.fep+127 and 2^128
    below_bf16 = float(np.nextafter(np.float32(threshold), np.float32(0)))
    bf16 = reference.narrow(np.array([INF, -INF, threshold, -threshold, below_bf16], dtype=np.float32), "bfloat16")
    assert [hex(int(b)) for b in bf16] == ["0x7f80", "0xff80", "0x7f80", "0xff80", "0x7f7f"]


def _spec_narrow_f16(b: int) -> int:
    """SPEC §6's narrow_f16, line for line, on the bits of one float32."""
    sign, mag = (b >> 16) & 0x8000, b & 0x7FFFFFFF
    if mag > 0x7F800000:
        return 0x7E00
    if mag >= 0x477FF000:
        return sign | 0x7C00
    if mag < 0x38800000:
        shift = 126 - (mag >> 23)
        if shift > 25:
            return sign
        mant = (mag & 0x7FFFFF) | 0x800000
        rounded, rem, half = mant >> shift, mant & ((1 << shift) - 1), 1 << (shift - 1)
        if rem > half or (rem == half and rounded & 1):
            rounded += 1
        return sign | rounded
    rebased = mag - 0x38000000
    rounded, rem = rebased >> 13, rebased & 0x1FFF
    if rem > 0x1000 or (rem == 0x1000 and rounded & 1):
        rounded += 1
    return sign | rounded


def _spec_narrow_bf16(b: int) -> int:
    """SPEC §6's narrow_bf16 on the bits of one float32."""
    if (b & 0x7FFFFFFF) > 0x7F800000:
        return 0x7FC0
    return ((b + 0x7FFF + ((b >> 16) & 1)) >> 16) & 0xFFFF


def test_the_reference_narrows_as_the_spec_text_on_every_kind_of_float32() -> None:
    rng = np.random.default_rng(17)
    words = [int(w) for w in rng.integers(0, 1 << 32, 20000, dtype=np.uint64)]
    words += NANS_F32 + [0x7F800000, 0xFF800000, 0x7F7FFFFF, 0x477FEFFF, 0x477FF000, 0x7F7F7FFF, 0x7F7F8000,
                         0x33000000, 0x33000001, 0x387FFFFF, 0x00000001, 0x80000000, 0]
    values = np.array(words, dtype=np.uint32).view(np.float32)
    f16 = [int(b) for b in reference.narrow(values, "float16").view(np.uint16)]
    bf16 = [int(b) for b in reference.narrow(values, "bfloat16")]
    assert f16 == [_spec_narrow_f16(w) for w in words]
    assert bf16 == [_spec_narrow_bf16(w) for w in words]


# ---- SPEC §10.11: the patched samplers where valid parameters give infinities and NaN ----------------


def _patched(dtype: torch.dtype, offset: int, n: int, method: str, *args: float) -> torch.Tensor:
    g = detnoise.Generator(seed=0)
    g.offset = offset
    with detnoise.patch_torch():
        return getattr(torch.empty(n, dtype=dtype), method)(*args, generator=g)


NORMAL_PARAMETERS = [
    (0.0, INF), (-INF, INF), (INF, INF), (INF, 1.0), (NAN, 1.0), (NAN, INF), (0.0, 1e38), (1e38, 2.0),
    (-3.4e38, 1e38), (0.0, 3.5e38), (1.0, 5e4), (6.5e4, 3.0), (0.0, 2e307), (1.7e308, 1e307),
]


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize(("mean", "std"), NORMAL_PARAMETERS)
def test_normal_with_non_finite_results_equals_the_reference(dtype: str, mean: float, std: float, cpu_path) -> None:
    for offset in (ZERO_RADIUS_BLOCK, 0):
        got = _patched(DTYPES[dtype], offset, 9, "normal_", mean, std)
        assert_bits_equal(got, reference.normal_affine(9, dtype, 0, 0, offset, mean=mean, std=std),
                          f"normal_({mean}, {std}) {dtype} at block {offset}")


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("lambd", [1e-300, 5e-324, 2.0**-1024, 2.9e-39, 1e-38, 1e-4, INF])
def test_exponential_with_non_finite_results_equals_the_reference(dtype: str, lambd: float, cpu_path) -> None:
    for offset in (ZERO_RADIUS_BLOCK, 0):
        got = _patched(DTYPES[dtype], offset, 7, "exponential_", lambd)
        assert_bits_equal(got, reference.exponential(7, dtype, 0, 0, offset, lambd=lambd),
                          f"exponential_({lambd}) {dtype} at block {offset}")


def test_spec_examples_of_non_finite_values() -> None:
    def hexes(values: np.ndarray) -> list[str]:
        unsigned = {2: np.uint16, 4: np.uint32}[values.dtype.itemsize]
        return [f"{int(b):0{values.dtype.itemsize * 2}x}" for b in np.asarray(values).view(unsigned)]

    block = ZERO_RADIUS_BLOCK
    assert hexes(reference.exponential(2, "float32", 0, 0, block, lambd=1e-300)) == ["7f800000", "7fc00000"]
    assert hexes(reference.exponential(2, "float16", 0, 0, block, lambd=1e-300)) == ["7c00", "7e00"]
    assert hexes(reference.exponential(2, "bfloat16", 0, 0, block, lambd=1e-300)) == ["7f80", "7fc0"]
    assert hexes(reference.exponential(2, "float32", 0, 0, block)) == ["3fb12e60", "00000000"]
    assert hexes(reference.normal_affine(4, "float32", 0, 0, block, std=INF)) == [
        "7f800000", "ff800000", "7fc00000", "7fc00000"]
    assert hexes(reference.normal_affine(4, "float16", 0, 0, block, std=INF)) == ["7c00", "fc00", "7e00", "7e00"]
    assert hexes(reference.normal_affine(4, "float32", 0, 0, block, mean=-INF, std=INF)) == [
        "7fc00000", "ff800000", "7fc00000", "7fc00000"]


def test_float64_exponential_is_never_nan() -> None:
    values = reference.exponential(4096, "float64", 0, 0, 0, lambd=2.0**-1024)
    assert np.isposinf(values).all()


@pytest.mark.parametrize("capability", ["default", "avx2"])
def test_nan_bits_do_not_depend_on_torchs_cpu_capability(capability: str) -> None:
    # torch's own CPU float32 -> bfloat16 conversion gives 0x7FC0 for NaN on the default path and
    # 0xFFFF on AVX2/AVX-512; the values of SPEC §10.11 may not follow it. Fresh process: torch reads
    # ATEN_CPU_CAPABILITY once.
    code = (
        "import torch, detnoise\n"
        "g = detnoise.Generator(seed=0)\n"
        f"g.offset = {ZERO_RADIUS_BLOCK}\n"
        "with detnoise.patch_torch():\n"
        "    x = torch.empty(2, dtype=torch.bfloat16).exponential_(1e-300, generator=g)\n"
        "print(torch.backends.cpu.get_cpu_capability(), x.view(torch.int16).tolist())\n"
    )
    env = dict(os.environ, ATEN_CPU_CAPABILITY=capability)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120,
                            check=True)
    # (the capability's name may hold a space: torch 2.4 calls the default path "NO AVX")
    assert result.stdout[result.stdout.index("["):].strip() == "[32640, 32704]", result.stdout + result.stderr


# ---- §10.3: bounds torch accepts never give infinities ------------------------------------------------

_LARGEST = {"float32": float(np.finfo(np.float32).max), "float64": float(np.finfo(np.float64).max),
            "float16": 65504.0, "bfloat16": float.fromhex("0x1.fep+127")}


@pytest.mark.parametrize("dtype", list(DTYPES))
def test_uniform_at_extreme_accepted_bounds_is_finite_and_equals_the_reference(dtype: str) -> None:
    top = _LARGEST[dtype]
    bounds = [(0.0, top), (-top, 0.0), (top * (1 - 2.0**-30), top), (top / 2, top), (top - top * 2.0**-23, top),
              (-top / 2, top / 2), (top * 0.75, top)]
    for low, high in bounds:
        got = _patched(DTYPES[dtype], 0, 4096, "uniform_", low, high)
        want = reference.uniform_range(4096, dtype, 0, 0, 0, low=low, high=high)
        assert_bits_equal(got, want, f"uniform_({low}, {high}) {dtype}")
        assert torch.isfinite(got).all(), (low, high)


@pytest.mark.parametrize("dtype", list(DTYPES))
def test_tensor_mean_and_std_with_non_finite_elements_equal_the_reference(dtype: str) -> None:
    # Each element i is element i of the number-parameter draw with (mean[i], std[i]) (SPEC §10.1),
    # NaNs canonical whether they come from a NaN mean, 0 * inf or inf - inf.
    means = [NAN, INF, -INF, 2.0, -INF, 1e38, NAN, 0.5]
    stds = [INF, INF, INF, 3.0, 2.0, 1e38, 2.0, INF]
    g = detnoise.Generator(seed=0)
    g.offset = ZERO_RADIUS_BLOCK
    mean_t = torch.tensor(means, dtype=DTYPES[dtype])
    std_t = torch.tensor(stds, dtype=DTYPES[dtype])
    with detnoise.patch_torch():
        got = torch.normal(mean_t, std_t, generator=g)
    compute = {"float64": torch.float64}.get(dtype, torch.float32)
    expected = np.stack([
        np.asarray(reference.normal_affine(8, dtype, 0, 0, ZERO_RADIUS_BLOCK, mean=float(m), std=float(s)))[i]
        for i, (m, s) in enumerate(zip(mean_t.to(compute).tolist(), std_t.to(compute).tolist()))
    ])
    assert_bits_equal(got, expected, f"normal(mean tensor, std tensor) {dtype}")


def test_functional_normal_with_an_infinite_std_equals_the_reference() -> None:
    g = detnoise.Generator(seed=0)
    g.offset = ZERO_RADIUS_BLOCK
    got = detnoise.normal_(torch.empty(4, dtype=torch.bfloat16), 0.0, INF, generator=g)
    assert_bits_equal(got, reference.normal_affine(4, "bfloat16", 0, 0, ZERO_RADIUS_BLOCK, std=INF))
