"""Distribution checks on float32 and float64 normals and uniforms (moments, KS, tails): 10^7 values
under `pytest -m slow`, and the same checks on 10^5 values in the default run (bounds scale with n)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

import detnoise

LARGE = 10**7
SMALL = 10**5
SIZES = [pytest.param(SMALL, id="1e5"), pytest.param(LARGE, id="1e7", marks=pytest.mark.slow)]
DTYPES = [pytest.param(torch.float32, id="float32"), pytest.param(torch.float64, id="float64")]


@pytest.fixture(scope="module", params=SIZES)
def n(request) -> int:
    return request.param


@pytest.fixture(scope="module", params=DTYPES)
def normals(request, n: int) -> np.ndarray:
    return detnoise.normal(n, seed=20261126, dtype=request.param).numpy().astype(np.float64)


def test_moments(normals: np.ndarray) -> None:
    # Standard errors of a normal sample: mean 1/sqrt(n), variance sqrt(2/n), skew sqrt(6/n), excess
    # kurtosis sqrt(24/n) (at n = 1e7: 3.2e-4, 4.5e-4, 7.7e-4, 1.5e-3).
    n = normals.size
    assert abs(normals.mean()) < 5 * math.sqrt(1 / n)
    assert abs(normals.var() - 1) < 5 * math.sqrt(2 / n)
    assert abs(stats.skew(normals)) < 5 * math.sqrt(6 / n)
    assert abs(stats.kurtosis(normals)) < 5 * math.sqrt(24 / n)


def test_kolmogorov_smirnov(normals: np.ndarray) -> None:
    assert stats.kstest(normals, "norm").pvalue > 1e-4


def test_tails(normals: np.ndarray) -> None:
    n = normals.size
    for threshold in (2.0, 3.0, 4.0):
        expected = n * math.erfc(threshold / math.sqrt(2))
        observed = int((np.abs(normals) > threshold).sum())
        assert abs(observed - expected) < 6 * math.sqrt(expected) + 1, (threshold, observed, expected)
    if n >= LARGE:  # about 68 values beyond 4.5 expected at 1e7; 0.7 at 1e5
        assert np.abs(normals).max() > 4.5


def test_even_and_odd_elements_are_uncorrelated(normals: np.ndarray) -> None:
    """z_even and z_odd of one Box-Muller pair are independent normals."""
    n = normals.size
    pairs = normals[: n - n % 2].reshape(-1, 2)
    assert abs(np.corrcoef(pairs[:, 0], pairs[:, 1])[0, 1]) < 5 / math.sqrt(pairs.shape[0])
    assert abs(np.corrcoef(pairs[:, 0] ** 2, pairs[:, 1] ** 2)[0, 1]) < 5 / math.sqrt(pairs.shape[0])


@pytest.mark.parametrize("dtype", DTYPES)
def test_uniform_is_uniform(n: int, dtype: torch.dtype) -> None:
    u = detnoise.uniform(n, seed=11, dtype=dtype).numpy().astype(np.float64)
    assert u.min() >= 0 and u.max() < 1
    assert stats.kstest(u, "uniform").pvalue > 1e-4
    assert abs(u.mean() - 0.5) < 5 * math.sqrt(1 / 12 / n)
