"""The CPU kernel's output does not depend on the thread count."""

from __future__ import annotations

import pytest
import torch

import detnoise

from conftest import DTYPES, assert_bits_equal


@pytest.fixture
def restore_threads():
    yield
    detnoise.set_num_threads(None)


@pytest.mark.parametrize("dtype_name", list(DTYPES))
@pytest.mark.parametrize("n", [2**17 + 3, 2**19 + 1, 3 * 2**18 - 2])
def test_one_thread_equals_many(restore_threads, dtype_name: str, n: int) -> None:
    dtype = DTYPES[dtype_name]
    detnoise.set_num_threads(1)
    one = detnoise.normal(n, seed=7, offset=2**32 - 5, dtype=dtype)
    one_u = detnoise.uniform(n, seed=7, dtype=dtype)
    for threads in (2, 3, 8):
        detnoise.set_num_threads(threads)
        assert_bits_equal(detnoise.normal(n, seed=7, offset=2**32 - 5, dtype=dtype), one, f"{threads} threads")
        assert_bits_equal(detnoise.uniform(n, seed=7, dtype=dtype), one_u, f"{threads} threads")


def test_thread_setting_follows_torch_by_default(restore_threads) -> None:
    detnoise.set_num_threads(None)
    assert detnoise.get_num_threads() == torch.get_num_threads()
    detnoise.set_num_threads(3)
    assert detnoise.get_num_threads() == 3


@pytest.mark.parametrize("bad", [0, -1])
def test_bad_thread_counts(restore_threads, bad: int) -> None:
    with pytest.raises(ValueError):
        detnoise.set_num_threads(bad)
    with pytest.raises(TypeError):
        detnoise.set_num_threads(2.0)  # type: ignore[arg-type]
