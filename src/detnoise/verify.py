"""``detnoise verify``: a self-check of this install against the spec, in seconds.

Checks the Random123 known answers, the golden digests shipped with the package, the compiled CPU
kernel against the numpy reference on fresh random seeds/streams/offsets/sizes (at 1 and N
threads), and CPU against CUDA where a GPU is present. Prints a table; returns 1 on any mismatch.
"""

from __future__ import annotations

import json
import os
import platform
import random
from dataclasses import dataclass
from importlib import resources

import numpy as np
import torch

from detnoise import _native, reference
from detnoise.determinism import determinism_table
from detnoise.fingerprint import fingerprint

_DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class Check:
    what: str
    where: str
    count: str
    failures: int

    @property
    def ok(self) -> bool:
        return self.failures == 0


def _data(name: str) -> str:
    return (resources.files("detnoise") / "data" / name).read_text()


def _kernel(kind: str, dtype: str, n: int, seed: int, stream: int, offset: int, device: str = "cpu") -> torch.Tensor:
    out = torch.empty(n, dtype=torch.uint32 if kind == "bits" else _DTYPES[dtype], device=device)
    code = {"bits": _native.KIND_BITS, "uniform": _native.KIND_UNIFORM, "normal": _native.KIND_NORMAL}[kind]
    _native.launch(code, out, seed, stream, offset)
    return out


def _reference(kind: str, dtype: str, n: int, seed: int, stream: int, offset: int) -> np.ndarray:
    if kind == "bits":
        return reference.bits(n, seed, stream, offset)
    return getattr(reference, kind)(n, dtype, seed, stream, offset)


def _same_bits(tensor: torch.Tensor, expected: np.ndarray) -> bool:
    got = tensor.detach().cpu().contiguous().view(torch.uint8).numpy()
    return got.tobytes() == np.ascontiguousarray(expected).tobytes()


def check_kats() -> Check:
    failures = total = 0
    for line in _data("kat_vectors.txt").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        words = [int(word, 16) for word in line.split()[2:]]
        counter, key, expected = tuple(words[0:4]), tuple(words[4:6]), tuple(words[6:10])
        total += 1
        failures += _native.philox4x32_10(counter, key) != expected
        failures += reference.philox4x32_10(counter, key) != expected
    return Check("Random123 known answers", "compiled core + numpy reference", f"{total} vectors", failures)


def _with_setting(path: str, threads: int, action):
    """Runs action() with the CPU path and thread count set, restoring both after."""
    previous_path, previous_threads = _native.get_cpu_path(), _native._num_threads
    _native.set_cpu_path(path)
    _native.set_num_threads(threads)
    try:
        return action()
    finally:
        _native.set_cpu_path(previous_path)
        _native.set_num_threads(previous_threads)


def _cpu_settings() -> list[tuple[str, int]]:
    """Every CPU path this machine runs, at 1 thread and at N (>= 2) threads."""
    threads = sorted({1, max(2, _native.get_num_threads())})
    return [(path, count) for path in _native.cpu_paths() for count in threads]


def check_golden(device: str = "cpu") -> Check:
    rows = json.loads(_data("golden_v1.json"))["draws"]
    settings = _cpu_settings() if device == "cpu" else [None]
    failures = values = 0
    for row in rows:
        args = (row["kind"], row["dtype"], row["n"], row["seed"], row["stream"], row["offset"])
        for setting in settings:
            draw = lambda: _kernel(*args, device=device)  # noqa: E731
            tensor = draw() if setting is None else _with_setting(*setting, draw)
            failures += fingerprint(tensor) != row["sha256"]
            values += row["n"]
    where = f"cpu ({_isa()})" if device == "cpu" else _cuda_name(device)
    return Check("golden digests (stream v1)", where, f"{len(rows)} draws, {values:,} values", failures)


def _random_draws(count: int, rng: random.Random) -> list[tuple[str, str, int, int, int, int]]:
    draws = []
    kinds = [("normal", d) for d in _DTYPES] + [("uniform", d) for d in _DTYPES] + [("bits", "uint32")]
    for index in range(count):
        kind, dtype = kinds[index % len(kinds)]
        n = rng.choice([1, 3, 5, rng.randrange(1, 5000), rng.randrange(1, 200_000)])
        offset = rng.choice([0, rng.randrange(2**64 - 2**20), 2**32 - rng.randrange(1, 8), 2**64 - 2**18])
        draws.append((kind, dtype, n, rng.randrange(2**64), rng.choice([0, rng.randrange(2**64)]), offset))
    return draws


def check_random_against_reference(count: int, rng: random.Random) -> Check:
    failures = values = 0
    for kind, dtype, n, seed, stream, offset in _random_draws(count, rng):
        expected = _reference(kind, dtype, n, seed, stream, offset)
        for setting in _cpu_settings():
            tensor = _with_setting(*setting, lambda: _kernel(kind, dtype, n, seed, stream, offset))
            failures += not _same_bits(tensor, expected)
            values += n
    return Check("cpu kernel == numpy reference", f"cpu ({_isa()}), fresh random draws", f"{count} draws, {values:,} values", failures)


def check_cuda_against_cpu(count: int, rng: random.Random, device: str) -> Check:
    failures = values = 0
    for kind, dtype, n, seed, stream, offset in _random_draws(count, rng):
        cpu = _kernel(kind, dtype, n, seed, stream, offset)
        failures += fingerprint(_kernel(kind, dtype, n, seed, stream, offset, device=device)) != fingerprint(cpu)
        values += n
    return Check("cuda kernel == cpu kernel", _cuda_name(device), f"{count} draws, {values:,} values", failures)


def _isa() -> str:
    threads = sorted({1, max(2, _native.get_num_threads())})
    return f"{platform.machine()}, paths {'/'.join(_native.cpu_paths())}, threads {'/'.join(map(str, threads))}"


def _cuda_name(device: str) -> str:
    return f"{device} {torch.cuda.get_device_name(torch.device(device))}"


def run_checks(random_draws: int = 36, seed: int | None = None) -> list[Check]:
    """Every check this machine can run; ``seed`` fixes the random draws (default: fresh entropy).

    Raises ValueError for a negative ``random_draws`` (it would check nothing and still pass)."""
    if isinstance(random_draws, bool) or not isinstance(random_draws, int):
        raise TypeError(f"random_draws must be an int, got {type(random_draws).__name__}")
    if random_draws < 0:
        raise ValueError(f"random_draws must be >= 0, got {random_draws}")
    rng = random.Random(seed if seed is not None else int.from_bytes(os.urandom(8), "little"))
    checks = [check_kats(), check_golden(), check_random_against_reference(random_draws, rng)]
    if _native.built_with_cuda() and torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            device = f"cuda:{index}"
            checks += [check_golden(device), check_cuda_against_cpu(random_draws, rng, device)]
    return checks


def main(random_draws: int = 36, seed: int | None = None) -> int:
    checks = run_checks(random_draws, seed)
    width = max(len(c.what) for c in checks)
    where_width = max(len(c.where) for c in checks)
    print(f"{'check':{width}}  {'where':{where_width}}  {'checked':28}  result")
    for c in checks:
        print(f"{c.what:{width}}  {c.where:{where_width}}  {c.count:28}  {'ok' if c.ok else f'FAILED ({c.failures})'}")
    if not (_native.built_with_cuda() and torch.cuda.is_available()):
        reason = "no CUDA kernels in this build" if not _native.built_with_cuda() else "no CUDA device visible"
        print(f"cpu == cuda: not checked here ({reason})")
    print("torch determinism switches (detnoise.enable_full_determinism() sets all; detnoise's noise needs none):")
    print("\n".join("  " + line for line in determinism_table()))
    failed = [c for c in checks if not c.ok]
    print("all checks passed" if not failed else f"{len(failed)} check(s) FAILED: this install does not reproduce stream v1")
    return 1 if failed else 0
