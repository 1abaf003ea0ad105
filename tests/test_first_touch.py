"""Huge-page advice for large new CPU outputs changes timing only: the values never move."""

from __future__ import annotations

import pytest
import torch

import detnoise
from detnoise import _core

from conftest import assert_bits_equal

ELEMENTS = (1 << 21) + 5  # 8 MiB and a bit: whole 2 MiB pages inside, a ragged end


@pytest.fixture
def advice():
    saved = _core.huge_page_advice()
    yield
    _core.set_huge_page_advice(saved)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_values_do_not_depend_on_the_advice(advice, dtype: torch.dtype) -> None:
    assert _core.huge_page_advice() is True  # on by default
    advised = detnoise.normal(ELEMENTS, seed=11, dtype=dtype)
    _core.set_huge_page_advice(False)
    plain = detnoise.normal(ELEMENTS, seed=11, dtype=dtype)
    assert_bits_equal(advised, plain, "advice on vs off")
    assert_bits_equal(advised[:64], detnoise.normal(64, seed=11, dtype=dtype), "head of the large draw")


def test_rows_and_unaligned_outputs_keep_their_values(advice) -> None:
    """A batch (row path) and an output that starts mid-page and inside a used buffer."""
    generators = [torch.Generator().manual_seed(s) for s in (1, 2)]
    batch = detnoise.randn_tensor((2, 1 << 20), generator=generators)
    for row, seed in enumerate((1, 2)):
        assert_bits_equal(batch[row], detnoise.normal(1 << 20, seed=seed), f"row {row}")
    storage = torch.zeros((1 << 21) + 1024)
    window = storage[1000 : 1000 + (1 << 21)]
    detnoise.randn(window.shape, generator=detnoise.Generator(seed=4), out=window)
    assert_bits_equal(window, detnoise.normal(1 << 21, seed=4), "unaligned out=")
    assert not storage[:1000].any() and not storage[1000 + (1 << 21):].any()


def test_file_backed_output_where_advice_is_refused(advice, tmp_path) -> None:
    """madvise(MADV_HUGEPAGE) on a shared file mapping may fail; the draw must not."""
    path = tmp_path / "noise.bin"
    mapped = torch.from_file(str(path), shared=True, size=ELEMENTS, dtype=torch.float32)
    detnoise.randn(ELEMENTS, generator=detnoise.Generator(seed=9), out=mapped)
    assert_bits_equal(mapped, detnoise.normal(ELEMENTS, seed=9), "file-backed output")


def test_the_switch_takes_a_bool(advice) -> None:
    _core.set_huge_page_advice(False)
    assert _core.huge_page_advice() is False
