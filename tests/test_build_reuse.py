"""One build per checkout (issue 18): a second `pip install` of the same checkout recompiles nothing
that did not change, and a change still recompiles.

pip builds in a new isolated environment each time (pybind11 at a new temporary path), and
scikit-build-core then deletes <build>/CMakeCache.txt and <build>/CMakeFiles before configuring.
These tests do the same by hand with two copies of pybind11 standing for two isolated environments
(cmake/detnoise_stable_paths.cmake says how the build copes). They need cmake, a C++ compiler and
pybind11 (the test extra), not nvcc: the CUDA targets sit beside the others in csrc/CMakeLists.txt.
And before nvcc starts, CMake names the architectures it compiles and roughly how long that takes
(cmake/detnoise_build_estimate.cmake, run alone).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
cmake = shutil.which("cmake")
needs_cmake = pytest.mark.skipif(cmake is None or shutil.which("c++") is None, reason="needs cmake and a C++ compiler")


def isolated_environment(tmp_path: Path, name: str) -> Path:
    """A copy of pybind11 at a path of its own, as pip's build isolation makes; its CMake folder."""
    pybind11 = pytest.importorskip("pybind11", reason="pybind11 (the test extra) gives the build its CMake files")
    package = Path(pybind11.__file__).resolve().parent
    copy = tmp_path / name / "site-packages" / "pybind11"
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy / "share" / "cmake" / "pybind11"


def configure(source: Path, build: Path, pybind11_dir: Path) -> list[dict[str, str]]:
    """What scikit-build-core does for a new isolated environment, then CMake; the compile commands."""
    (build / "CMakeCache.txt").unlink(missing_ok=True)
    shutil.rmtree(build / "CMakeFiles", ignore_errors=True)
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []  # scikit-build-core's choice where it can
    subprocess.run([cmake, "-S", str(source), "-B", str(build), *generator, "-DSKBUILD_PROJECT_NAME=detnoise", "-DDETNOISE_CUDA=OFF",
                    "-DCMAKE_BUILD_TYPE=Release", f"-Dpybind11_DIR={pybind11_dir}", f"-DPython_EXECUTABLE={sys.executable}",
                    "-DCMAKE_EXPORT_COMPILE_COMMANDS=ON"], check=True, capture_output=True, text=True, timeout=600)
    return json.loads((build / "compile_commands.json").read_text())


@needs_cmake
def test_compile_commands_do_not_depend_on_the_isolated_environment(tmp_path: Path) -> None:
    build = tmp_path / "build"
    first = configure(ROOT, build, isolated_environment(tmp_path, "env-a"))
    second = configure(ROOT, build, isolated_environment(tmp_path, "env-b"))
    assert {entry["file"] for entry in first} >= {str(ROOT / "csrc" / "bindings.cpp"), str(ROOT / "csrc" / "cpu" / "fill_cpu.cpp")}
    assert second == first, "a new isolated environment changed a compile command: ninja would recompile it"
    assert not [entry["command"] for entry in first if "env-a" in entry["command"]], "a command names the isolated environment"
    # scikit-build-core deletes <build>/CMakeFiles for each new environment: no object may live there.
    outputs = [Path(entry["directory"], output_of(entry["command"])).resolve() for entry in first]
    inside = [str(path) for path in outputs if path.is_relative_to((build / "CMakeFiles").resolve())]
    assert inside == [], f"objects that a new isolated environment deletes: {inside}"


def output_of(command: str) -> str:
    """The object a compile command writes (its -o argument; older CMake's compile_commands.json
    has no "output" field)."""
    words = shlex.split(command)
    return words[words.index("-o") + 1]


ELEVEN = "75-real;80-real;86-real;87-real;88-real;89-real;90-real;100-real;103-real;110-real;120"


def announcement(architectures: str, cores: int, native: bool = False) -> str:
    """The line cmake/detnoise_build_estimate.cmake prints before nvcc starts, run alone."""
    script = ROOT / "cmake" / "detnoise_build_estimate.cmake"
    done = subprocess.run([cmake, f"-DARCHITECTURES={architectures}", f"-DCORES={cores}", f"-DNATIVE={'ON' if native else 'OFF'}",
                           "-P", str(script)], capture_output=True, text=True, timeout=60, check=True)
    return done.stdout


@pytest.mark.skipif(cmake is None, reason="needs cmake")
def test_the_build_says_what_nvcc_compiles_and_roughly_how_long() -> None:
    every = announcement(ELEVEN, 2)
    assert "CUDA kernels for 11 architectures (75-real, 80-real, 86-real, 87-real, 88-real, 89-real, 90-real, 100-real, " \
           "103-real, 110-real, 120)" in every, every
    assert re.search(r"compiling them takes about \d+ s on 2 cores", every), every
    assert "CMAKE_CUDA_ARCHITECTURES=native" in every  # how to build less
    mine = announcement("90", 1, native=True)
    assert "CUDA kernels for 1 architecture (90)" in mine and "on 1 core " in mine and "=native" not in mine, mine
    assert "about 2 minutes" in announcement(";".join(f"{arch}-real" for arch in range(40)), 2)
    # Said where the user sees it: at configure time, before the targets that nvcc compiles.
    top = (ROOT / "CMakeLists.txt").read_text()
    assert -1 < top.index("detnoise_announce_cuda_build(") < top.index("add_subdirectory(csrc)")


def build_tree(tmp_path: Path) -> Path:
    """A copy of what the build reads, so that a header can be changed without touching the checkout."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("CMakeLists.txt", "csrc", "cmake"):
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy2)(ROOT / name, source / name)
    return source


def objects(build: Path) -> dict[str, int]:
    return {str(path.relative_to(build)): path.stat().st_mtime_ns for path in build.rglob("*.o")}


@pytest.mark.slow
@needs_cmake
def test_a_second_install_recompiles_only_what_changed(tmp_path: Path) -> None:
    """Builds the CPU extension, resets as for a new isolated environment, builds again: nothing is
    recompiled. Then a header changes: exactly the objects that include it are."""
    source = build_tree(tmp_path)
    build = tmp_path / "build"
    jobs = ["--parallel", str(os.cpu_count() or 1)]
    configure(source, build, isolated_environment(tmp_path, "env-a"))
    subprocess.run([cmake, "--build", str(build), *jobs], check=True, capture_output=True, text=True, timeout=1200)
    built = objects(build)
    assert any(name.endswith("bindings.cpp.o") for name in built) and len(built) >= 5, built

    configure(source, build, isolated_environment(tmp_path, "env-b"))
    subprocess.run([cmake, "--build", str(build), *jobs], check=True, capture_output=True, text=True, timeout=1200)
    assert objects(build) == built, "the second build recompiled unchanged sources"

    # thread_pool.h: read by the thread pool and the two CPU launchers, not by the fill paths.
    header = source / "csrc" / "cpu" / "thread_pool.h"
    header.write_text(header.read_text() + "\n// changed\n")
    configure(source, build, isolated_environment(tmp_path, "env-c"))
    subprocess.run([cmake, "--build", str(build), *jobs], check=True, capture_output=True, text=True, timeout=1200)
    rebuilt = {Path(name).name for name, stamp in objects(build).items() if stamp != built[name]}
    assert rebuilt >= {"thread_pool.cpp.o", "fill_cpu.cpp.o", "brownian_cpu.cpp.o"}, rebuilt
    assert not rebuilt & {"path_baseline.cpp.o", "path_avx2.cpp.o"}, rebuilt
