"""Static checks of what the compilers emit: no fused multiply-add, IEEE division and square root.

Bit-identity between the CPU, CUDA and the reference rests on each float operation being rounded
once, as written (SPEC §8). These tests read the CUDA kernel's PTX, so they need nvcc, not a GPU.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
nvcc = shutil.which("nvcc")


def exact_cuda_flags() -> list[str]:
    """The flag list CMakeLists.txt gives nvcc (one definition, read rather than restated)."""
    match = re.search(r"set\(detnoise_exact_cuda_flags ([^)]*)\)", (ROOT / "CMakeLists.txt").read_text())
    assert match, "CMakeLists.txt no longer defines detnoise_exact_cuda_flags"
    return match.group(1).split()


@pytest.fixture(scope="module")
def kernel_ptx(tmp_path_factory) -> str:
    if nvcc is None:
        pytest.skip("no nvcc on PATH")
    out = tmp_path_factory.mktemp("ptx") / "fill_cuda.ptx"
    command = [
        nvcc, "--ptx", "-arch=compute_90", "-std=c++17", "-O3", *exact_cuda_flags(), f"-I{ROOT / 'csrc' / 'include'}", f"-I{ROOT / 'csrc'}", str(ROOT / "csrc" / "cuda" / "fill_cuda.cu"),
        "-o", str(out),
    ]
    subprocess.run(command, check=True, capture_output=True, timeout=300)
    return out.read_text()


def test_kernels_were_emitted(kernel_ptx: str) -> None:
    entries = re.findall(r"\.entry\s+(\S+)\(", kernel_ptx)
    # bits + 4 uniform + 4 normal transforms: whole draws (also graph-safe), batches of rows, strided slices
    assert sum("fill_kernel" in name for name in entries) == 9
    assert sum("fill_rows_kernel" in name for name in entries) == 9
    assert sum("fill_strided_kernel" in name for name in entries) == 9


def unrounded_float_arithmetic(ptx: str) -> list[str]:
    """Float add/sub/mul without an explicit rounding modifier: the PTX ISA lets ptxas contract
    those into an fma, and forbids it for `.rn` ones."""
    operations = re.findall(r"\b((?:add|sub|mul)(?:\.\w+)*\.f(?:32|64))\b", ptx)
    assert operations, "no float arithmetic found: the PTX was not read"
    return [op for op in operations if "rn" not in op.split(".")]


def test_every_float_add_sub_mul_rounds_explicitly(kernel_ptx: str) -> None:
    unrounded = unrounded_float_arithmetic(kernel_ptx)
    assert unrounded == [], f"{len(unrounded)} float add/sub/mul without .rn, e.g. {unrounded[:3]}"


def test_no_fused_multiply_add_in_float_code(kernel_ptx: str) -> None:
    fused = re.findall(r"\b(?:fma|mad)\.(?:rn\.|rz\.|rm\.|rp\.)?(?:ftz\.)?f(?:32|64)\b", kernel_ptx)
    assert fused == [], f"{len(fused)} fused float operations, e.g. {fused[:3]}"


def test_division_and_sqrt_are_ieee(kernel_ptx: str) -> None:
    assert re.search(r"\bdiv\.rn\.f32\b", kernel_ptx)
    assert re.search(r"\bdiv\.rn\.f64\b", kernel_ptx)
    assert re.search(r"\bsqrt\.rn\.f32\b", kernel_ptx)
    assert re.search(r"\bsqrt\.rn\.f64\b", kernel_ptx)
    assert not re.search(r"\b(?:div|sqrt)\.(?:approx|full)\.", kernel_ptx)
    assert not re.search(r"\.ftz\.f32\b", kernel_ptx)


def test_int_to_float_conversions_round_to_nearest(kernel_ptx: str) -> None:
    conversions = re.findall(r"\bcvt\.(r\w+)\.f(?:32|64)\.[su](?:32|64)\b", kernel_ptx)
    assert conversions and set(conversions) == {"rn"}


def test_the_check_can_fail(tmp_path) -> None:
    """Without --fmad=false nvcc does contract: the pattern above would catch it."""
    if nvcc is None:
        pytest.skip("no nvcc on PATH")
    source = tmp_path / "contract.cu"
    source.write_text("__global__ void k(float* x) { x[0] = x[1] * x[2] + x[3]; }\n")
    out = tmp_path / "contract.ptx"
    subprocess.run([nvcc, "--ptx", "-arch=compute_90", str(source), "-o", str(out)], check=True, capture_output=True, timeout=120)
    assert re.search(r"\bfma\.rn\.f32\b", out.read_text())
    # and a lone mul or add comes out without `.rn`, which the rounding check above would flag
    source.write_text("__global__ void k(float* x) { x[0] = x[1] * x[2]; x[4] = x[5] + x[6]; }\n")
    subprocess.run([nvcc, "--ptx", "-arch=compute_90", str(source), "-o", str(out)], check=True, capture_output=True, timeout=120)
    assert len(unrounded_float_arithmetic(out.read_text())) == 2


def test_cmake_warns_when_nvcc_and_torch_cuda_majors_differ() -> None:
    """The build-time half of the driver rule (cmake/detnoise_driver_check.cmake, run alone)."""
    cmake = shutil.which("cmake")
    if cmake is None:
        pytest.skip("no cmake on PATH")
    script = ROOT / "cmake" / "detnoise_driver_check.cmake"

    def warning(nvcc_version: str, torch_cuda: str) -> str:
        done = subprocess.run([cmake, f"-DNVCC_VERSION={nvcc_version}", f"-DTORCH_CUDA={torch_cuda}", "-P", str(script)],
                              capture_output=True, text=True, timeout=60, check=True)
        return done.stderr

    mismatch = warning("13.0.88", "12.8")
    assert "CMake Warning" in mismatch and "CUDA 12.8" in mismatch and "CUDA 12.x toolkit" in mismatch
    assert warning("13.0.88", "13.0") == ""
    assert warning("12.8.93", "12.6") == ""
    assert warning("13.0.88", "") == ""  # no torch, or a CPU-only torch: nothing to compare


def test_build_info_lists_the_built_architectures() -> None:
    import detnoise
    from detnoise import _native

    info = detnoise.build_info()
    if not info["cuda_built"]:
        assert _native.cuda_architectures() == [] and "cuda_architectures" not in info
        return
    architectures = info["cuda_architectures"]
    assert architectures and all(re.fullmatch(r"\d+(?:-real|-virtual)?|native", arch) for arch in architectures), architectures
    assert re.fullmatch(r"\d+\.\d+", str(info["cuda_runtime"]))
