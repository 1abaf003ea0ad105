"""The C++ core outside Python: g++, clang++, ASan+UBSan and an aarch64 cross build (under qemu)
all print the reference's digests for a fixed table of draws.

Each build compiles csrc/ and tests/native/digest_driver.cpp directly. A missing compiler skips
its case here; CI sets DETNOISE_REQUIRE_TOOLCHAINS=1 (after installing them) so that it fails.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from detnoise import reference

from conftest import raw_bits

ROOT = Path(__file__).resolve().parents[1]
REQUIRED = os.environ.get("DETNOISE_REQUIRE_TOOLCHAINS") == "1"
SOURCES = [ROOT / "tests" / "native" / "digest_driver.cpp", ROOT / "csrc" / "cpu" / "fill_cpu.cpp",
           ROOT / "csrc" / "cpu" / "path_baseline.cpp", ROOT / "csrc" / "cpu" / "thread_pool.cpp"]
AVX2_SOURCE = ROOT / "csrc" / "cpu" / "path_avx2.cpp"  # x86-64 targets only, with its own flags
EXACT = ["-std=c++17", "-ffp-contract=off", "-fno-fast-math", "-fno-math-errno", "-pthread"]
INCLUDES = [f"-I{ROOT / 'csrc' / 'include'}", f"-I{ROOT / 'csrc'}", f"-I{ROOT / 'tests' / 'native'}"]

# name: (compiler command, extra flags, runner prefix)
BUILDS = {
    "g++": (["g++"], ["-O2"], []),
    "clang++": (["clang++"], ["-O2"], []),
    "g++-asan-ubsan": (["g++"], ["-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"], []),
    "aarch64-g++-qemu": (["aarch64-linux-gnu-g++"], ["-O2", "-static"], ["qemu-aarch64"]),
}

# (kind, dtype, seed, stream, offset, first_element, n): odd sizes, offsets near 2^32 and 2^64,
# element ranges that start mid-block and past 2^32, and one draw large enough for 3 threads.
EXTRA_ROWS = [
    ("normal", "float32", 1, 2, 2**32 - 1, 0, 1),
    ("normal", "float32", 1, 2, 2**32 - 3, 0, 4099),
    ("normal", "float64", 2**64 - 1, 5, 2**64 - 600, 0, 1199),
    ("normal", "bfloat16", 3, 0, 2**64 - 2, 0, 8),
    ("normal", "float16", 3, 0, 2**64 - 1, 1, 3),
    ("uniform", "float64", 9, 9, 2**32, 2**32 + 1, 333),
    ("uniform", "bfloat16", 9, 9, 0, 2**62 + 3, 17),
    ("bits", "uint32", 2**63, 1, 2**64 - 4, 5, 11),
    ("normal", "float32", 42, 0, 7, 0, 300_001),
    ("normal", "float64", 42, 0, 7, 1, 300_001),
]


def _table() -> list[tuple[str, str, int, int, int, int, int]]:
    golden = json.loads((ROOT / "tests" / "data" / "golden_v1.json").read_text())["draws"]
    rows = [(g["kind"], g["dtype"], g["seed"], g["stream"], g["offset"], 0, g["n"]) for g in golden]
    return rows + EXTRA_ROWS


def _expected(row) -> str:
    kind, dtype, seed, stream, offset, first, n = row
    if kind == "bits":
        values = reference.bits(n, seed, stream, offset, first)
    else:
        values = getattr(reference, kind)(n, dtype, seed, stream, offset, first)
    return hashlib.sha256(np.ascontiguousarray(raw_bits(values)).tobytes()).hexdigest()


TABLE = _table()
STDIN = "".join(" ".join(str(field) for field in row) + "\n" for row in TABLE)


@pytest.fixture(scope="module")
def expected_digests() -> list[str]:
    assert sys.byteorder == "little"
    return [_expected(row) for row in TABLE]


def _build(tmp_path: Path, name: str, extra: list[str] | None = None) -> list[str]:
    compiler, flags, runner = BUILDS[name]
    missing = [tool for tool in compiler[:1] + runner[:1] if shutil.which(tool) is None]
    if missing:
        if REQUIRED:
            pytest.fail(f"{name}: {missing} not installed but DETNOISE_REQUIRE_TOOLCHAINS=1")
        pytest.skip(f"{name}: {missing} not installed")
    binary = tmp_path / f"driver-{name}"
    common = [*compiler, *(extra if extra is not None else EXACT), *flags, *INCLUDES]
    objects = []
    sources = [(source, []) for source in SOURCES]
    if "aarch64" not in compiler[0]:
        sources.append((AVX2_SOURCE, ["-mavx2", "-mno-fma"]))  # as CMakeLists.txt builds it
    for source, source_flags in sources:
        obj = tmp_path / f"{name}-{source.stem}.o"
        subprocess.run([*common, *source_flags, "-c", str(source), "-o", str(obj)], check=True, capture_output=True, text=True, timeout=600)
        objects.append(str(obj))
    subprocess.run([*common, *objects, "-o", str(binary)], check=True, capture_output=True, text=True, timeout=600)
    return [*runner, str(binary)]


def _run(command: list[str]) -> list[str]:
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=1", UBSAN_OPTIONS="print_stacktrace=1")
    completed = subprocess.run(command, input=STDIN, capture_output=True, text=True, timeout=600, env=env)
    assert completed.returncode == 0, completed.stderr[-4000:]
    return completed.stdout.split()


# g++ in the default run; the other toolchains (each a full build of the core, aarch64 under qemu)
# under `pytest -m slow`.
@pytest.mark.parametrize("name", [name if name == "g++" else pytest.param(name, marks=pytest.mark.slow) for name in BUILDS])
def test_build_prints_reference_digests(tmp_path: Path, name: str, expected_digests: list[str]) -> None:
    digests = _run(_build(tmp_path, name))
    mismatched = [TABLE[i] for i, (got, want) in enumerate(zip(digests, expected_digests)) if got != want]
    assert len(digests) == len(TABLE)
    assert mismatched == [], f"{name}: {len(mismatched)} draws differ from the reference, e.g. {mismatched[:3]}"


@pytest.mark.slow
def test_contraction_changes_bits_on_aarch64(tmp_path: Path, expected_digests: list[str]) -> None:
    """Why -ffp-contract=off matters: gcc fuses a*b+c into fmadd on aarch64 by default, and the
    digests then differ. This also shows that the comparison above can fail."""
    flags = [flag for flag in EXACT if flag != "-ffp-contract=off"]
    digests = _run(_build(tmp_path, "aarch64-g++-qemu", extra=flags))
    normal_rows = [i for i, row in enumerate(TABLE) if row[0] == "normal"]
    assert any(digests[i] != expected_digests[i] for i in normal_rows)


@pytest.mark.slow
def test_float32_open_uniform_equals_the_spec_for_every_word(tmp_path: Path) -> None:
    """transforms.h builds the Box-Muller u in float32 alone (fast on GPUs without float64
    throughput); all 2^32 words against the spec's float64 form. About 10-20 s."""
    if shutil.which("g++") is None:
        pytest.skip("g++ not installed")
    binary = tmp_path / "uniform_exhaustive"
    source = ROOT / "tests" / "native" / "uniform_exhaustive.cpp"
    subprocess.run(["g++", *EXACT, "-O2", *INCLUDES, str(source), "-o", str(binary)], check=True, capture_output=True,
                   text=True, timeout=600)
    completed = subprocess.run([str(binary)], capture_output=True, text=True, timeout=900)
    assert completed.returncode == 0 and completed.stdout.split()[-2:] == ["differ", "0"], completed.stdout[-2000:]
