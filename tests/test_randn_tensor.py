"""detnoise.randn_tensor: diffusers' signature and semantics, device-independent values, and the
rules for plain torch generators (Note [Torch generator positions] in detnoise._resolve)."""

from __future__ import annotations

import pytest
import torch

import detnoise
from detnoise import randn_tensor, reference

from conftest import assert_bits_equal


def expected(shape, seed: int, offset: int = 0) -> torch.Tensor:
    """float32 stream (seed, 0) from block ``offset``, from the numpy reference."""
    n = 1
    for dim in shape:
        n *= dim
    return torch.from_numpy(reference.normal(n, "float32", seed, 0, offset)).reshape(shape)


def blocks(shape) -> int:
    n = 1
    for dim in shape:
        n *= dim
    return (n + 3) // 4


def test_torch_generator_key_is_initial_seed() -> None:
    shape = (1, 4, 8, 8)
    a = randn_tensor(shape, generator=torch.Generator().manual_seed(7))
    assert_bits_equal(a, expected(shape, 7))
    b = randn_tensor(shape, generator=detnoise.Generator(seed=7))
    assert_bits_equal(a, b)


def test_consecutive_calls_continue_and_manual_seed_restarts() -> None:
    g = torch.Generator().manual_seed(3)
    shape = (2, 3, 5)
    first = randn_tensor(shape, generator=g)
    second = randn_tensor(shape, generator=g)
    assert_bits_equal(first, expected(shape, 3))
    assert_bits_equal(second, expected(shape, 3, blocks(shape)))
    g.manual_seed(3)  # the same seed again: restart
    assert_bits_equal(randn_tensor(shape, generator=g), first)
    g.manual_seed(4)
    assert_bits_equal(randn_tensor(shape, generator=g), expected(shape, 4))


def test_torch_drawing_in_between_starts_a_derived_stream() -> None:
    # The full rules and replay cases are in test_resolve.py.
    g = torch.Generator().manual_seed(11)
    shape = (4, 4)
    randn_tensor(shape, generator=g)
    torch.randperm(10, generator=g)
    after = randn_tensor(shape, generator=g)
    replay = torch.Generator().manual_seed(11)
    randn_tensor(shape, generator=replay)
    torch.randperm(10, generator=replay)
    assert_bits_equal(randn_tensor(shape, generator=replay), after)
    assert not torch.equal(after, expected(shape, 11, blocks(shape)))


def test_global_default_follows_torch_manual_seed() -> None:
    state = torch.get_rng_state()
    try:
        torch.manual_seed(123)
        a = randn_tensor((3, 3))
        b = randn_tensor((3, 3))
        assert_bits_equal(a, expected((3, 3), 123))
        assert_bits_equal(b, expected((3, 3), 123, 3))
        torch.manual_seed(123)
        assert_bits_equal(randn_tensor((3, 3)), a)
    finally:
        torch.set_rng_state(state)


def test_list_of_generators_is_per_row() -> None:
    seeds = [5, 6, 7]
    shape = (3, 4, 6, 6)
    batch = randn_tensor(shape, generator=[torch.Generator().manual_seed(s) for s in seeds])
    for row, seed in enumerate(seeds):
        single = randn_tensor((1, *shape[1:]), generator=torch.Generator().manual_seed(seed))
        assert_bits_equal(batch[row : row + 1], single, f"row {row}")


def test_mixed_tuple_and_reused_generators() -> None:
    g = torch.Generator().manual_seed(1)
    d = detnoise.Generator(seed=2)
    batch = randn_tensor([3, 5], generator=(g, d, g))  # shape as a list, generators as a tuple
    assert_bits_equal(batch[0], expected((5,), 1))
    assert_bits_equal(batch[1], expected((5,), 2))
    assert_bits_equal(batch[2], expected((5,), 1, 2))  # g again: continues after row 0
    assert d.offset == 2


def test_one_element_list_acts_like_its_element() -> None:
    a = randn_tensor((2, 3), generator=[torch.Generator().manual_seed(9)])
    assert_bits_equal(a, expected((2, 3), 9))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_noise_is_float32_noise_rounded(dtype: torch.dtype) -> None:
    wide = randn_tensor((2, 4, 16, 16), generator=torch.Generator().manual_seed(0))
    narrow = randn_tensor((2, 4, 16, 16), generator=torch.Generator().manual_seed(0), dtype=dtype)
    assert narrow.dtype == dtype and torch.equal(narrow, wide.to(dtype))


def test_other_devices_get_the_same_values_moved() -> None:
    a = randn_tensor((2, 2), generator=torch.Generator().manual_seed(0), device="meta")
    assert a.device.type == "meta"


def test_bad_input() -> None:
    g = torch.Generator().manual_seed(0)
    with pytest.raises(NotImplementedError):
        randn_tensor((2, 2), generator=g, layout=torch.sparse_coo)
    with pytest.raises(ValueError, match="generators for a batch"):
        randn_tensor((3, 2), generator=[torch.Generator(), torch.Generator()])
    with pytest.raises(TypeError):
        randn_tensor((2, 2), generator=[torch.Generator(), "seed"])
    with pytest.raises(TypeError):
        randn_tensor((2, 2), dtype=torch.int64)
    with pytest.raises(ValueError):
        randn_tensor((2, -2), generator=g)
    # none of the failures consumed noise from g
    assert_bits_equal(randn_tensor((2, 2), generator=g), expected((2, 2), 0))


def test_failed_batch_draw_gives_blocks_back() -> None:
    good = detnoise.Generator(seed=1)
    full = detnoise.Generator(seed=2)
    full.offset = 2**64 - 1
    with pytest.raises(ValueError):
        randn_tensor((2, 16), generator=[good, full])
    assert good.offset == 0 and full.offset == 2**64 - 1
