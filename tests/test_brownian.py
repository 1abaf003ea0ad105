"""Brownian tree (docs/SPEC.md §9): the CPU kernel against the numpy reference bit for bit, the
statistics of the motion, query-order and batch invariance, generator rules and bad input."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch

import detnoise
from detnoise import reference, reference_brownian

from conftest import DTYPES, assert_bits_equal, raw_bits

scipy_stats = pytest.importorskip("scipy.stats")


@pytest.fixture(params=["scalar", "baseline", "auto"])
def cpu_path(request):
    """The scalar path runs the CUDA kernel's per-thread body on the host; the others the chunked fill."""
    previous = detnoise.get_cpu_path()
    detnoise.set_cpu_path(request.param)
    yield request.param
    detnoise.set_cpu_path(previous)


def check_queries(tree: detnoise.BrownianTree, ref: reference_brownian.Tree, queries) -> None:
    for s, t in queries:
        assert_bits_equal(tree(s, t), ref.increment(s, t), f"W({s!r}, {t!r})")


def interior_times(t0: float, t1: float, count: int, rng: random.Random) -> list[float]:
    return [t0 + (t1 - t0) * rng.random() for _ in range(count)]


# ---- reference == kernel ------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("shape", [(1,), (3,), (5, 7), (2, 3, 5), (4, 4)])
def test_kernel_equals_reference_over_query_orders(dtype: str, shape, cpu_path: str) -> None:
    rng = random.Random(hash((dtype, shape)) & 0xFFFF)
    t0, t1, tol, seed = -0.75, 2.5, 0.02, 123456789
    n = math.prod(shape)
    ref = reference_brownian.Tree(t0, t1, tol, seed, n, dtype)
    times = sorted(interior_times(t0, t1, 6, rng)) + [t0, t1]
    forward = [(a, b) for a, b in zip(sorted(times), sorted(times)[1:])]
    backward = [(b, a) for a, b in reversed(forward)]
    shuffled = [(rng.choice(times), rng.choice(times)) for _ in range(6)]
    repeated = [forward[2], forward[2], backward[0], forward[2]]
    for queries in (forward, backward, shuffled, repeated):
        tree = detnoise.BrownianTree(t0, t1, shape, seed=seed, tol=tol, dtype=DTYPES[dtype])
        check_queries(tree, ref, queries)


@pytest.mark.parametrize("seed", [0, 1, 2**63 + 12345, 2**64 - 1, -1])
@pytest.mark.parametrize(("t0", "t1", "tol"), [(0.0, 1.0, 0.25), (0.0, 1.0, 1.0), (0.0292, 14.6146, 1e-3),
                                               (-3.0, -1e-3, 1e-4), (1e6, 1e6 + 3.0, 0.5)])
def test_kernel_equals_reference_over_seeds_and_intervals(seed: int, t0: float, t1: float, tol: float, cpu_path) -> None:
    n = 13
    ref = reference_brownian.Tree(t0, t1, tol, seed, n, "float32")
    tree = detnoise.BrownianTree(t0, t1, (n,), seed=seed, tol=tol)
    rng = random.Random(seed & 0xFFFF)
    mid = interior_times(t0, t1, 4, rng)
    check_queries(tree, ref, [(t0, t1), (mid[0], mid[1]), (t0, mid[2]), (mid[3], t1), (mid[1], mid[0])])


def test_kernel_equals_reference_on_node_times_and_nearby(cpu_path) -> None:
    t0, t1, tol = 0.0, 8.0, 0.5  # depth 4: nodes at multiples of 0.5
    ref = reference_brownian.Tree(t0, t1, tol, 99, 9, "float64")
    tree = detnoise.BrownianTree(t0, t1, (9,), seed=99, tol=tol, dtype=torch.float64)
    node = 3.5
    check_queries(tree, ref, [(node, 4.0), (math.nextafter(node, 0), node), (node, math.nextafter(node, 9)), (0.0, 8.0)])


def test_large_row_spans_several_chunks_and_threads(cpu_path) -> None:
    # 5000 elements: the chunked path's spans are 2048 long, so spans end mid Philox block too.
    ref = reference_brownian.Tree(0.0, 1.0, 1 / 64, 5, 5001, "float32")
    previous = detnoise.get_num_threads()
    detnoise.set_num_threads(2)
    try:
        tree = detnoise.BrownianTree(0.0, 1.0, (5001,), seed=5, tol=1 / 64)
        check_queries(tree, ref, [(0.1, 0.7), (0.7, 0.9)])
    finally:
        detnoise.set_num_threads(previous)


def test_spec_appendix_vector() -> None:
    """SPEC Appendix A: seed 0, [0, 1], tol 0.25 (depth 2), four float32 elements, W(0.3, 0.8)."""
    expected = [float.fromhex(h) for h in BROWNIAN_VECTOR]
    ref = reference_brownian.Tree(0.0, 1.0, 0.25, 0, 4, "float32").increment(0.3, 0.8)
    assert ref.tolist() == expected
    assert detnoise.BrownianTree(0.0, 1.0, (4,), seed=0, tol=0.25)(0.3, 0.8).tolist() == expected
    expected64 = [float.fromhex(h) for h in ("-0x1.22c4771171f47p-2", "-0x1.0b06c03d42f9ap-3")]
    assert reference_brownian.Tree(0.0, 1.0, 0.25, 0, 2, "float64").increment(0.3, 0.8).tolist() == expected64
    assert detnoise.BrownianTree(0.0, 1.0, (2,), seed=0, tol=0.25, dtype=torch.float64)(0.3, 0.8).tolist() == expected64


BROWNIAN_VECTOR = ("-0x1.2c7bb4p-2", "0x1.58608ep-2", "-0x1.5ce3d0p-1", "-0x1.40cdf0p-3")


def test_node_gaussians_are_a_normal_draw_under_the_tree_key() -> None:
    """SPEC §9.2 through the public functional API: W(t0, t1) = sqrt(L) * Z_0, Z_0 = normal(seed ^ tweak, stream 0)."""
    seed, length = 77, 4.0
    z0 = detnoise.normal((10,), seed=seed ^ reference_brownian.TREE_KEY_TWEAK, stream=0, dtype=torch.float64)
    w = detnoise.BrownianTree(1.0, 1.0 + length, (10,), seed=seed, dtype=torch.float64)(1.0, 1.0 + length)
    assert_bits_equal(w, 2.0 * z0)


def test_tree_key_differs_from_every_derivation_tweak() -> None:
    tweaks = {0, 0x299F31D0A4093822, 0xEC4E6C89082EFA98, reference_brownian.TREE_KEY_TWEAK}
    assert len(tweaks) == 4


# ---- invariances ----------------------------------------------------------------------------------


def test_same_query_after_different_histories_gives_identical_bits() -> None:
    rng = random.Random(3)
    fresh = detnoise.BrownianTree(0.0, 10.0, (64,), seed=8, tol=1e-4)(2.5, 7.25)
    for _ in range(3):
        tree = detnoise.BrownianTree(0.0, 10.0, (64,), seed=8, tol=1e-4)
        for _ in range(rng.randrange(1, 12)):  # fills and evicts the tree's point cache
            tree(rng.uniform(0, 10), rng.uniform(0, 10))
        assert_bits_equal(tree(2.5, 7.25), fresh, "after history")
        assert_bits_equal(tree(2.5, 7.25), fresh, "repeated (cached points)")


def test_threads_sharing_one_tree_get_the_values_of_fresh_trees() -> None:
    from concurrent.futures import ThreadPoolExecutor

    queries = [(i / 20, (i + 3) / 20) for i in range(16)]
    expected = [detnoise.BrownianTree(0.0, 1.0, (3000,), seed=4, tol=1e-4)(s, t) for s, t in queries]
    shared = detnoise.BrownianTree(0.0, 1.0, (3000,), seed=4, tol=1e-4)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda q: shared(*q), queries * 3))
    for index, values in enumerate(results):
        assert_bits_equal(values, expected[index % len(queries)], f"query {index}")


def test_reversed_query_is_the_exact_negation_and_equal_times_give_zeros() -> None:
    tree = detnoise.BrownianTree(0.0, 1.0, (100,), seed=1)
    assert torch.equal(tree(0.2, 0.6), -tree(0.6, 0.2))
    zero = tree(0.4, 0.4)
    assert torch.equal(zero, torch.zeros(100)) and not torch.signbit(zero).any()


@pytest.mark.parametrize("dtype", list(DTYPES))
def test_batched_rows_equal_single_trees(dtype: str) -> None:
    seeds = [5, 0, 2**64 - 1]
    batch = detnoise.BrownianTree(0.0, 3.0, (3, 2, 5), seed=seeds, tol=1e-3, dtype=DTYPES[dtype])
    singles = [detnoise.BrownianTree(0.0, 3.0, (2, 5), seed=s, tol=1e-3, dtype=DTYPES[dtype]) for s in seeds]
    for s, t in [(0.5, 1.5), (0.0, 3.0), (2.9, 0.1)]:
        rows = batch(s, t)
        for row, single in enumerate(singles):
            assert_bits_equal(rows[row], single(s, t), f"row {row}")


def test_batch_of_more_than_32_rows() -> None:
    seeds = list(range(40))  # the native request carries 32 rows; the binding splits larger batches
    batch = detnoise.BrownianTree(0.0, 1.0, (40, 3), seed=seeds, tol=0.01)(0.2, 0.9)
    for row in (0, 31, 32, 39):
        assert_bits_equal(batch[row], detnoise.BrownianTree(0.0, 1.0, (3,), seed=row, tol=0.01)(0.2, 0.9), f"row {row}")


def test_thread_count_does_not_change_values() -> None:
    previous = detnoise.get_num_threads()
    try:
        values = []
        for threads in (1, 2, 3):
            detnoise.set_num_threads(threads)
            values.append(detnoise.BrownianTree(0.0, 1.0, (4, 70000), seed=list(range(4)), tol=1e-3)(0.1, 0.8))
    finally:
        detnoise.set_num_threads(previous)
    assert_bits_equal(values[1], values[0]) and assert_bits_equal(values[2], values[0])


# ---- generators -------------------------------------------------------------------------------------


def test_detnoise_generator_gives_one_block_as_the_tree_seed() -> None:
    g = detnoise.Generator(seed=42)
    g.offset = 7
    tree = detnoise.BrownianTree(0.0, 1.0, (6,), generator=g, tol=0.1)
    assert g.offset == 8
    expected_seed = reference_brownian.tree_seed_from_block(42, 0, 7)
    assert tree.seeds == [expected_seed]
    assert_bits_equal(tree(0.1, 0.6), detnoise.BrownianTree(0.0, 1.0, (6,), seed=expected_seed, tol=0.1)(0.1, 0.6))


def test_torch_generators_and_the_default_generator_repeat_after_manual_seed() -> None:
    a = detnoise.BrownianTree(0.0, 1.0, (6,), generator=torch.Generator().manual_seed(3))(0.0, 1.0)
    b = detnoise.BrownianTree(0.0, 1.0, (6,), generator=torch.Generator().manual_seed(3))(0.0, 1.0)
    assert torch.equal(a, b)
    torch.manual_seed(11)
    first = detnoise.BrownianTree(0.0, 1.0, (6,))
    second = detnoise.BrownianTree(0.0, 1.0, (6,))
    torch.manual_seed(11)
    again = detnoise.BrownianTree(0.0, 1.0, (6,))
    assert first.seeds == again.seeds and first.seeds != second.seeds


def test_list_of_generators_rows_equal_single_generator_trees() -> None:
    batch = detnoise.BrownianTree(0.0, 1.0, (2, 5), generator=[detnoise.Generator(seed=s) for s in (1, 2)])
    for row, s in enumerate((1, 2)):
        single = detnoise.BrownianTree(0.0, 1.0, (5,), generator=detnoise.Generator(seed=s))
        assert_bits_equal(batch(0.3, 0.4)[row], single(0.3, 0.4))


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        (dict(t0=1.0, t1=1.0), ValueError),
        (dict(t0=0.0, t1=float("inf")), ValueError),
        (dict(tol=0.0), ValueError),
        (dict(tol=1e-30), ValueError),
        (dict(dtype=torch.int32), TypeError),
        (dict(shape=(3, 2), seed=[1, 2]), ValueError),
        (dict(seed=1, generator="g"), ValueError),
        (dict(shape=(2, 2), generator=["a", "b"]), TypeError),
        (dict(seed=2**64), ValueError),
        (dict(seed=1.5), TypeError),
    ],
)
def test_bad_input_raises_and_leaves_the_generator_alone(kwargs, error) -> None:
    arguments = dict(t0=0.0, t1=1.0, shape=(4,), tol=1e-3)
    arguments.update(kwargs)
    g = detnoise.Generator(seed=0)
    if "seed" not in kwargs and "generator" not in kwargs:
        arguments["generator"] = g
    shape = arguments.pop("shape")
    with pytest.raises(error):
        detnoise.BrownianTree(arguments.pop("t0"), arguments.pop("t1"), shape, **arguments)
    assert g.offset == 0


def test_queries_outside_the_interval_raise() -> None:
    tree = detnoise.BrownianTree(0.0, 1.0, (2,), seed=0)
    with pytest.raises(ValueError, match="outside"):
        tree(-0.1, 0.5)
    with pytest.raises(ValueError, match="outside"):
        tree(0.5, math.nextafter(1.0, 2.0))
    with pytest.raises(TypeError):
        tree("0.1", 0.5)


def test_tensor_template_gives_shape_dtype_and_device() -> None:
    x = torch.zeros(2, 3, dtype=torch.float64)
    w = detnoise.BrownianTree(0.0, 1.0, x, seed=0)(0.0, 0.5)
    assert w.shape == x.shape and w.dtype == torch.float64 and w.device == x.device


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_sixteen_bit_increments_are_the_float32_increments_rounded(dtype: str) -> None:
    wide = detnoise.BrownianTree(0.0, 1.0, (1000,), seed=4, tol=1e-3)(0.1, 0.35)
    narrow = detnoise.BrownianTree(0.0, 1.0, (1000,), seed=4, tol=1e-3, dtype=DTYPES[dtype])(0.1, 0.35)
    assert_bits_equal(narrow, wide.to(DTYPES[dtype]))


# ---- statistics (>= 10^6 elements) ----------------------------------------------------------------

N_STAT = 1 << 20


@pytest.fixture(scope="module")
def stat_tree() -> detnoise.BrownianTree:
    return detnoise.BrownianTree(0.0, 2.0, (N_STAT,), seed=2024, tol=1e-4, dtype=torch.float64)


def test_increments_are_normal_with_variance_t_minus_s(stat_tree) -> None:
    for s, t in [(0.0, 2.0), (0.3, 0.9), (1.23456, 1.3)]:  # dyadic and not, long and short
        w = stat_tree(s, t).numpy() / math.sqrt(t - s)
        assert scipy_stats.kstest(w, "norm").pvalue > 1e-3, (s, t)
        assert abs(w.mean()) < 5 / math.sqrt(N_STAT)
        # Var of a sample variance of N(0, 1) is 2 / N.
        assert abs(w.var() - 1.0) < 5 * math.sqrt(2 / N_STAT), (s, t, w.var())


def test_disjoint_increments_are_uncorrelated(stat_tree) -> None:
    a, b, c, d = stat_tree(0.1, 0.5).numpy(), stat_tree(0.5, 0.55).numpy(), stat_tree(0.6, 1.9).numpy(), stat_tree(1.9, 2.0).numpy()
    for x, y in [(a, b), (b, c), (a, c), (c, d)]:
        assert abs(scipy_stats.pearsonr(x, y).statistic) < 5 / math.sqrt(N_STAT)


@pytest.mark.parametrize(("dtype", "precision"), [("float32", 24), ("float64", 53)])
def test_additivity_up_to_the_stated_rounding(dtype: str, precision: int) -> None:
    tree = detnoise.BrownianTree(0.0, 1.0, (N_STAT,), seed=6, tol=1e-5, dtype=DTYPES[dtype])
    a, b, c = 0.1, 0.4321, 0.9
    x, y, z = tree(a, b).numpy(), tree(b, c).numpy(), tree(a, c).numpy()
    total = x + y
    bound = 2.0**-precision * (np.abs(x) + np.abs(y) + np.abs(z) + np.abs(total))
    assert np.all(np.abs(z.astype(np.float64) - total.astype(np.float64)) <= bound)
    assert np.any(z != total)  # the bound is about rounding, which does occur


def test_bridge_interior_point_has_the_bridge_mean_and_variance(stat_tree) -> None:
    a, m, b = 0.5, 0.8, 1.5
    w_a, w_m, w_b = stat_tree(0.0, a).numpy(), stat_tree(0.0, m).numpy(), stat_tree(0.0, b).numpy()
    bridge_mean = w_a + (m - a) / (b - a) * (w_b - w_a)
    bridge_var = (m - a) * (b - m) / (b - a)
    residual = (w_m - bridge_mean) / math.sqrt(bridge_var)
    assert scipy_stats.kstest(residual, "norm").pvalue > 1e-3
    assert abs(residual.var() - 1.0) < 5 * math.sqrt(2 / N_STAT)
    assert abs(scipy_stats.pearsonr(residual, w_b - w_a).statistic) < 5 / math.sqrt(N_STAT)
    assert abs(scipy_stats.pearsonr(residual, w_a).statistic) < 5 / math.sqrt(N_STAT)


def test_leaf_interpolation_variance_deficit_is_as_stated() -> None:
    """Inside a leaf the path is linear (SPEC §9.6): Var W(t0, t) = t - t0 - theta(1 - theta) leaf."""
    tree = detnoise.BrownianTree(0.0, 1.0, (N_STAT,), seed=9, tol=0.25, dtype=torch.float64)  # leaves of 0.25
    w = tree(0.0, 0.125).numpy()  # the middle of the first leaf: 0.125 - 0.25 * 0.25 = 0.0625
    assert abs(w.var() / 0.0625 - 1.0) < 5 * math.sqrt(2 / N_STAT)


def test_check_can_fail_if_the_kernel_used_a_different_node() -> None:
    """The reference comparison is sensitive to one node's stream: a tree whose key is off by one
    bit differs everywhere."""
    ref = reference_brownian.Tree(0.0, 1.0, 0.1, 1, 8, "float32").increment(0.2, 0.7)
    other = detnoise.BrownianTree(0.0, 1.0, (8,), seed=1 ^ 1, tol=0.1)(0.2, 0.7)
    assert np.all(raw_bits(other) != raw_bits(ref))
    assert reference.normal(4, "float32", 1).tolist() != reference.normal(4, "float32", 1 ^ reference_brownian.TREE_KEY_TWEAK).tolist()


def test_cli_sde_prints_the_fingerprint_of_a_tree_increment(capsys) -> None:
    from detnoise import cli
    from detnoise.fingerprint import fingerprint

    assert cli.main(["sde", "--seed", "3", "--shape", "2,3", "--s", "1.0", "--t", "2.0"]) == 0
    expected = fingerprint(detnoise.BrownianTree(0.0292, 14.6146, (2, 3), seed=3, tol=1e-6)(1.0, 2.0))
    assert expected in capsys.readouterr().out


# ---- where values stop being finite (SPEC §9.1, §9.5) and devices that cannot run (issue 17) -----------

_F32_MAX_LENGTH = 2.0**240


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_float32_compute_trees_at_the_length_bound_equal_the_reference(dtype: str, cpu_path) -> None:
    # At L = 2^240 every W is below 2^125 (SPEC §9.1), so the kernel and the text agree bit for bit;
    # float16 increments overflow to +-inf there, by §6's narrowing.
    length = _F32_MAX_LENGTH
    tree = detnoise.BrownianTree(0.0, length, (37,), seed=11, tol=length / 8, dtype=DTYPES[dtype])
    ref = reference_brownian.Tree(0.0, length, length / 8, 11, 37, dtype)
    check_queries(tree, ref, [(0.0, length * 0.3), (length * 0.3, length), (length * 0.55, length * 0.125)])
    w = tree(0.0, length).float()
    assert torch.isfinite(w).all() if dtype != "float16" else torch.isinf(w).all()


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_float32_compute_trees_above_the_length_bound_are_refused_before_the_generator_moves(dtype: str) -> None:
    above = math.nextafter(_F32_MAX_LENGTH, math.inf)
    g = detnoise.Generator(seed=0)
    with pytest.raises(ValueError, match=r"2\*\*240"):
        detnoise.BrownianTree(0.0, above, (4,), generator=g, tol=above / 4, dtype=DTYPES[dtype])
    assert g.offset == 0
    with pytest.raises(ValueError, match=r"2\*\*240"):
        detnoise.BrownianTree(-1e77, 1e77, (4,), seed=0, tol=1e77, dtype=DTYPES[dtype])
    with pytest.raises(ValueError):
        reference_brownian.Tree(0.0, above, above / 4, 0, 4, dtype)
    # torch.float32 default dtype reaches the same check through the diffusers drop-in.
    with pytest.raises(ValueError, match=r"2\*\*240"):
        detnoise.BatchedBrownianTree(torch.zeros(2, 3, dtype=DTYPES[dtype]), 0.0, 1e77, seed=[1, 2], tol=1e77)


@pytest.mark.parametrize("length", [math.nextafter(_F32_MAX_LENGTH, math.inf), 1e300, 1.7e308])
def test_float64_trees_take_any_finite_length_and_equal_the_reference(length: float, cpu_path) -> None:
    tree = detnoise.BrownianTree(0.0, length, (5,), seed=3, tol=length / 4, dtype=torch.float64)
    ref = reference_brownian.Tree(0.0, length, length / 4, 3, 5, "float64")
    check_queries(tree, ref, [(0.0, length * 0.7), (length, length * 0.3)])
    assert torch.isfinite(tree(0.0, length)).all()


def test_float16_increments_that_overflow_are_infinities_as_the_reference_says(cpu_path) -> None:
    # Increments near 2^16 straddle float16's overflow threshold (65520): both sides occur.
    tree = detnoise.BrownianTree(0.0, 2.0**32, (64,), seed=5, tol=2.0**30, dtype=torch.float16)
    ref = reference_brownian.Tree(0.0, 2.0**32, 2.0**30, 5, 64, "float16")
    check_queries(tree, ref, [(0.0, 2.0**32), (2.0**31, 2.0**30)])
    w = tree(0.0, 2.0**32)
    assert torch.isinf(w).any() and torch.isfinite(w).any()


def _unusable_device_cases() -> list[str]:
    cases = []
    if not (detnoise.built_with_cuda() and torch.cuda.is_available()):
        cases += ["cuda", "cuda:1"]
    if not (hasattr(torch, "xpu") and torch.xpu.is_available()):
        cases.append("xpu")
    return cases


@pytest.mark.parametrize("device", _unusable_device_cases())
def test_a_tree_on_a_device_that_cannot_run_is_refused_when_built(device: str) -> None:
    g = detnoise.Generator(seed=0)
    with pytest.raises(RuntimeError, match="BrownianTree: cannot"):
        detnoise.BrownianTree(0.0, 1.0, (4,), generator=g, device=device)
    assert g.offset == 0
    with pytest.raises(RuntimeError, match="BrownianTree: cannot"):
        detnoise.BrownianTree(0.0, 1.0, torch.zeros(2), seed=0, device=device)


@pytest.mark.skipif(detnoise.built_with_cuda() and torch.cuda.is_available(), reason="CUDA can run here")
def test_cuda_tree_refusal_names_the_fix_in_a_fresh_process() -> None:
    import subprocess
    import sys

    code = (
        "import detnoise\n"
        "try:\n"
        "    detnoise.BrownianTree(0.0, 1.0, (2,), seed=0, device='cuda')\n"
        "except RuntimeError as error:\n"
        "    print('refused:', error)\n"
        "else:\n"
        "    print('accepted')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.startswith("refused: BrownianTree: cannot compute on cuda"), result.stdout + result.stderr
    assert "install" in result.stdout or "nvidia-smi" in result.stdout or "reinstall" in result.stdout


@pytest.mark.parametrize(
    "make",
    [
        lambda x: detnoise.BatchedBrownianTree(x, 1.0, 1.0),
        lambda x: detnoise.BatchedBrownianTree(x, 0.0, float("nan")),
        lambda x: detnoise.BatchedBrownianTree(x.half(), 0.0, 1e77, tol=1e77),
        lambda x: detnoise.BrownianTreeNoiseSampler(x, float("nan"), 2.0),
        lambda x: detnoise.BrownianTreeNoiseSampler(x, 2.0, 2.0),
    ],
)
def test_refused_drop_ins_leave_the_default_generator_alone(make) -> None:
    # With seed=None the drop-ins take their seed from torch's default generator; a refused tree must
    # not have taken it (it used to be drawn before the tree checked its interval).
    torch.manual_seed(0)
    state = torch.get_rng_state()
    with pytest.raises(ValueError):
        make(torch.zeros(2, 3))
    assert torch.equal(torch.get_rng_state(), state)
