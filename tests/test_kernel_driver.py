"""The CUDA kernels' own code, run on the CPU (issue 12 item 3): tests/native/kernel_driver.cpp
includes the per-thread bodies of csrc/cuda/kernel_bodies.h and executes them for every simulated
thread of the launch shapes of 1, 108 (A100), 132 (H100/H200) and 170 (B200-class) SMs, the grid cap
and a single small CTA. Every kind and dtype, whole draws from element 0 and elsewhere (past 2^32,
offsets near 2^64), draws larger than one grid, rows batches of 1/95/96/97 rows with partial last
blocks, strided slices (contiguous-row and per-element paths) and the graph-safe offset read from
memory are compared bit for bit with the CPU launcher, and every output element must be written
exactly once (nothing outside the output). The same binary runs csrc/cuda/launch_context.h against a
scripted CUDA runtime: device restore, error attribution, error messages, SM-count cache (issue 14
items 4, 5, 6, 8, 10). No GPU or CUDA toolkit is needed: g++ only.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from test_native_driver import AVX2_SOURCE, EXACT, INCLUDES, REQUIRED, ROOT, SOURCES

DRIVER = ROOT / "tests" / "native" / "kernel_driver.cpp"


@pytest.fixture(scope="module")
def kernel_driver(tmp_path_factory) -> Path:
    if shutil.which("g++") is None:
        if REQUIRED:
            pytest.fail("g++ not installed but DETNOISE_REQUIRE_TOOLCHAINS=1")
        pytest.skip("g++ not installed")
    build = tmp_path_factory.mktemp("kernel_driver")
    common = ["g++", *EXACT, "-O2", "-Wall", "-Werror", *INCLUDES]
    avx2 = build / "path_avx2.o"
    subprocess.run([*common, "-mavx2", "-mno-fma", "-Wno-psabi", "-c", str(AVX2_SOURCE), "-o", str(avx2)],
                   check=True, capture_output=True, text=True, timeout=600)
    binary = build / "kernel_driver"
    cpu_sources = [str(source) for source in SOURCES if source.name != "digest_driver.cpp"]
    subprocess.run([*common, str(DRIVER), *cpu_sources, str(avx2), "-o", str(binary)],
                   check=True, capture_output=True, text=True, timeout=600)
    return binary


def _run(binary: Path, mode: str) -> str:
    completed = subprocess.run([str(binary), mode], capture_output=True, text=True, timeout=600)
    failures = [line for line in completed.stdout.splitlines() if line.startswith("FAIL")]
    assert completed.returncode == 0 and not failures, "\n".join(failures[:20]) + completed.stderr[-2000:]
    return completed.stdout


def test_kernel_bodies_equal_the_cpu_launcher_over_launch_shapes(kernel_driver: Path) -> None:
    summary = _run(kernel_driver, "kernels").splitlines()[-1]
    launches = int(summary.split()[1])
    assert launches > 1500, summary  # the case table was not cut short


def test_launch_context_logic_against_a_scripted_runtime(kernel_driver: Path) -> None:
    summary = _run(kernel_driver, "context").splitlines()[-1]
    assert summary.startswith("context:") and int(summary.split()[1]) >= 19, summary
