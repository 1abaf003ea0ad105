"""Shared helpers: raw-bit views for exact comparison, dtype tables, the CUDA skip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import detnoise

DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}


def raw_bits(values: torch.Tensor | np.ndarray) -> np.ndarray:
    """The element bit patterns as unsigned integers, so that == compares bits (and -0.0 != 0.0)."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu()
        if values.dtype == torch.bfloat16:
            return values.view(torch.int16).numpy().view(np.uint16)
        values = values.numpy()
    unsigned = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[values.dtype.itemsize]
    return np.ascontiguousarray(values).view(unsigned)


def assert_bits_equal(actual, expected, what: str = "") -> None:
    a = raw_bits(actual).reshape(-1)
    e = raw_bits(expected).reshape(-1)
    assert a.shape == e.shape, f"{what}: {a.shape} elements != {e.shape}"
    differ = np.nonzero(a != e)[0]
    assert differ.size == 0, (
        f"{what}: {differ.size} of {a.size} elements differ, first at {differ[:5].tolist()}: "
        f"{a[differ[:5]].tolist()} != {e[differ[:5]].tolist()}"
    )


def cuda_ready() -> bool:
    return detnoise.built_with_cuda() and torch.cuda.is_available()


requires_cuda = pytest.mark.skipif(not cuda_ready(), reason="needs a CUDA device and a CUDA build of detnoise")


@pytest.fixture
def torch_patch_removed_afterwards():
    """Puts back torch's global RNG state and removes every torch-level patch after the test."""
    state = torch.get_rng_state()
    yield
    detnoise.unpatch_torch()
    torch.set_rng_state(state)
