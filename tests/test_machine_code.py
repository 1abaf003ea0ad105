"""The instructions the GPU will execute, checked (issue 12 item 2): per detnoise kernel and per
built architecture, ptxas fused no multiply and add.

The PTX check (test_build_flags.py) shows that every float add, sub and mul carries `.rn`, which the
PTX ISA forbids ptxas to contract. Here the SASS of every architecture in the installed extension
(read with cuobjdump from the nvidia-cuda-cuobjdump package) must show it:

- FMUL/FADD (plain) = the kernel's PTX mul.rn.f32 / add.rn.f32 + sub.rn.f32 for that architecture;
- DMUL/DADD = mul.rn.f64 / add.rn.f64 + sub.rn.f64, plus those of the f64 division and square-root
  sequences (which use DMUL and DADD themselves);
- every FFMA/DFMA/MUFU (and every other variant of the above: .FTZ, .RM, .RP, .RZ) belongs to the
  sequences the compiler emits for the IEEE division and square root and for 64-bit integer
  division. Their signature is learned per architecture from reference kernels that hold one, then
  two, of each operation and nothing else: the second copy gives the inline part, the first minus
  it the shared subroutine (emitted once per kernel that uses the operation).

A kernel built without --fmad=false must fail the same check (negative control), so the check can
fail. The default run reads one architecture (sm_90, else the oldest built): the references cost
seconds of nvcc per architecture; `pytest -m slow` reads every architecture the extension carries. Needs nvcc and cuobjdump, not a GPU. Without a CUDA build of detnoise it checks sm_90 code
compiled here from the same source and flags.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sysconfig
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from test_build_flags import ROOT, exact_cuda_flags, nvcc

KERNEL_SOURCE = ROOT / "csrc" / "cuda" / "fill_cuda.cu"
INCLUDES = [f"-I{ROOT / 'csrc' / 'include'}", f"-I{ROOT / 'csrc'}"]

# SASS opcodes whose every occurrence must be accounted for (all modifiers, e.g. FMUL.FTZ, apart).
WATCHED = re.compile(r"^(?:FMUL|FADD|FFMA|DMUL|DADD|DFMA|MUFU)\b")

# PTX operations whose SASS sequences may hold watched instructions, and the reference kernel
# body for each (inputs from memory, so nothing is folded).
SEQUENCES = {
    "div.rn.f32": ("float", "x[{a}] / x[{b}]"),
    "sqrt.rn.f32": ("float", "sqrtf(x[{a}])"),
    "div.rn.f64": ("double", "x[{a}] / x[{b}]"),
    "sqrt.rn.f64": ("double", "sqrt(x[{a}])"),
    "div.u64": ("unsigned long long", "x[{a}] / x[{b}]"),
    "rem.u64": ("unsigned long long", "x[{a}] % x[{b}]"),
    "div.u32": ("unsigned int", "x[{a}] / x[{b}]"),
    "rem.u32": ("unsigned int", "x[{a}] % x[{b}]"),
}


def cuda_tool(name: str) -> str | None:
    """A CUDA binary from PATH or from the nvidia-cuda-* wheels (which put it in nvidia/*/bin)."""
    found = shutil.which(name)
    if found:
        return found
    for site in {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}:
        for candidate in sorted(glob.glob(os.path.join(site, "nvidia", "*", "bin", name))):
            if os.access(candidate, os.X_OK):
                return candidate
    return None


cuobjdump = cuda_tool("cuobjdump")
needs_tools = pytest.mark.skipif(nvcc is None or cuobjdump is None,
                                 reason="needs nvcc and cuobjdump (pip install nvidia-cuda-cuobjdump)")


def _run(command: list[str]) -> str:
    return subprocess.run(command, check=True, capture_output=True, text=True, timeout=900).stdout


def sass_by_arch(binary: Path) -> dict[int, dict[str, Counter[str]]]:
    """{sm: {mangled kernel: Counter(opcode with modifiers)}} for every cubin in a binary."""
    return sass_by_arch_text(_run([cuobjdump, "-sass", str(binary)]))


def sass_by_arch_text(text: str) -> dict[int, dict[str, Counter[str]]]:
    """sass_by_arch from cuobjdump's output."""
    result: dict[int, dict[str, Counter[str]]] = {}
    for section in re.split(r"(?m)^\s*code for sm_", text)[1:]:
        arch = int(re.match(r"\d+", section).group())
        kernels = result.setdefault(arch, {})
        for function in re.split(r"Function : ", section)[1:]:
            name = function.split()[0]
            ops: Counter[str] = Counter()
            for match in re.finditer(r"/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P[T0-9]\s+)?([A-Z][A-Z0-9]*(?:\.[A-Z0-9_]+)*)", function):
                ops[match.group(1)] += 1
            kernels[name] = ops
    return result


def ptx_counts(ptx: str) -> dict[str, Counter[str]]:
    """{mangled kernel: Counter of float arithmetic and sequence operations} from PTX text."""
    result = {}
    for name, body in re.findall(r"(?ms)^(?:\.visible\s+)?\.entry\s+(\S+)\((.*?)^}", ptx):
        ops = Counter(re.findall(r"\b((?:mul|add|sub)\.rn\.f(?:32|64)|div\.rn\.f(?:32|64)|sqrt\.rn\.f(?:32|64)"
                                 r"|(?:div|rem)\.u(?:32|64))\b", body))
        result[name] = ops
    return result


def compile_ptx(source: Path, arch: int, flags: list[str], out: Path) -> str:
    _run([nvcc, "--ptx", f"-arch=compute_{arch}", "-std=c++17", "-O3", *flags, *INCLUDES, str(source), "-o", str(out)])
    return out.read_text()


def compile_cubin(source: Path, arch: int, flags: list[str], out: Path) -> Path:
    _run([nvcc, "-cubin", f"-arch=sm_{arch}", "-std=c++17", "-O3", *flags, *INCLUDES, str(source), "-o", str(out)])
    return out


def reference_source() -> str:
    """One kernel per (operation, copies): nothing in it but the operation."""
    lines = ["extern \"C\" {"]
    for op, (ctype, expression) in SEQUENCES.items():
        for copies in (1, 2):
            body = " ".join(f"y[{i}] = {expression.format(a=2 * i, b=2 * i + 1)};" for i in range(copies))
            lines.append(f"__global__ void ref_{op.replace('.', '_')}_{copies}(const {ctype}* x, {ctype}* y) {{ {body} }}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def learn_signatures(sass: dict[str, Counter[str]], ptx: dict[str, Counter[str]]) -> dict[str, tuple[Counter[str], Counter[str]]]:
    """{operation: (watched instructions per use, watched instructions once per kernel that uses it)}.

    nvcc nests sequences (its div.u64 expansion holds a div.u32 fast path), so each reference
    kernel is read after taking off the share of the operations already learned; operations whose
    reference kernels hold fewer other sequences are learned first."""
    def reference(op: str, copies: int) -> str:
        return f"ref_{op.replace('.', '_')}_{copies}"

    def others(op: str) -> set[str]:
        return {other for other in ptx[reference(op, 1)] if other in SEQUENCES and other != op}

    signatures: dict[str, tuple[Counter[str], Counter[str]]] = {}
    for op in sorted(SEQUENCES, key=lambda name: len(others(name))):
        own = []
        for copies in (1, 2):
            name = reference(op, copies)
            assert ptx[name][op] == copies, f"{name}: PTX has {dict(ptx[name])}"
            assert others(op) <= set(signatures), f"{op}: nested sequences {others(op)} not learned first"
            watched = Counter({k: v for k, v in sass[name].items() if WATCHED.match(k)})
            nested = {other: ptx[name][other] for other in others(op)}
            watched.subtract(expected_watched(Counter(nested), signatures))
            own.append(watched)
        per_use = Counter({k: own[1][k] - own[0][k] for k in set(own[0]) | set(own[1])})
        once = Counter({k: own[0][k] - per_use[k] for k in set(own[0]) | set(own[1])})
        assert all(v >= 0 for v in (*per_use.values(), *once.values())), f"{op}: {per_use} {once}"
        signatures[op] = (+per_use, +once)
    return signatures


def expected_watched(ptx: Counter[str], signatures: dict[str, tuple[Counter[str], Counter[str]]]) -> Counter[str]:
    """The watched instructions of a kernel with these PTX counts, if ptxas fused nothing."""
    expected: Counter[str] = Counter({
        "FMUL": ptx["mul.rn.f32"], "FADD": ptx["add.rn.f32"] + ptx["sub.rn.f32"],
        "DMUL": ptx["mul.rn.f64"], "DADD": ptx["add.rn.f64"] + ptx["sub.rn.f64"],
    })
    for op, (per_use, once) in signatures.items():
        if ptx[op]:
            for key, value in per_use.items():
                expected[key] += ptx[op] * value
            for key, value in once.items():
                expected[key] += value
    return +expected


def watched_mismatches(sass: dict[str, Counter[str]], ptx: dict[str, Counter[str]],
                       signatures: dict[str, tuple[Counter[str], Counter[str]]]) -> list[str]:
    """One line per kernel whose watched instructions differ from the unfused expectation."""
    problems = []
    for name, ops in sorted(sass.items()):
        if name not in ptx:
            problems.append(f"{name}: in the SASS but not in the PTX")
            continue
        got = Counter({k: v for k, v in ops.items() if WATCHED.match(k)})
        want = expected_watched(ptx[name], signatures)
        if got != want:
            diff = {k: (got[k], want[k]) for k in sorted(set(got) | set(want)) if got[k] != want[k]}
            problems.append(f"{name}: (SASS, expected) {diff}")
    return problems


def kernel_sources() -> list[Path]:
    return sorted((ROOT / "csrc" / "cuda").glob("*.cu"))


def installed_architectures(binary: Path) -> list[int]:
    """The sm_XY of every cubin the binary carries (cuobjdump -lelf: names only, instant)."""
    return sorted({int(arch) for arch in re.findall(r"\.sm_(\d+)[a-z]?\.cubin", _run([cuobjdump, "-lelf", str(binary)]))})


def read_machine_code(work: Path, every: bool) -> dict[int, dict[str, Counter[str]]]:
    """SASS of the installed extension: every architecture it carries, or only sm_90 (else its
    oldest); without a CUDA build, sm_90 compiled here."""
    if nvcc is None or cuobjdump is None:
        pytest.skip("needs nvcc and cuobjdump (pip install nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm)")
    from detnoise import _core

    if _core.built_with_cuda:
        binary = Path(_core.__file__)
        if every:
            sass = sass_by_arch(binary)
        else:
            built = installed_architectures(binary)
            assert built, "the CUDA build of detnoise carries no SASS"
            arch = 90 if 90 in built else built[0]
            sass = {arch: sass_by_arch_of(binary, arch)}
        assert sass and all(sass.values()), "the CUDA build of detnoise carries no SASS"
        return sass
    merged: dict[str, Counter[str]] = {}
    for source in kernel_sources():
        merged.update(sass_by_arch(compile_cubin(source, 90, exact_cuda_flags(), work / f"{source.stem}.cubin"))[90])
    return {90: merged}


def sass_by_arch_of(binary: Path, arch: int) -> dict[str, Counter[str]]:
    """One architecture's part of sass_by_arch (cuobjdump reads only that cubin)."""
    text = _run([cuobjdump, "-sass", "-arch", f"sm_{arch}", str(binary)])
    return sass_by_arch_text(text).get(arch, {})


def learn_references(architectures: list[int], work: Path) -> dict[int, tuple[dict[str, Counter[str]], dict]]:
    """Per architecture: the detnoise kernels' PTX counts (built with CMake's flags for that
    architecture) and the learned sequence signatures."""
    (work / "reference.cu").write_text(reference_source())

    def one(arch: int) -> tuple[int, tuple[dict[str, Counter[str]], dict]]:
        counts: dict[str, Counter[str]] = {}
        for source in kernel_sources():
            counts.update(ptx_counts(compile_ptx(source, arch, exact_cuda_flags(), work / f"{source.stem}_{arch}.ptx")))
        ref_ptx = ptx_counts(compile_ptx(work / "reference.cu", arch, exact_cuda_flags(), work / f"reference_{arch}.ptx"))
        ref_sass = sass_by_arch(compile_cubin(work / "reference.cu", arch, exact_cuda_flags(), work / f"reference_{arch}.cubin"))[arch]
        return arch, (counts, learn_signatures(ref_sass, ref_ptx))

    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
        return dict(pool.map(one, sorted(architectures)))


# The default run checks one architecture (compiling the references costs seconds per
# architecture); `-m slow` checks every architecture the extension carries.
@pytest.fixture(scope="module")
def one_architecture(tmp_path_factory) -> dict[int, dict[str, Counter[str]]]:
    return read_machine_code(tmp_path_factory.mktemp("sass"), every=False)


@pytest.fixture(scope="module")
def one_architecture_references(one_architecture, tmp_path_factory) -> dict[int, tuple[dict[str, Counter[str]], dict]]:
    return learn_references(list(one_architecture), tmp_path_factory.mktemp("references"))


@pytest.fixture(scope="module")
def machine_code(tmp_path_factory) -> dict[int, dict[str, Counter[str]]]:
    return read_machine_code(tmp_path_factory.mktemp("sass"), every=True)


@pytest.fixture(scope="module")
def references(machine_code, tmp_path_factory) -> dict[int, tuple[dict[str, Counter[str]], dict]]:
    return learn_references(list(machine_code), tmp_path_factory.mktemp("references"))


def assert_no_fused_arithmetic(machine_code, references) -> None:
    problems = []
    for arch, kernels in sorted(machine_code.items()):
        ptx, signatures = references[arch]
        assert sum("fill_kernel" in name for name in kernels) == 9, f"sm_{arch}: fill kernels missing"
        problems += [f"sm_{arch} {line}" for line in watched_mismatches(kernels, ptx, signatures)]
    assert problems == [], "\n".join(problems[:20])


def test_sass_of_one_architecture_has_no_fused_arithmetic(one_architecture, one_architecture_references) -> None:
    assert_no_fused_arithmetic(one_architecture, one_architecture_references)


@pytest.mark.slow
def test_sass_of_every_architecture_has_no_fused_arithmetic(machine_code, references) -> None:
    assert_no_fused_arithmetic(machine_code, references)


@pytest.mark.slow
def test_single_precision_sequences_use_no_plain_fmul_or_fadd(references) -> None:
    """So for float32 the rule is the issue's plain one: FMUL == mul.rn.f32 and FADD == add.rn.f32
    + sub.rn.f32 exactly; every FFMA and MUFU comes from division and square root."""
    for arch, (_, signatures) in references.items():
        for op in ("div.rn.f32", "sqrt.rn.f32"):
            per_use, once = signatures[op]
            assert per_use["FMUL"] == once["FMUL"] == per_use["FADD"] == once["FADD"] == 0, (arch, op)
            assert per_use["FFMA"] > 0 and any(key.startswith("MUFU") for key in per_use), (arch, op, per_use)


def test_the_check_fails_without_fmad_false(one_architecture_references, tmp_path) -> None:
    """Negative control: the same kernels built without --fmad=false lose FMUL/FADD to FFMA."""
    [(arch, (ptx, signatures))] = one_architecture_references.items()
    flags = [flag for flag in exact_cuda_flags() if flag != "--fmad=false"]
    contracted = sass_by_arch(compile_cubin(KERNEL_SOURCE, arch, flags, tmp_path / "contracted.cubin"))[arch]
    problems = watched_mismatches(contracted, ptx, signatures)
    assert problems, "without --fmad=false the SASS check found nothing: it cannot fail"
    normal = next(name for name in contracted if "fill_kernel" in name and "NormalF32" in name)
    exact_fmul = expected_watched(ptx[normal], signatures)["FMUL"]
    assert contracted[normal]["FMUL"] < exact_fmul and contracted[normal]["FFMA"] > expected_watched(ptx[normal], signatures)["FFMA"]
