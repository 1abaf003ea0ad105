"""Every CPU kernel path (scalar, baseline-vectorised, AVX2 where the CPU has it) at every thread
count gives the reference's bits."""

from __future__ import annotations

import pytest
import torch

import detnoise
from detnoise import reference

from conftest import DTYPES, assert_bits_equal

PATHS = detnoise.cpu_paths()
DRAWS = [(kind, name) for kind in ("normal", "uniform") for name in DTYPES] + [("bits", "uint32")]


@pytest.fixture
def restore_settings():
    yield
    detnoise.set_cpu_path("auto")
    detnoise.set_num_threads(None)


def test_paths_listed() -> None:
    assert PATHS[:2] == ["scalar", "baseline"]
    assert detnoise.get_cpu_path() == "auto"


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(("kind", "dtype_name"), DRAWS)
@pytest.mark.parametrize(("n", "offset"), [(1, 0), (257, 3), (4 * 64 * 3 + 5, 2**32 - 100), (100_003, 2**64 - 60_000)])
def test_path_equals_reference(restore_settings, path: str, kind: str, dtype_name: str, n: int, offset: int) -> None:
    detnoise.set_cpu_path(path)
    where = {"seed": 2**63 + 11, "stream": 3, "offset": offset}
    if kind == "bits":
        got, want = detnoise.bits(n, **where), reference.bits(n, 2**63 + 11, 3, offset)
    else:
        got = getattr(detnoise, kind)(n, dtype=DTYPES[dtype_name], **where)
        want = getattr(reference, kind)(n, dtype_name, 2**63 + 11, 3, offset)
    assert_bits_equal(got, want, f"{path} {kind} {dtype_name}")


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("threads", [1, 2, 5])
def test_paths_and_threads_agree_on_large_and_unaligned_draws(restore_settings, path: str, threads: int) -> None:
    detnoise.set_cpu_path("scalar")
    detnoise.set_num_threads(1)
    expected = {name: detnoise.normal(300_001, seed=5, offset=2**32 - 7, dtype=dtype) for name, dtype in DTYPES.items()}
    detnoise.set_cpu_path(path)
    detnoise.set_num_threads(threads)
    for name, dtype in DTYPES.items():
        assert_bits_equal(detnoise.normal(300_001, seed=5, offset=2**32 - 7, dtype=dtype), expected[name], name)
    rows = detnoise.randn_tensor((5, 3, 77, 77), generator=[detnoise.Generator(seed=s) for s in range(5)])
    for row in range(5):
        assert_bits_equal(rows[row], detnoise.normal((3, 77, 77), seed=row), f"row {row}")


def test_bad_path_names(restore_settings) -> None:
    with pytest.raises(ValueError):
        detnoise.set_cpu_path("avx512")
    if "avx2" not in PATHS:
        with pytest.raises(RuntimeError):
            detnoise.set_cpu_path("avx2")


@pytest.mark.parametrize("path", PATHS)
def test_float16_subnormal_and_zero_results(restore_settings, path: str) -> None:
    # The vector float16 narrowing hands lanes below 2^-14 (float16 subnormals and zeros) to the
    # scalar code; this draw has both (uniform zeros are k = 0 words).
    n = 1 << 19
    want_normal = reference.normal(n, "float16", 9, 0, 0)
    want_uniform = reference.uniform(n, "float16", 9, 0, 0)
    subnormal = (want_normal.view("uint16") & 0x7C00) == 0
    assert subnormal.sum() > 5 and (want_uniform == 0).sum() > 5
    detnoise.set_cpu_path(path)
    assert_bits_equal(detnoise.normal(n, seed=9, dtype=torch.float16), want_normal, path)
    assert_bits_equal(detnoise.uniform(n, seed=9, dtype=torch.float16), want_uniform, path)


@pytest.mark.parametrize("path", PATHS)
def test_flush_denormal_mode_changes_nothing(restore_settings, path: str) -> None:
    detnoise.set_cpu_path(path)
    expected = {name: detnoise.normal(4099, seed=1, dtype=dtype) for name, dtype in DTYPES.items()}
    if not torch.set_flush_denormal(True):
        pytest.skip("this CPU cannot flush denormals")
    try:
        for name, dtype in DTYPES.items():
            assert_bits_equal(detnoise.normal(4099, seed=1, dtype=dtype), expected[name], name)
    finally:
        torch.set_flush_denormal(False)
