"""Brownian tree on CUDA: bit-identical to the CPU (needs a GPU), and the kernel's PTX keeps the
exact-arithmetic rules (needs only nvcc)."""

from __future__ import annotations

import random
import re
import subprocess

import pytest
import torch

import detnoise

from conftest import DTYPES, assert_bits_equal, requires_cuda
from test_build_flags import ROOT, exact_cuda_flags, nvcc


@requires_cuda
@pytest.mark.cuda
@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("shape", [(7,), (1, 4, 128, 128), (3, 5, 9)])
def test_cuda_equals_cpu(dtype: str, shape) -> None:
    rng = random.Random(1)
    seeds = [11, 12, 13][: shape[0]] if len(shape) == 3 else 11
    cpu = detnoise.BrownianTree(0.0292, 14.6146, shape, seed=seeds, tol=1e-6, dtype=DTYPES[dtype])
    gpu = detnoise.BrownianTree(0.0292, 14.6146, shape, seed=seeds, tol=1e-6, dtype=DTYPES[dtype], device="cuda")
    times = [0.0292, 14.6146] + [rng.uniform(0.0292, 14.6146) for _ in range(5)]
    for _ in range(8):
        s, t = rng.choice(times), rng.choice(times)
        assert_bits_equal(gpu(s, t), cpu(s, t), f"W({s}, {t})")


@requires_cuda
@pytest.mark.cuda
def test_cuda_query_is_one_launch_and_uses_the_current_stream() -> None:
    tree = detnoise.BrownianTree(0.0, 1.0, (1, 4, 64, 64), seed=3, device="cuda")
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        on_stream = tree(0.2, 0.7)
    stream.synchronize()
    assert_bits_equal(on_stream, detnoise.BrownianTree(0.0, 1.0, (1, 4, 64, 64), seed=3)(0.2, 0.7))


@pytest.fixture(scope="module")
def brownian_ptx(tmp_path_factory) -> str:
    if nvcc is None:
        pytest.skip("no nvcc on PATH")
    out = tmp_path_factory.mktemp("ptx") / "brownian_cuda.ptx"
    command = [nvcc, "--ptx", "-arch=compute_90", "-std=c++17", "-O3", *exact_cuda_flags(), f"-I{ROOT / 'csrc' / 'include'}",
               f"-I{ROOT / 'csrc'}", str(ROOT / "csrc" / "cuda" / "brownian_cuda.cu"), "-o", str(out)]
    subprocess.run(command, check=True, capture_output=True, timeout=300)
    return out.read_text()


def test_brownian_kernel_has_no_fused_or_approximate_float_operations(brownian_ptx: str) -> None:
    assert re.findall(r"\.entry\s+(\S*brownian_kernel\S*)\(", brownian_ptx)
    assert not re.findall(r"\b(?:fma|mad)\.(?:rn\.|rz\.|rm\.|rp\.)?(?:ftz\.)?f(?:32|64)\b", brownian_ptx)
    assert not re.search(r"\b(?:div|sqrt)\.(?:approx|full)\.", brownian_ptx)
    assert not re.search(r"\.ftz\.f32\b", brownian_ptx)
    # The scales are float64 rounded once to float32 (SPEC §9.3): round-to-nearest conversions only.
    conversions = re.findall(r"\bcvt\.(r\w+)\.f32\.f64\b", brownian_ptx)
    assert conversions and set(conversions) == {"rn"}
