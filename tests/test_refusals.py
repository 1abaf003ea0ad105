"""What torch refuses, detnoise refuses (issue 17 item 3): every patched sampler and detnoise's own
fills, checked against the real torch function in the same test, with torch's error type and no
generator moved (a plain torch.Generator, a detnoise.Generator, and the global generators)."""

from __future__ import annotations

from typing import Any, Callable, Optional

import pytest
import torch

import detnoise

NAN, INF = float("nan"), float("inf")
E = torch.empty
F16, BF16, F64 = torch.float16, torch.bfloat16, torch.float64


pytestmark = pytest.mark.usefixtures("torch_patch_removed_afterwards")


# Each row: a call taking a generator (None: the global one). torch refuses every one of them.
PATCHED_REFUSALS: list[tuple[str, Callable[[Any], Any]]] = [
    ("normal_ std nan", lambda g: E(3).normal_(0.0, NAN, generator=g)),
    ("normal_ std negative", lambda g: E(3).normal_(0.0, -1.0, generator=g)),
    ("normal number std nan", lambda g: torch.normal(0.0, NAN, (2,), generator=g)),
    ("normal number std negative", lambda g: torch.normal(0.0, -1.0, (2,), generator=g)),
    ("normal tensor std nan", lambda g: torch.normal(torch.zeros(2), torch.tensor([1.0, NAN]), generator=g)),
    ("normal tensor mean, std nan", lambda g: torch.normal(torch.zeros(2), NAN, generator=g)),
    ("normal number mean, tensor std negative", lambda g: torch.normal(0.0, -torch.ones(2), generator=g)),
    ("normal integer mean", lambda g: torch.normal(torch.zeros(2, dtype=torch.int64), 1.0, generator=g)),
    ("normal shapes", lambda g: torch.normal(torch.zeros(2), torch.ones(3), generator=g)),
    ("uniform_ to inf", lambda g: E(3).uniform_(0.0, INF, generator=g)),
    ("uniform_ from -inf", lambda g: E(3).uniform_(-INF, 0.0, generator=g)),
    ("uniform_ from nan", lambda g: E(3).uniform_(NAN, 1.0, generator=g)),
    ("uniform_ to nan", lambda g: E(3).uniform_(0.0, NAN, generator=g)),
    ("uniform_ reversed", lambda g: E(3).uniform_(2.0, 1.0, generator=g)),
    ("uniform_ float32 range", lambda g: E(3).uniform_(0.0, 1e39, generator=g)),
    ("uniform_ float16 range", lambda g: E(3, dtype=F16).uniform_(0.0, 1e5, generator=g)),
    ("uniform_ bfloat16 range", lambda g: E(3, dtype=BF16).uniform_(-1e39, 0.0, generator=g)),
    ("uniform_ width overflows", lambda g: E(3, dtype=F64).uniform_(-1e308, 1e308, generator=g)),
    ("uniform_ float32 width", lambda g: E(3).uniform_(-3e38, 3e38, generator=g)),
    ("uniform_ integer tensor", lambda g: E(3, dtype=torch.int64).uniform_(generator=g)),
    ("exponential_ zero", lambda g: E(3).exponential_(0.0, generator=g)),
    ("exponential_ negative", lambda g: E(3).exponential_(-1.0, generator=g)),
    ("exponential_ nan", lambda g: E(3).exponential_(NAN, generator=g)),
    ("exponential_ integer tensor", lambda g: E(3, dtype=torch.int64).exponential_(generator=g)),
    ("bernoulli_ p nan", lambda g: E(3).bernoulli_(NAN, generator=g)),
    ("bernoulli_ p above 1", lambda g: E(3).bernoulli_(1.5, generator=g)),
    ("bernoulli_ p below 0", lambda g: E(3).bernoulli_(-0.1, generator=g)),
    ("bernoulli_ tensor p above 1", lambda g: E(3).bernoulli_(torch.full((3,), 1.5), generator=g)),
    ("bernoulli tensor p nan", lambda g: torch.bernoulli(torch.tensor([0.5, NAN]), generator=g)),
    ("bernoulli number p", lambda g: torch.bernoulli(torch.zeros(2), 2.0, generator=g)),
    ("randint low >= high", lambda g: torch.randint(5, 5, (2,), generator=g)),
    ("randint reversed", lambda g: torch.randint(5, 3, (2,), generator=g)),
    ("randint int8 range", lambda g: torch.randint(0, 200, (2,), dtype=torch.int8, generator=g)),
    ("randint float16 range", lambda g: torch.randint(0, 2**20, (2,), dtype=F16, generator=g)),
    ("randint negative size", lambda g: torch.randint(3, (-1,), generator=g)),
    ("randint_like low >= high", lambda g: torch.randint_like(E(2), 4, 4, generator=g)),
    ("random_ reversed", lambda g: E(3).random_(3, 1, generator=g)),
    ("random_ int8 range", lambda g: E(3, dtype=torch.int8).random_(0, 200, generator=g)),
    ("random_ uint8 negative", lambda g: E(3, dtype=torch.uint8).random_(-5, 5, generator=g)),
    ("randperm negative", lambda g: torch.randperm(-1, generator=g)),
    ("randperm float16 too many", lambda g: torch.randperm(5000, dtype=F16, generator=g)),
    ("randperm int8 too many", lambda g: torch.randperm(300, dtype=torch.int8, generator=g)),
    ("randperm bool", lambda g: torch.randperm(2, dtype=torch.bool, generator=g)),
    ("multinomial inf", lambda g: torch.multinomial(torch.tensor([1.0, INF]), 1, generator=g)),
    ("multinomial nan", lambda g: torch.multinomial(torch.tensor([1.0, NAN]), 1, generator=g)),
    ("multinomial negative", lambda g: torch.multinomial(torch.tensor([-1.0, 2.0]), 1, generator=g)),
    ("multinomial zero sum", lambda g: torch.multinomial(torch.zeros(2, 3), 1, generator=g)),
    ("multinomial zero samples", lambda g: torch.multinomial(torch.ones(3), 0, generator=g)),
    ("multinomial too many", lambda g: torch.multinomial(torch.ones(3), 4, generator=g)),
    ("multinomial 3-d", lambda g: torch.multinomial(torch.ones(2, 2, 2), 1, generator=g)),
    ("multinomial integer probs", lambda g: torch.multinomial(torch.ones(2, dtype=torch.int64), 1, generator=g)),
    ("randn negative size", lambda g: torch.randn(-1, generator=g)),
    ("randn no size", lambda g: torch.randn(generator=g)),
    ("rand no size", lambda g: torch.rand(generator=g)),
    ("randn float size", lambda g: torch.randn(2.5, generator=g)),
    ("randn integer dtype", lambda g: torch.randn(3, dtype=torch.int64, generator=g)),
    ("rand bool dtype", lambda g: torch.rand(3, dtype=torch.bool, generator=g)),
    ("randn out dtype", lambda g: torch.randn(2, out=E(2, dtype=F64), dtype=torch.float32, generator=g)),
    ("randn out requires grad", lambda g: torch.randn(2, out=E(2, requires_grad=True), generator=g)),
    ("randn bad device", lambda g: torch.randn(2, device="banana", generator=g)),
    ("randn_like integer", lambda g: torch.randn_like(E(2, dtype=torch.int32), generator=g)),
    ("rand_like integer dtype", lambda g: torch.rand_like(E(2), dtype=torch.int8, generator=g)),
    ("randn_like requires_grad integer", lambda g: torch.randn_like(E(2, dtype=torch.int64), requires_grad=True, generator=g)),
    ("randn_like not a tensor", lambda g: torch.randn_like([1.0], generator=g)),
    ("normal_ leaf requires grad", lambda g: torch.zeros(3, requires_grad=True).normal_(generator=g)),
    ("normal_ integer tensor", lambda g: E(3, dtype=torch.int64).normal_(generator=g)),
    ("normal_ string mean", lambda g: E(3).normal_("0", 1.0, generator=g)),
]


def _torch_error(call: Callable[[Any], Any]) -> BaseException:
    with pytest.raises(Exception) as caught:
        call(torch.Generator().manual_seed(3))
    return caught.value


def _generator_states() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.get_rng_state(), detnoise.default_generator.get_state()


def _check_refused(call: Callable[[], Any], expected: type, state: Callable[[], Any]) -> None:
    before = state()
    with pytest.raises(Exception) as caught:
        call()
    assert isinstance(caught.value, expected), (caught.value, expected)
    after = state()
    before, after = (before, after) if isinstance(before, tuple) else ((before,), (after,))
    assert all(torch.equal(a, b) for a, b in zip(before, after))


@pytest.mark.parametrize("name,call", PATCHED_REFUSALS, ids=[name for name, _ in PATCHED_REFUSALS])
def test_patched_samplers_refuse_what_torch_refuses(name, call) -> None:
    torch_type = type(_torch_error(call))
    torch.manual_seed(3)
    with detnoise.patch_torch():
        torch_generator = torch.Generator().manual_seed(3)
        detnoise.randn(2, generator=torch_generator)  # a state detnoise left behind, too
        _check_refused(lambda: call(torch_generator), torch_type, torch_generator.get_state)
        ours = detnoise.Generator(seed=3)
        _check_refused(lambda: call(ours), torch_type, ours.get_state)
        _check_refused(lambda: call(None), torch_type, _generator_states)
        # Nothing moved: the next draws are the ones an untouched generator gives.
        assert torch.equal(torch.randn(4, generator=torch_generator), detnoise.normal((4,), seed=3, offset=1))
        assert torch.equal(torch.randn(4, generator=ours), detnoise.normal((4,), seed=3))


# detnoise's own fills against torch's (nn.init's fills are Tensor.normal_/uniform_ under no_grad).
OWN_REFUSALS: list[tuple[str, Callable[..., Any], Callable[[Optional[torch.Generator]], Any]]] = [
    ("normal_ std nan", lambda g: detnoise.normal_(E(3), 0.0, NAN, generator=g), lambda g: E(3).normal_(0.0, NAN, generator=g)),
    ("normal_ std negative", lambda g: detnoise.normal_(E(3), 0.0, -1.0, generator=g),
     lambda g: E(3).normal_(0.0, -1.0, generator=g)),
    ("normal_ std -inf", lambda g: detnoise.normal_(E(3), 0.0, -INF, generator=g),
     lambda g: E(3).normal_(0.0, -INF, generator=g)),
    ("uniform_ to inf", lambda g: detnoise.uniform_(E(3), 0.0, INF, generator=g), lambda g: E(3).uniform_(0.0, INF, generator=g)),
    ("uniform_ from -inf", lambda g: detnoise.uniform_(E(3), -INF, 0.0, generator=g),
     lambda g: E(3).uniform_(-INF, 0.0, generator=g)),
    ("uniform_ nan", lambda g: detnoise.uniform_(E(3), NAN, 1.0, generator=g), lambda g: E(3).uniform_(NAN, 1.0, generator=g)),
    ("uniform_ reversed", lambda g: detnoise.uniform_(E(3), 1.0, 0.0, generator=g), lambda g: E(3).uniform_(1.0, 0.0, generator=g)),
    ("uniform_ float16 range", lambda g: detnoise.uniform_(E(3, dtype=F16), 0.0, 1e5, generator=g),
     lambda g: E(3, dtype=F16).uniform_(0.0, 1e5, generator=g)),
    ("uniform_ bfloat16 range", lambda g: detnoise.uniform_(E(3, dtype=BF16), 0.0, 1e39, generator=g),
     lambda g: E(3, dtype=BF16).uniform_(0.0, 1e39, generator=g)),
    ("uniform_ width overflows", lambda g: detnoise.uniform_(E(3, dtype=F64), -1e308, 1e308, generator=g),
     lambda g: E(3, dtype=F64).uniform_(-1e308, 1e308, generator=g)),
    ("uniform_ float32 width", lambda g: detnoise.uniform_(E(3), -3e38, 3e38, generator=g),
     lambda g: E(3).uniform_(-3e38, 3e38, generator=g)),
    ("normal_ string mean", lambda g: detnoise.normal_(E(3), "0", 1.0, generator=g), lambda g: E(3).normal_("0", 1.0, generator=g)),
]


@pytest.mark.parametrize("name,ours,theirs", OWN_REFUSALS, ids=[row[0] for row in OWN_REFUSALS])
def test_detnoise_fills_refuse_what_torch_refuses(name, ours, theirs) -> None:
    torch_type = type(_torch_error(theirs))
    torch_generator = torch.Generator().manual_seed(3)
    detnoise.randn(2, generator=torch_generator)
    _check_refused(lambda: ours(torch_generator), torch_type, torch_generator.get_state)
    generator = detnoise.Generator(seed=3)
    _check_refused(lambda: ours(generator), torch_type, generator.get_state)
    _check_refused(lambda: ours(None), torch_type, _generator_states)
    assert torch.equal(detnoise.randn(4, generator=generator), detnoise.normal((4,), seed=3))


# What torch accepts stays accepted (the checks are torch's, not stricter).
ACCEPTED: list[tuple[str, Callable[[Any], Any]]] = [
    ("normal_ std inf", lambda g: E(3).normal_(0.0, INF, generator=g)),
    ("normal_ mean nan", lambda g: E(3).normal_(NAN, 1.0, generator=g)),
    ("uniform_ empty range", lambda g: E(3).uniform_(1.0, 1.0, generator=g)),
    ("uniform_ float16 edge", lambda g: E(3, dtype=F16).uniform_(-65504.0, 0.0, generator=g)),
    ("exponential_ inf", lambda g: E(3).exponential_(INF, generator=g)),
    ("randperm float16 2049", lambda g: torch.randperm(2049, dtype=F16, generator=g)),
    ("randint bool", lambda g: torch.randint(0, 2, (3,), dtype=torch.bool, generator=g)),
    ("randn 0-dim", lambda g: torch.randn((), generator=g)),
    ("multinomial no rows", lambda g: torch.multinomial(torch.ones(0, 3), 1, generator=g)),
    # Fewer positive weights than samples: zero weights race with key +inf (SPEC §10.8), last.
    ("multinomial zero weights drawn last", lambda g: torch.multinomial(torch.tensor([0.0, 1.0, 0.0]), 3, generator=g)),
    ("normal integer std tensor", lambda g: torch.normal(torch.zeros(2), torch.ones(2, dtype=torch.int64), generator=g)),
]


@pytest.mark.parametrize("name,call", ACCEPTED, ids=[name for name, _ in ACCEPTED])
def test_patched_samplers_accept_what_torch_accepts(name, call) -> None:
    expected = call(torch.Generator().manual_seed(3))
    with detnoise.patch_torch():
        got = call(torch.Generator().manual_seed(3))
    assert (got.shape, got.dtype) == (expected.shape, expected.dtype)


# torch accepts these with a warning (integers past 2**digits are not all representable); so does detnoise.
WARNED: list[tuple[str, Callable[[Any], Any]]] = [
    ("random_ float16 past 2**11", lambda g: E(3, dtype=F16).random_(0, 2**12, generator=g)),
    ("random_ float32 to 2**30", lambda g: E(3).random_(2**30, generator=g)),
    ("randint float16 from -2**12", lambda g: torch.randint(-2**12, 0, (3,), dtype=F16, generator=g)),
]


@pytest.mark.parametrize("name,call", WARNED, ids=[name for name, _ in WARNED])
def test_patched_samplers_warn_where_torch_warns(name, call) -> None:
    with pytest.warns(UserWarning, match="out of bounds"):
        call(torch.Generator().manual_seed(3))
    with detnoise.patch_torch(), pytest.warns(UserWarning, match="out of bounds"):
        call(torch.Generator().manual_seed(3))


def test_detnoise_fills_accept_what_torch_accepts() -> None:
    g = detnoise.Generator(seed=3)
    assert torch.isinf(detnoise.normal_(E(3), 0.0, INF, generator=g)).any()
    assert detnoise.uniform_(E(3, dtype=F16), -65504.0, 0.0, generator=g).isfinite().all()
    assert torch.equal(detnoise.uniform_(E(3), 2.0, 2.0, generator=g), torch.full((3,), 2.0))


# detnoise.Generator's methods against torch.Generator's: torch's error type (detnoise's older type
# is kept too: the classes derive from both), and the generator unchanged.
GENERATOR_REFUSALS: list[tuple[str, Callable[[torch.Generator], Any]]] = [
    ("manual_seed float", lambda g: g.manual_seed(1.5)),
    ("manual_seed str", lambda g: g.manual_seed("1")),
    ("manual_seed bool", lambda g: g.manual_seed(True)),
    ("manual_seed 2**64", lambda g: g.manual_seed(2**64)),
    ("manual_seed below -2**63", lambda g: g.manual_seed(-(2**63) - 1)),
    ("set_state float tensor", lambda g: g.set_state(torch.zeros(28))),
    ("set_state list", lambda g: g.set_state([0] * 28)),
    ("set_state wrong size", lambda g: g.set_state(torch.zeros(3, dtype=torch.uint8))),
    ("set_offset float", lambda g: g.set_offset(1.5)),
]


@pytest.mark.parametrize("name,call", GENERATOR_REFUSALS, ids=[name for name, _ in GENERATOR_REFUSALS])
def test_generator_methods_refuse_like_torch(name, call) -> None:
    torch_type = type(_torch_error(call))
    generator = detnoise.Generator(seed=3)
    detnoise.randn(5, generator=generator)
    _check_refused(lambda: call(generator), torch_type, generator.get_state)


# detnoise's torch-style draws against torch's: torch's error type (detnoise's older TypeError or
# ValueError is kept too), and no generator moved.
OWN_ARGUMENT_REFUSALS: list[tuple[str, Callable[..., Any], Callable[..., Any]]] = [
    ("randn negative size", lambda g: detnoise.randn(2, -1, generator=g), lambda g: torch.randn(2, -1, generator=g)),
    ("randn float size", lambda g: detnoise.randn(2.0, generator=g), lambda g: torch.randn(2.0, generator=g)),
    ("randn integer dtype", lambda g: detnoise.randn(3, dtype=torch.int64, generator=g),
     lambda g: torch.randn(3, dtype=torch.int64, generator=g)),
    ("rand bool dtype", lambda g: detnoise.rand(3, dtype=torch.bool, generator=g),
     lambda g: torch.rand(3, dtype=torch.bool, generator=g)),
    ("randn out dtype", lambda g: detnoise.randn(3, out=E(3), dtype=F64, generator=g),
     lambda g: torch.randn(3, out=E(3), dtype=F64, generator=g)),
    ("randn sparse layout", lambda g: detnoise.randn(3, layout=torch.sparse_coo, generator=g),
     lambda g: torch.randn(3, layout=torch.sparse_coo, generator=g)),
    ("randn bad device", lambda g: detnoise.randn(3, device="banana", generator=g),
     lambda g: torch.randn(3, device="banana", generator=g)),
    ("randn out requires grad", lambda g: detnoise.randn(2, out=E(2, requires_grad=True), generator=g),
     lambda g: torch.randn(2, out=E(2, requires_grad=True), generator=g)),
    ("randn_like integer", lambda g: detnoise.randn_like(E(2, dtype=torch.int32), generator=g),
     lambda g: torch.randn_like(E(2, dtype=torch.int32), generator=g)),
    ("rand_like integer dtype", lambda g: detnoise.rand_like(E(2), dtype=torch.int8, generator=g),
     lambda g: torch.rand_like(E(2), dtype=torch.int8, generator=g)),
    ("randn_like not a tensor", lambda g: detnoise.randn_like([1.0], generator=g),
     lambda g: torch.randn_like([1.0], generator=g)),
    ("normal_ integer tensor", lambda g: detnoise.normal_(E(3, dtype=torch.int64), generator=g),
     lambda g: E(3, dtype=torch.int64).normal_(generator=g)),
    ("uniform_ integer tensor", lambda g: detnoise.uniform_(E(3, dtype=torch.int64), generator=g),
     lambda g: E(3, dtype=torch.int64).uniform_(generator=g)),
]


@pytest.mark.parametrize("name,ours,theirs", OWN_ARGUMENT_REFUSALS, ids=[row[0] for row in OWN_ARGUMENT_REFUSALS])
def test_detnoise_draws_refuse_with_torchs_error_type(name, ours, theirs) -> None:
    torch_type = type(_torch_error(theirs))
    generator = detnoise.Generator(seed=3)
    _check_refused(lambda: ours(generator), torch_type, generator.get_state)
    torch_generator = torch.Generator().manual_seed(3)
    _check_refused(lambda: ours(torch_generator), torch_type, torch_generator.get_state)
