"""The generator resolver (detnoise._resolve): a torch generator's detnoise position is a function of
its torch state, so torch's replay semantics carry over (Note [Torch generator positions])."""

from __future__ import annotations

import copy

import pytest
import torch

import detnoise
from detnoise import _resolve, randn_tensor, reference

from conftest import assert_bits_equal

SHAPE = (2, 3, 4)
BLOCKS = 6


def expected(shape, seed: int, offset: int = 0, stream: int = 0) -> torch.Tensor:
    n = 1
    for dim in shape:
        n *= dim
    return torch.from_numpy(reference.normal(n, "float32", seed, stream, offset)).reshape(shape)


@pytest.fixture(autouse=True)
def keep_global_rng():
    state = torch.get_rng_state()
    yield
    torch.set_rng_state(state)


def test_fresh_state_is_block_zero_and_draws_continue() -> None:
    g = torch.Generator().manual_seed(3)
    assert _resolve.position(g) == (3, 0, 0)
    assert_bits_equal(randn_tensor(SHAPE, generator=g), expected(SHAPE, 3))
    assert _resolve.position(g) == (3, 0, BLOCKS)
    assert_bits_equal(randn_tensor(SHAPE, generator=g), expected(SHAPE, 3, BLOCKS))


def test_reseed_after_a_torch_draw_replays() -> None:
    # Helios with latents passed: torch.rand before randn_tensor, then the run is repeated.
    g = torch.Generator().manual_seed(5)
    torch.rand(3, generator=g)
    first = randn_tensor(SHAPE, generator=g)
    g.manual_seed(5)
    torch.rand(3, generator=g)
    assert_bits_equal(randn_tensor(SHAPE, generator=g), first)


def test_torch_draw_starts_a_stream_derived_from_the_state() -> None:
    g = torch.Generator().manual_seed(11)
    randn_tensor(SHAPE, generator=g)
    torch.randperm(10, generator=g)
    state = g.get_state().numpy().tobytes()
    stream = _resolve.derived_stream(state)
    assert _resolve.position(g) == (11, stream, 0)
    assert_bits_equal(randn_tensor(SHAPE, generator=g), expected(SHAPE, 11, 0, stream))


def test_set_state_replays() -> None:
    g = torch.Generator().manual_seed(2)
    randn_tensor(SHAPE, generator=g)
    saved = g.get_state()
    first = randn_tensor(SHAPE, generator=g)
    randn_tensor(SHAPE, generator=g)
    g.set_state(saved)
    assert_bits_equal(randn_tensor(SHAPE, generator=g), first)
    assert_bits_equal(first, expected(SHAPE, 2, BLOCKS))


@pytest.mark.parametrize("copier", [copy.deepcopy, lambda g: g.clone_state()], ids=["deepcopy", "clone_state"])
def test_copies_continue_like_the_original(copier) -> None:
    g = torch.Generator().manual_seed(4)
    randn_tensor(SHAPE, generator=g)
    twin = copier(g)
    a = randn_tensor(SHAPE, generator=g)
    b = randn_tensor(SHAPE, generator=twin)
    assert_bits_equal(a, b)
    assert_bits_equal(a, expected(SHAPE, 4, BLOCKS))  # continues; does not repeat block 0


def test_fork_rng_restores_the_position() -> None:
    torch.manual_seed(0)
    first = randn_tensor(SHAPE)
    with torch.random.fork_rng():
        torch.manual_seed(1)  # e.g. a prompt enhancer seeding inside fork_rng
        randn_tensor(SHAPE)
    assert_bits_equal(randn_tensor(SHAPE), expected(SHAPE, 0, BLOCKS))
    assert_bits_equal(first, expected(SHAPE, 0))


def test_manual_seed_idiom_twice_with_torch_draws_in_between() -> None:
    def run() -> torch.Tensor:
        torch.manual_seed(0)
        torch.nn.Linear(4, 4)  # weight initialisation draws from the global RNG
        return randn_tensor(SHAPE)

    assert_bits_equal(run(), run())


def test_two_generators_seeded_alike_keep_their_own_positions() -> None:
    a = torch.Generator().manual_seed(9)
    b = torch.Generator().manual_seed(9)
    randn_tensor((4,), generator=a)  # 1 block
    randn_tensor((40,), generator=b)  # 10 blocks: must not overwrite a's entry
    assert _resolve.position(a) == (9, 0, 1)
    assert _resolve.position(b) == (9, 0, 10)


def test_detnoise_functions_take_torch_generators() -> None:
    g = torch.Generator().manual_seed(6)
    assert_bits_equal(detnoise.randn(SHAPE, generator=g), expected(SHAPE, 6))
    assert_bits_equal(detnoise.randn(SHAPE, generator=g), expected(SHAPE, 6, BLOCKS))
    assert_bits_equal(detnoise.randn_slice((8,), slice(4, 8), generator=torch.Generator().manual_seed(6)),
                      expected((8,), 6)[4:])


def test_undo_restores_the_torch_state_unless_used_since() -> None:
    g = torch.Generator().manual_seed(1)
    before = g.get_state()
    taken = _resolve.reserve(g, 5)
    assert (taken.seed, taken.stream, taken.start, taken.blocks) == (1, 0, 0, 5)
    taken.undo()
    assert torch.equal(g.get_state(), before)
    taken = _resolve.reserve(g, 5)
    _resolve.reserve(g, 1)  # used since: the undo must not rewind past it
    taken.undo()
    assert _resolve.position(g) == (1, 0, 6)


def test_room_is_checked_before_anything_changes() -> None:
    g = detnoise.Generator(seed=1)
    g.offset = 2**64 - 2
    with pytest.raises(ValueError):
        _resolve.reserve(g, 3)
    assert g.offset == 2**64 - 2


def test_none_needs_a_default() -> None:
    with pytest.raises(TypeError):
        _resolve.reserve(None, 1)
    with pytest.raises(TypeError):
        _resolve.reserve(object(), 1)


class FakeCudaGenerator:
    """What the resolver uses of a CUDA torch.Generator: (seed, Philox offset) as 16 bytes."""

    device = torch.device("cuda", 0)

    def __init__(self, seed: int) -> None:
        self.seed, self.offset = seed, 0
        self.state_calls = 0

    def manual_seed(self, seed: int) -> FakeCudaGenerator:
        self.seed, self.offset = seed, 0
        return self

    def initial_seed(self) -> int:
        return self.seed

    def get_offset(self) -> int:
        return self.offset

    def set_offset(self, offset: int) -> None:
        assert offset % 4 == 0, "torch requires CUDA offsets to be multiples of 4"
        self.offset = offset

    def get_state(self) -> torch.Tensor:
        self.state_calls += 1
        return torch.tensor([self.seed, self.offset], dtype=torch.int64).view(torch.uint8)

    def set_state(self, state: torch.Tensor) -> None:
        self.state_calls += 1
        self.seed, self.offset = state.view(torch.int64).tolist()


def test_cuda_generators_follow_the_same_rules_without_state_tensors() -> None:
    fake = FakeCudaGenerator(7)
    cpu = torch.Generator().manual_seed(7)
    for _ in range(3):
        assert _resolve.reserve(fake, 4).start == _resolve.reserve(cpu, 4).start
    assert _resolve.position(fake) == (7, 0, 12)
    assert fake.state_calls == 0  # int64 offset access only, no get_state/set_state round trips
    fake.manual_seed(7)
    assert _resolve.position(fake) == (7, 0, 0)
    fake.offset = 4 * 1000  # torch drew from it
    assert _resolve.position(fake) == (7, _resolve.derived_stream((7).to_bytes(8, "little") + (4000).to_bytes(8, "little")), 0)


# ---- CUDA graph capture (issue 14 item 1): checked with the capture query mocked -------------------


def test_generator_driven_cuda_draws_refuse_capture(monkeypatch) -> None:
    from detnoise import _draw

    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: True)
    with pytest.raises(RuntimeError, match="GraphSafeDraws"):
        _draw.check_not_capturing(torch.device("cuda", 0), "randn")
    _draw.check_not_capturing(torch.device("cpu"), "randn")  # CPU draws are not captured
    # Explicit (seed, stream, offset) draws stay allowed: their values are meant to be fixed.
    assert torch.equal(detnoise.normal((4,), seed=1), expected((4,), 1))
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: False)
    _draw.check_not_capturing(torch.device("cuda", 0), "randn")
