"""torch-style behaviour of the draw functions, and clear errors for bad input."""

from __future__ import annotations

import pytest
import torch

import detnoise
from detnoise import reference

from conftest import DTYPES, assert_bits_equal


def gen(seed: int = 1) -> detnoise.Generator:
    return detnoise.Generator(seed=seed)


@pytest.mark.parametrize("size_args", [(2, 3, 5), ((2, 3, 5),), ([2, 3, 5],), (torch.Size([2, 3, 5]),)])
def test_size_forms(size_args) -> None:
    x = detnoise.randn(*size_args, generator=gen())
    assert x.shape == (2, 3, 5) and x.dtype == torch.float32 and x.device.type == "cpu"
    assert_bits_equal(x, reference.normal(30, "float32", 1))


@pytest.mark.parametrize("dtype_name", list(DTYPES))
def test_plain_calls_equal_the_general_path(dtype_name: str) -> None:
    # randn/rand/random_bits take a short path for plain calls (new output, int dims, a device seen
    # before); out= and requires_grad take the general one. Same values, same generator advance.
    dtype = DTYPES[dtype_name]
    for function in (detnoise.randn, detnoise.rand):
        g_plain, g_device, g_general = gen(3), gen(3), gen(3)
        plain = function((3, 5, 7), generator=g_plain, dtype=dtype)
        for _ in range(2):  # the second call finds "cpu" already checked
            on_device = function(3, 5, 7, generator=gen(3), dtype=dtype, device="cpu")
        function(3, 5, 7, generator=g_device, dtype=dtype, device=torch.device("cpu"))
        general = function((3, 5, 7), generator=g_general, dtype=dtype, out=torch.empty(0, dtype=dtype))
        graded = function((3, 5, 7), generator=gen(3), dtype=dtype, requires_grad=True)
        assert_bits_equal(plain, general, function.__name__)
        assert_bits_equal(on_device, general, function.__name__)
        assert_bits_equal(graded.detach(), general, function.__name__)
        blocks = 53 if dtype == torch.float64 else 27  # ceil(105 / 2) or ceil(105 / 4)
        assert g_plain.offset == g_device.offset == g_general.offset == blocks
    bits = detnoise.random_bits([4, 4], generator=gen(3))
    assert_bits_equal(bits, reference.bits(16, 3).reshape(4, 4))


def test_plain_call_past_the_end_of_the_stream_changes_nothing() -> None:
    g = gen(8)
    g.offset = 2**64 - 2
    before = g.get_state()
    with pytest.raises(ValueError, match="past the end of the stream"):
        detnoise.randn(16, generator=g)
    assert torch.equal(g.get_state(), before)
    assert detnoise.randn(4, generator=g).shape == (4,) and g.offset == 2**64 - 1  # the offset stays a u64


def test_scalar_and_empty_shapes() -> None:
    g = gen()
    assert detnoise.randn((), generator=g).shape == ()
    assert g.offset == 1
    assert detnoise.randn(0, 5, generator=g).shape == (0, 5)
    assert g.offset == 1


def test_default_dtype_is_respected() -> None:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        assert detnoise.randn(3, generator=gen()).dtype == torch.float64
    finally:
        torch.set_default_dtype(previous)


@pytest.mark.parametrize("dtype_name", list(DTYPES))
def test_randn_rand_dtypes(dtype_name: str) -> None:
    dtype = DTYPES[dtype_name]
    assert_bits_equal(detnoise.randn(77, generator=gen(), dtype=dtype), reference.normal(77, dtype_name, 1))
    assert_bits_equal(detnoise.rand(77, generator=gen(), dtype=dtype), reference.uniform(77, dtype_name, 1))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_normals_are_rounded_float32(dtype: torch.dtype) -> None:
    wide = detnoise.randn(4, 64, 64, generator=gen(5))
    narrow = detnoise.randn(4, 64, 64, generator=gen(5), dtype=dtype)
    assert torch.equal(narrow, wide.to(dtype))


def test_rand_stays_below_one() -> None:
    for dtype in DTYPES.values():
        u = detnoise.rand(100_000, generator=gen(3), dtype=dtype)
        assert bool((u >= 0).all()) and bool((u < 1).all())


def test_out_argument() -> None:
    out = torch.empty(6, dtype=torch.float64)
    result = detnoise.randn(6, generator=gen(), out=out)
    assert result is out
    assert_bits_equal(out, reference.normal(6, "float64", 1))
    resized = torch.empty(2)
    detnoise.rand(3, 3, generator=gen(), out=resized)
    assert resized.shape == (3, 3)
    assert_bits_equal(resized, reference.uniform(9, "float32", 1))


def test_requires_grad() -> None:
    x = detnoise.randn(3, generator=gen(), requires_grad=True)
    assert x.requires_grad and x.is_leaf


def test_random_bits_dtype_and_values() -> None:
    bits = detnoise.random_bits(2, 3, generator=gen(9))
    assert bits.dtype == torch.uint32 and bits.shape == (2, 3)
    assert_bits_equal(bits, reference.bits(6, 9))


@pytest.mark.parametrize("fill", ["normal_", "uniform_"])
def test_in_place_fills_use_logical_order_for_non_contiguous_tensors(fill: str) -> None:
    kind = "normal" if fill == "normal_" else "uniform"
    base = torch.zeros(6, 8)
    view = base.t()[:, ::2]  # strided, not contiguous
    assert not view.is_contiguous()
    result = getattr(detnoise, fill)(view, generator=gen(2))
    assert result is view
    assert_bits_equal(view.contiguous(), getattr(reference, kind)(view.numel(), "float32", 2))
    assert bool((base[1::2, :] == 0).all())  # rows outside the view stay untouched


def test_normal_mean_std_and_uniform_bounds() -> None:
    x = detnoise.normal_(torch.empty(1000), 3.0, 0.5, generator=gen(4))
    z = torch.from_numpy(reference.normal(1000, "float32", 4))
    assert torch.equal(x, z.mul(0.5).add(3.0))
    u = detnoise.uniform_(torch.empty(1000), -2.0, 2.0, generator=gen(4))
    assert torch.equal(u, torch.from_numpy(reference.uniform(1000, "float32", 4)).mul(4.0).add(-2.0))


def test_like_functions_preserve_shape_dtype_and_logical_values() -> None:
    template = torch.empty(3, 4, 5, dtype=torch.float64).permute(2, 0, 1)
    x = detnoise.randn_like(template, generator=gen(6))
    assert x.shape == template.shape and x.dtype == torch.float64 and x.stride() == template.stride()
    assert_bits_equal(x.contiguous(), reference.normal(60, "float64", 6))
    u = detnoise.rand_like(template, generator=gen(6), dtype=torch.bfloat16)
    assert u.dtype == torch.bfloat16
    assert_bits_equal(u.contiguous(), reference.uniform(60, "bfloat16", 6))


def test_functional_core_matches_generator_draws() -> None:
    g = gen(8)
    g.offset = 2**40
    stateful = detnoise.randn(5, 7, generator=g, dtype=torch.float16)
    functional = detnoise.normal((5, 7), seed=8, offset=2**40, dtype=torch.float16)
    assert_bits_equal(stateful, functional)


def test_non_generator_is_refused_with_a_hint() -> None:
    with pytest.raises(TypeError, match="detnoise.Generator"):
        detnoise.randn(3, generator=3)


def test_torch_generator_is_read_through_the_resolver() -> None:
    # Its position follows its torch state (tests/test_resolve.py): fresh after manual_seed(s).
    assert torch.equal(detnoise.randn(3, generator=torch.Generator().manual_seed(5)), detnoise.normal((3,), seed=5))


# ---- bad input: clear exceptions, generator unchanged ------------------------------------------

BAD_CALLS = [
    ("negative size", lambda g: detnoise.randn(2, -1, generator=g), ValueError),
    ("float size", lambda g: detnoise.randn(2.0, generator=g), TypeError),
    ("enormous size", lambda g: detnoise.randn(2**32, 2**31, generator=g), ValueError),
    ("integer dtype", lambda g: detnoise.randn(3, generator=g, dtype=torch.int64), TypeError),
    ("bool dtype for rand", lambda g: detnoise.rand(3, generator=g, dtype=torch.bool), TypeError),
    ("complex dtype", lambda g: detnoise.randn(3, generator=g, dtype=torch.complex64), TypeError),
    ("out of wrong dtype", lambda g: detnoise.randn(3, generator=g, out=torch.empty(3), dtype=torch.float64), TypeError),
    ("integer out", lambda g: detnoise.randn(3, generator=g, out=torch.empty(3, dtype=torch.int32)), TypeError),
    ("out not a tensor", lambda g: detnoise.randn(3, generator=g, out=[0.0, 0.0, 0.0]), TypeError),
    ("sparse layout", lambda g: detnoise.randn(3, generator=g, layout=torch.sparse_coo), ValueError),
    ("meta device", lambda g: detnoise.randn(3, generator=g, device="meta"), RuntimeError),
    ("nonsense device", lambda g: detnoise.randn(3, generator=g, device="banana"), TypeError),
    ("integer tensor fill", lambda g: detnoise.normal_(torch.empty(3, dtype=torch.int64), generator=g), TypeError),
    ("negative std", lambda g: detnoise.normal_(torch.empty(3), 0.0, -1.0, generator=g), RuntimeError),
    ("reversed bounds", lambda g: detnoise.uniform_(torch.empty(3), 1.0, 0.0, generator=g), RuntimeError),
    ("bits with a float out", lambda g: detnoise.random_bits(3, generator=g, out=torch.empty(3)), TypeError),
    ("like of a non-tensor", lambda g: detnoise.randn_like([1.0], generator=g), TypeError),
    ("like with integer dtype", lambda g: detnoise.rand_like(torch.empty(2), generator=g, dtype=torch.int8), TypeError),
    ("2**63 elements", lambda g: detnoise.rand(2**63, generator=g), ValueError),
    ("device that does not exist", lambda g: detnoise.randn(3, generator=g, device="cuda:7"), RuntimeError),
    ("bits of negative size", lambda g: detnoise.random_bits(-4, generator=g), ValueError),
    ("bits on a meta device", lambda g: detnoise.random_bits(4, generator=g, device="meta"), RuntimeError),
    ("like on a missing device", lambda g: detnoise.randn_like(torch.empty(2), generator=g, device="cuda:7"), RuntimeError),
    ("fill of a non-tensor", lambda g: detnoise.uniform_([0.0], generator=g), TypeError),
    ("string mean", lambda g: detnoise.normal_(torch.empty(3), "0", 1.0, generator=g), TypeError),
    ("non-generator to a fill", lambda g: detnoise.normal_(torch.empty(3), generator="cpu"), TypeError),
    ("fold_in out of range", lambda g: g.fold_in(2**64), ValueError),
    ("spawn of a float", lambda g: g.spawn(1.5), TypeError),
    ("offset set to a float", lambda g: setattr(g, "offset", 3.0), TypeError),
]


@pytest.mark.parametrize(("label", "call", "error"), BAD_CALLS, ids=[row[0] for row in BAD_CALLS])
def test_bad_input_raises_and_leaves_generator_unchanged(label, call, error) -> None:
    g = gen(5)
    detnoise.randn(3, generator=g)
    before = g.get_state()
    with pytest.raises(error):
        call(g)
    assert torch.equal(g.get_state(), before), label


@pytest.mark.skipif(detnoise.built_with_cuda() and torch.cuda.is_available(), reason="CUDA is usable here")
def test_cuda_request_without_cuda_raises_clearly() -> None:
    g = gen(5)
    with pytest.raises(RuntimeError, match="cuda"):
        detnoise.randn(3, generator=g, device="cuda")
    assert g.offset == 0


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda: detnoise.normal(3, seed=2**64), ValueError),
        (lambda: detnoise.normal(3, seed=1, offset=-1), ValueError),
        (lambda: detnoise.normal(5, seed=1, offset=2**64 - 1), ValueError),  # needs 2 blocks, 1 left
        (lambda: detnoise.normal(3, seed=1, stream=2**64), ValueError),
        (lambda: detnoise.bits(3, seed="1"), TypeError),
    ],
)
def test_functional_core_bad_arguments(call, error) -> None:
    with pytest.raises(error):
        call()


def test_cpu_only_build_names_the_fix(monkeypatch) -> None:
    """What a build without CUDA kernels says when asked for a CUDA draw."""
    from detnoise import _core

    monkeypatch.setattr(_core, "built_with_cuda", False)
    g = gen(5)
    with pytest.raises(RuntimeError, match="no CUDA kernels.*nvcc"):
        detnoise.randn(3, generator=g, device="cuda")
    assert g.offset == 0
    assert detnoise.build_info()["cuda_built"] is False


def test_graph_safe_draws_need_cuda() -> None:
    g = gen(1)
    with pytest.raises(ValueError):
        detnoise.GraphSafeDraws(g, device="cpu")
    with pytest.raises(TypeError):
        detnoise.GraphSafeDraws(torch.Generator())
    if not (detnoise.built_with_cuda() and torch.cuda.is_available()):
        with pytest.raises(RuntimeError):
            detnoise.GraphSafeDraws(g, device="cuda")
