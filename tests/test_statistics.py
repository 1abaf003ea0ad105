"""Distribution checks on 10^7 float32 and float64 normals and uniforms (moments, KS, tails)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

import detnoise

N = 10**7


@pytest.fixture(scope="module", params=[torch.float32, torch.float64], ids=["float32", "float64"])
def normals(request) -> np.ndarray:
    return detnoise.normal(N, seed=20261126, dtype=request.param).numpy().astype(np.float64)


def test_moments(normals: np.ndarray) -> None:
    # Standard errors at n = 1e7: mean 3.2e-4, variance 4.5e-4, skew 7.7e-4, excess kurtosis 1.5e-3.
    assert abs(normals.mean()) < 5 * 3.2e-4
    assert abs(normals.var() - 1) < 5 * 4.5e-4
    assert abs(stats.skew(normals)) < 5 * 7.7e-4
    assert abs(stats.kurtosis(normals)) < 5 * 1.5e-3


def test_kolmogorov_smirnov(normals: np.ndarray) -> None:
    assert stats.kstest(normals, "norm").pvalue > 1e-4


def test_tails(normals: np.ndarray) -> None:
    for threshold in (2.0, 3.0, 4.0):
        expected = N * math.erfc(threshold / math.sqrt(2))
        observed = int((np.abs(normals) > threshold).sum())
        assert abs(observed - expected) < 6 * math.sqrt(expected) + 1, (threshold, observed, expected)
    assert np.abs(normals).max() > 4.5


def test_even_and_odd_elements_are_uncorrelated(normals: np.ndarray) -> None:
    """z_even and z_odd of one Box-Muller pair are independent normals."""
    pairs = normals[: N - N % 2].reshape(-1, 2)
    assert abs(np.corrcoef(pairs[:, 0], pairs[:, 1])[0, 1]) < 5 / math.sqrt(pairs.shape[0])
    assert abs(np.corrcoef(pairs[:, 0] ** 2, pairs[:, 1] ** 2)[0, 1]) < 5 / math.sqrt(pairs.shape[0])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_uniform_is_uniform(dtype: torch.dtype) -> None:
    u = detnoise.uniform(N, seed=11, dtype=dtype).numpy().astype(np.float64)
    assert u.min() >= 0 and u.max() < 1
    assert stats.kstest(u, "uniform").pvalue > 1e-4
    assert abs(u.mean() - 0.5) < 5 * math.sqrt(1 / 12 / N)
