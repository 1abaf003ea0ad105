"""torch.compile: the functional draws trace as the custom op detnoise::draw with no graph break and
give the eager values; a stateful Generator graph-breaks (and fails under fullgraph=True)."""

from __future__ import annotations

import pytest
import torch
import torch._dynamo

import detnoise
from detnoise import _native, ops

from conftest import assert_bits_equal


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def noisy(x: torch.Tensor, seed: int, offset: int) -> torch.Tensor:
    return x * 2 + detnoise.normal(x.shape, seed=seed, offset=offset, dtype=x.dtype) + detnoise.uniform(x.shape, seed=seed, stream=1)


@pytest.mark.slow  # inductor generates and compiles C++ (about 20 s); aot_eager below covers the graph
def test_inductor_fullgraph_matches_eager() -> None:
    x = torch.arange(12.0).reshape(3, 4)
    compiled = torch.compile(noisy, fullgraph=True)
    assert_bits_equal(compiled(x, 5, 2**63 + 3), noisy(x, 5, 2**63 + 3))
    assert_bits_equal(compiled(x, 6, 7), noisy(x, 6, 7))  # new seed and offset: same values as eager


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_no_graph_break_and_eager_values(dtype: torch.dtype) -> None:
    x = torch.ones(5, 7, dtype=dtype)
    explanation = torch._dynamo.explain(noisy)(x, 2**64 - 1, 9)
    assert explanation.graph_break_count == 0 and explanation.graph_count == 1
    compiled = torch.compile(noisy, fullgraph=True, backend="aot_eager")
    assert_bits_equal(compiled(x, 2**64 - 1, 9), noisy(x, 2**64 - 1, 9))


def test_bits_and_out_under_compile() -> None:
    def f(out: torch.Tensor) -> torch.Tensor:
        detnoise.normal(out.shape, seed=3, offset=2**32, out=out)
        return detnoise.bits((4,), seed=3).to(torch.int64)

    out_c, out_e = torch.empty(9), torch.empty(9)
    got = torch.compile(f, fullgraph=True, backend="aot_eager")(out_c)
    assert torch.equal(got, f(out_e)) and torch.equal(out_c, out_e)


def test_stateful_generator_graph_breaks_but_stays_correct() -> None:
    g_compiled, g_eager = detnoise.Generator(seed=1), detnoise.Generator(seed=1)

    def with_generator(x: torch.Tensor, g: detnoise.Generator) -> torch.Tensor:
        return x + detnoise.randn(x.shape, generator=g)

    x = torch.zeros(3, 5)
    with pytest.raises(torch._dynamo.exc.Unsupported):
        torch.compile(with_generator, fullgraph=True, backend="aot_eager")(x, g_compiled)
    assert g_compiled.offset == 0
    compiled = torch.compile(with_generator, backend="aot_eager")
    for _ in range(2):
        assert_bits_equal(compiled(x, g_compiled), with_generator(x, g_eager))
    assert g_compiled.offset == g_eager.offset == 8


def test_custom_op_passes_opcheck() -> None:
    for args in [
        (_native.KIND_NORMAL, [3, 5], ops.as_int64(2**64 - 2), 1, 7, torch.float32, torch.device("cpu")),
        (_native.KIND_UNIFORM, [0], 1, 0, 0, torch.bfloat16, torch.device("cpu")),
    ]:
        torch.library.opcheck(torch.ops.detnoise.draw.default, args)


def test_uint64_round_trip() -> None:
    for value in (0, 1, 2**63 - 1, 2**63, 2**64 - 1):
        assert ops.as_uint64(ops.as_int64(value)) == value
        assert -(2**63) <= ops.as_int64(value) < 2**63
