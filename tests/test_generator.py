"""detnoise.Generator: seeding, state, advance rules, derived streams, copying, thread safety."""

from __future__ import annotations

import copy
import pickle
import threading

import numpy as np
import pytest
import torch

import detnoise
from detnoise import reference

from conftest import DTYPES, assert_bits_equal


def test_is_a_torch_generator_usable_by_torch() -> None:
    g = detnoise.Generator(seed=5)
    assert isinstance(g, torch.Generator)
    assert g.device == torch.device("cpu")
    assert g.initial_seed() == 5
    a = torch.randn(4, generator=g)
    b = torch.randn(4, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)  # manual_seed also seeded torch's base state


def test_default_seed_is_torchs() -> None:
    assert detnoise.Generator().initial_seed() == torch.Generator().initial_seed() == detnoise.DEFAULT_SEED


@pytest.mark.parametrize(("seed", "stored"), [(0, 0), (-1, 2**64 - 1), (-(2**63), 2**63), (2**64 - 1, 2**64 - 1)])
def test_seeds_are_taken_mod_2_64(seed: int, stored: int) -> None:
    g = detnoise.Generator(seed=seed)
    assert g.initial_seed() == stored
    assert_bits_equal(detnoise.randn(9, generator=g), reference.normal(9, "float32", stored))


@pytest.mark.parametrize("seed", [2**64, -(2**63) - 1, 10**30])
def test_out_of_range_seeds_raise(seed: int) -> None:
    g = detnoise.Generator(seed=3)
    detnoise.randn(5, generator=g)
    with pytest.raises(ValueError, match="seed"):
        g.manual_seed(seed)
    assert (g.initial_seed(), g.offset) == (3, 2)


@pytest.mark.parametrize("seed", [1.5, "7", None])
def test_non_int_seeds_raise_type_error(seed) -> None:
    with pytest.raises(TypeError):
        detnoise.Generator().manual_seed(seed)


def test_manual_seed_returns_self_and_restarts() -> None:
    g = detnoise.Generator(seed=9)
    first = detnoise.randn(10, generator=g)
    assert g.manual_seed(9) is g
    assert g.offset == 0
    assert_bits_equal(detnoise.randn(10, generator=g), first)


@pytest.mark.parametrize(("dtype_name", "n", "blocks"), [
    ("float32", 0, 0), ("float32", 1, 1), ("float32", 4, 1), ("float32", 5, 2), ("float16", 9, 3),
    ("bfloat16", 8, 2), ("float64", 1, 1), ("float64", 2, 1), ("float64", 3, 2), ("float64", 1023, 512),
])
def test_advance_rules(dtype_name: str, n: int, blocks: int) -> None:
    g = detnoise.Generator(seed=1)
    g.offset = 10
    detnoise.randn(n, generator=g, dtype=DTYPES[dtype_name])
    assert g.offset == 10 + blocks
    detnoise.rand(n, generator=g, dtype=DTYPES[dtype_name])
    assert g.offset == 10 + 2 * blocks


def test_bits_advance_like_float32() -> None:
    g = detnoise.Generator(seed=1)
    detnoise.random_bits(5, generator=g)
    assert g.offset == 2


def test_consecutive_draws_continue_the_stream() -> None:
    g = detnoise.Generator(seed=42)
    parts = [detnoise.randn(n, generator=g) for n in (4, 8, 3)]
    # 3 elements take a whole block: the next draw starts on a fresh one.
    assert_bits_equal(torch.cat(parts[:2]), reference.normal(12, "float32", 42))
    assert_bits_equal(parts[2], reference.normal(3, "float32", 42, 0, 3))
    assert g.offset == 4


def test_offset_setter_validates() -> None:
    g = detnoise.Generator(seed=1)
    g.offset = 2**64 - 1
    assert g.offset == 2**64 - 1
    for bad in (-1, 2**64):
        with pytest.raises(ValueError):
            g.offset = bad
    with pytest.raises(TypeError):
        g.offset = 1.0  # type: ignore[assignment]
    assert g.offset == 2**64 - 1


def test_draw_past_the_end_of_the_stream_raises_and_changes_nothing() -> None:
    # A generator's offset stays below 2**64 (SPEC §2/§3): block 2**64 - 1 is for the functional core.
    g = detnoise.Generator(seed=1)
    g.offset = 2**64 - 3
    detnoise.randn(8, generator=g)  # blocks 2**64 - 3 and 2**64 - 2
    assert g.offset == 2**64 - 1
    assert g.get_state()[20:].tolist() == [255] * 8  # serialisable: no offset of 2**64 exists
    pickle.loads(pickle.dumps(g))
    for draw in (lambda: detnoise.randn(1, generator=g), lambda: g.spawn(1)):
        with pytest.raises(ValueError, match="2\\*\\*64"):
            draw()
    assert g.offset == 2**64 - 1
    detnoise.randn(0, generator=g)  # an empty draw takes nothing
    assert detnoise.normal((4,), seed=1, offset=2**64 - 1).shape == (4,)  # the last block, functionally


def test_state_round_trip() -> None:
    g = detnoise.Generator(seed=2**63 + 5)
    detnoise.randn(7, generator=g)
    state = g.get_state()
    assert state.dtype == torch.uint8 and state.shape == (28,)
    expected = detnoise.randn(100, generator=g)
    h = detnoise.Generator().set_state(state)
    assert (h.initial_seed(), h.stream, h.offset) == (2**63 + 5, 0, 2)
    assert_bits_equal(detnoise.randn(100, generator=h), expected)


def _foreign_states() -> list[tuple[object, type[Exception]]]:
    good = detnoise.Generator(seed=1).get_state()
    future = good.clone()
    future[2] = 2
    bad_magic = good.clone()
    bad_magic[0] = 0
    return [
        (torch.Generator().get_state(), ValueError),  # a torch CPU generator's state
        (torch.zeros(16, dtype=torch.uint8), ValueError),  # the size of a torch CUDA generator's state
        (torch.randint(0, 256, (28,), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)), ValueError),
        (future, ValueError),
        (bad_magic, ValueError),
        (good[:27], ValueError),
        (good.view(1, 28), ValueError),
        (good.to(torch.int64), TypeError),
        (bytes(28), TypeError),
        (None, TypeError),
    ]


@pytest.mark.parametrize(("state", "error"), _foreign_states())
def test_malformed_states_raise_and_change_nothing(state, error) -> None:
    g = detnoise.Generator(seed=77)
    detnoise.randn(3, generator=g)
    before = g.get_state()
    with pytest.raises(error):
        g.set_state(state)
    assert torch.equal(g.get_state(), before)


def test_values_do_not_depend_on_generator_device_field() -> None:
    meta_gen = detnoise.Generator("cpu", seed=4)
    assert_bits_equal(detnoise.randn(33, generator=meta_gen), reference.normal(33, "float32", 4))


def test_seed_picks_a_fresh_seed() -> None:
    g = detnoise.Generator()
    s = g.seed()
    assert g.initial_seed() == s and 0 <= s < 2**64 and g.offset == 0


def test_clone_copy_deepcopy_pickle_keep_type_and_state() -> None:
    g = detnoise.Generator(seed=123).fold_in(4)
    detnoise.randn(10, generator=g)
    torch.randn(3, generator=g)  # move the torch base state too
    for twin in (g.clone(), copy.copy(g), copy.deepcopy(g), pickle.loads(pickle.dumps(g))):
        assert type(twin) is detnoise.Generator
        assert twin is not g
        assert torch.equal(twin.get_state(), g.get_state())
        assert torch.equal(torch.Generator.get_state(twin), torch.Generator.get_state(g))
        assert_bits_equal(detnoise.randn(50, generator=twin), detnoise.randn(50, generator=g.clone()))
    clone = g.clone()
    detnoise.randn(4, generator=clone)
    assert clone.offset != g.offset  # independent


def test_fold_in_matches_reference_and_is_pure() -> None:
    g = detnoise.Generator(seed=99)
    detnoise.randn(5, generator=g)
    child = g.fold_in(7)
    assert g.offset == 2 and g.stream == 0
    assert child.stream == reference.fold_in_stream(99, 0, 7)
    assert child.offset == 0 and child.initial_seed() == 99
    assert g.fold_in(7).stream == child.stream
    assert g.fold_in(8).stream != child.stream
    assert child.fold_in(7).stream == reference.fold_in_stream(99, child.stream, 7)
    assert_bits_equal(detnoise.randn(20, generator=child), reference.normal(20, "float32", 99, child.stream))
    assert g.fold_in(-1).stream == reference.fold_in_stream(99, 0, 2**64 - 1)


def test_spawn_consumes_blocks_and_matches_reference() -> None:
    g = detnoise.Generator(seed=5)
    g.offset = 10
    children = g.spawn(3)
    assert g.offset == 13
    assert [c.stream for c in children] == [reference.spawn_stream(5, 0, 10 + j) for j in range(3)]
    assert len({c.stream for c in children + g.spawn(3)}) == 6
    assert g.spawn(0) == []
    with pytest.raises(ValueError):
        g.spawn(-1)
    assert g.offset == 16


def test_concurrent_draws_never_share_blocks() -> None:
    g = detnoise.Generator(seed=31337)
    results: list[tuple[int, torch.Tensor]] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(50):
            before = g.offset  # informative only; the draw itself reserves atomically
            values = detnoise.random_bits(4 * 3, generator=g)
            with lock:
                results.append((before, values))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert g.offset == 8 * 50 * 3
    everything = reference.bits(8 * 50 * 12, 31337).reshape(-1, 12)
    drawn = sorted(tuple(v.numpy().tolist()) for _, v in results)
    assert drawn == sorted(tuple(row.tolist()) for row in everything)


def test_module_default_generator() -> None:
    state = detnoise.default_generator.get_state()
    try:
        assert detnoise.manual_seed(17) is detnoise.default_generator
        assert detnoise.initial_seed() == 17
        assert_bits_equal(detnoise.randn(6), reference.normal(6, "float32", 17))
        assert_bits_equal(detnoise.randn(6), reference.normal(6, "float32", 17, 0, 2))
    finally:
        detnoise.default_generator.set_state(state)


def test_repr_names_the_state() -> None:
    assert "seed=8" in repr(detnoise.Generator(seed=8))


def test_numpy_and_torch_views_agree() -> None:
    bits = detnoise.random_bits(8, generator=detnoise.Generator(seed=0))
    assert bits.numpy().dtype == np.uint32


def test_derived_generators_have_distinct_torch_base_states() -> None:
    g = detnoise.Generator(seed=1)
    a, b = g.fold_in(1), g.fold_in(2)
    assert not torch.equal(torch.randn(4, generator=a), torch.randn(4, generator=b))
    assert torch.equal(torch.randn(4, generator=g.fold_in(1)), torch.randn(4, generator=torch.Generator().manual_seed(a.stream)))
