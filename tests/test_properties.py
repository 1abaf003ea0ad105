"""Property tests (hypothesis): any shape, seed, stream, offset, dtype and output layout gives the
reference's bits; state save/restore/clone/pickle at any point continues the same stream."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import detnoise
from detnoise import reference

from conftest import DTYPES, assert_bits_equal

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

shapes = st.lists(st.integers(0, 24), min_size=0, max_size=4).map(tuple)
seeds = st.integers(-(2**63), 2**64 - 1)
streams = st.integers(0, 2**64 - 1)
offsets = st.one_of(st.integers(0, 2**64 - 2**16), st.sampled_from([0, 2**32 - 1, 2**32, 2**63, 2**64 - 2**16]))
dtype_names = st.sampled_from(sorted(DTYPES))
kinds = st.sampled_from(["normal", "uniform"])


def expected(kind: str, dtype_name: str, n: int, seed: int, stream: int, offset: int) -> np.ndarray:
    return getattr(reference, kind)(n, dtype_name, seed, stream, offset)


@SETTINGS
@given(shape=shapes, seed=seeds, stream=streams, offset=offsets, dtype_name=dtype_names, kind=kinds)
def test_any_draw_equals_reference(shape, seed, stream, offset, dtype_name, kind) -> None:
    function = detnoise.normal if kind == "normal" else detnoise.uniform
    n = int(np.prod(shape, dtype=np.int64))
    per_block = 2 if dtype_name == "float64" else 4
    if offset + (n + per_block - 1) // per_block > 2**64:  # shapes up to 24^4 can pass the end
        with pytest.raises(ValueError, match="past the end of the stream"):
            function(shape, seed=seed, stream=stream, offset=offset, dtype=DTYPES[dtype_name])
        return
    got = function(shape, seed=seed, stream=stream, offset=offset, dtype=DTYPES[dtype_name])
    assert got.shape == shape
    assert_bits_equal(got, expected(kind, dtype_name, n, seed, stream, offset))


@SETTINGS
@given(shape=shapes.filter(lambda s: len(s) >= 2), seed=seeds, dtype_name=dtype_names, kind=kinds, data=st.data())
def test_non_contiguous_out_views_are_filled_in_logical_order(shape, seed, dtype_name, kind, data) -> None:
    dtype = DTYPES[dtype_name]
    step = data.draw(st.integers(1, 3), label="step")
    buffer = torch.full((shape[0] * step, *shape[1:]), 7.0, dtype=dtype)
    view = buffer[::step].transpose(0, -1)  # strided and permuted
    function = detnoise.randn if kind == "normal" else detnoise.rand
    g = detnoise.Generator(seed=seed)
    result = function(view.shape, generator=g, out=view)
    assert result is view
    assert_bits_equal(view.contiguous(), expected(kind, dtype_name, view.numel(), seed, 0, 0))
    if step > 1:
        assert bool((buffer[1::step] == 7.0).all())


@SETTINGS
@given(
    seed=seeds,
    sizes=st.lists(st.integers(0, 50), min_size=1, max_size=6),
    cut=st.integers(0, 5),
    how=st.sampled_from(["state", "clone", "pickle"]),
    dtype_name=dtype_names,
)
def test_state_round_trips_at_any_point(seed, sizes, cut, how, dtype_name) -> None:
    dtype = DTYPES[dtype_name]
    g = detnoise.Generator(seed=seed)
    for n in sizes[: cut % len(sizes)]:
        detnoise.randn(n, generator=g, dtype=dtype)
    if how == "state":
        twin = detnoise.Generator().set_state(g.get_state())
    elif how == "clone":
        twin = g.clone()
    else:
        twin = pickle.loads(pickle.dumps(g))
    for n in sizes:
        assert_bits_equal(detnoise.randn(n, generator=twin, dtype=dtype), detnoise.randn(n, generator=g, dtype=dtype))
    assert twin.offset == g.offset
