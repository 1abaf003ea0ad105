"""detnoise.k_diffusion: per-row seeds (SPEC §11), noise samplers and the module patch, checked
against k-diffusion 0.1.1.post1's own samplers and against draws built by hand from the SPEC."""

from __future__ import annotations

import json
import math
import re
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import detnoise
import detnoise.k_diffusion as dk
from detnoise import reference
from conftest import assert_bits_equal, raw_bits
from kdiffusion_support import load_sampling, missing_reason

ROOT = Path(__file__).resolve().parents[1]
MOD64 = 1 << 64
# SPEC §11.2-§11.3, written out here rather than imported, so the test reads the SPEC's numbers.
INITIAL = 0x0074696E693A646B
ANCESTRAL = 0x7365636E613A646B

_REASON = missing_reason()
needs_kdiffusion = pytest.mark.skipif(_REASON is not None, reason=str(_REASON))

ANCESTRAL_SAMPLERS = ["sample_euler_ancestral", "sample_dpm_2_ancestral", "sample_dpmpp_2s_ancestral", "sample_dpm_fast"]
BROWNIAN_SAMPLERS = ["sample_dpmpp_sde", "sample_dpmpp_2m_sde", "sample_dpmpp_3m_sde"]
SAMPLERS = ANCESTRAL_SAMPLERS + BROWNIAN_SAMPLERS
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
SHAPE = (4, 2, 8, 8)
STEPS = 10


@pytest.fixture(scope="module")
def sampling():
    if _REASON is not None:
        pytest.skip(_REASON)
    return load_sampling()


# ---- the hand-built route: SPEC §11 from detnoise.normal / reference ----------------------------------


class HandAncestral:
    """SPEC §11.3 ancestral noise: call k of row j = normal(n, dtype) at (r_j, fold_in(r_j, 0, ANCESTRAL), k*B)."""

    def __init__(self, x: torch.Tensor, row_seeds: list[int]) -> None:
        self.x, self.row_seeds, self.calls = x, row_seeds, 0

    def __call__(self, sigma, sigma_next):
        row_shape = tuple(self.x.shape[1:])
        blocks = math.ceil(math.prod(row_shape) / 4)
        rows = [detnoise.normal(row_shape, seed=r, stream=reference.fold_in_stream(r, 0, ANCESTRAL),
                                offset=self.calls * blocks, dtype=self.x.dtype) for r in self.row_seeds]
        self.calls += 1
        return torch.stack(rows)


def hand_initial(shape, dtype, row_seeds: list[int]) -> torch.Tensor:
    return torch.stack([detnoise.normal(tuple(shape[1:]), seed=r, stream=reference.fold_in_stream(r, 0, INITIAL), dtype=dtype)
                        for r in row_seeds])


def hand_brownian(x, sigmas, row_seeds):
    # SPEC §11.3: row j's tree seed is r_j (§9.5); detnoise.BrownianTreeNoiseSampler with a list of
    # seeds builds exactly those trees (row i = the single tree of seed i).
    return detnoise.BrownianTreeNoiseSampler(x, sigmas[sigmas > 0].min(), sigmas.max(), seed=row_seeds)


def exact_denoiser(x: torch.Tensor, sigma: torch.Tensor, **extra_args) -> torch.Tensor:
    """The exact denoiser of N(0.5, 0.25) data, computed in float32 and returned in x's dtype."""
    s2 = (sigma.to(torch.float32) ** 2).reshape(-1, *([1] * (x.dim() - 1)))
    return ((x.to(torch.float32) * 0.25 + 0.5 * s2) / (0.25 + s2)).to(x.dtype)


def schedule(sampling, dtype) -> torch.Tensor:
    """Karras sigmas in the latent's dtype: k-diffusion's arithmetic then stays in that dtype."""
    return sampling.get_sigmas_karras(STEPS, 0.03, 14.6).to(dtype)


def run(sampling, name: str, x: torch.Tensor, noise_sampler=None) -> torch.Tensor:
    function = getattr(sampling, name)
    if name == "sample_dpm_fast":
        return function(exact_denoiser, x, 0.03, 14.6, STEPS, eta=1.0, noise_sampler=noise_sampler, disable=True)
    return function(exact_denoiser, x, schedule(sampling, x.dtype), noise_sampler=noise_sampler, disable=True)


def start_sigma(sampling, name: str, dtype) -> torch.Tensor:
    return torch.tensor(14.6, dtype=dtype) if name == "sample_dpm_fast" else schedule(sampling, dtype)[0]


def start(sampling, name: str, dtype, seed, rows: int = SHAPE[0]) -> torch.Tensor:
    latent = torch.zeros((rows, *SHAPE[1:]), dtype=dtype)
    return dk.prepare_noise(latent, seed) * start_sigma(sampling, name, dtype)


def detnoise_sampler(sampling, name: str, x: torch.Tensor, seed):
    if name in BROWNIAN_SAMPLERS:
        sigmas = schedule(sampling, x.dtype)
        return dk.BrownianTreeNoiseSampler(x, sigmas[sigmas > 0].min(), sigmas.max(), seed=seed)
    return dk.default_noise_sampler(x, seed=seed)


def hand_sampler(sampling, name: str, x: torch.Tensor, row_seeds):
    if name in BROWNIAN_SAMPLERS:
        return hand_brownian(x, schedule(sampling, x.dtype), row_seeds)
    return HandAncestral(x, row_seeds)


# ---- every stochastic sampler, three dtypes ------------------------------------------------------------


@needs_kdiffusion
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", SAMPLERS)
def test_sampler_repeats_rows_and_matches_spec(sampling, name, dtype):
    seed = 2**64 - 2  # rows 2**64-2, 2**64-1, 0, 1: seed + i crosses 2**64
    rows = [(seed + i) % MOD64 for i in range(SHAPE[0])]
    x = start(sampling, name, dtype, seed)
    assert_bits_equal(x, hand_initial(SHAPE, dtype, rows) * start_sigma(sampling, name, dtype), "initial noise")

    first = run(sampling, name, x.clone(), detnoise_sampler(sampling, name, x, seed))
    again = run(sampling, name, x.clone(), detnoise_sampler(sampling, name, x, seed))
    assert first.dtype == dtype and bool(torch.isfinite(first.float()).all())
    assert_bits_equal(again, first, f"{name} {dtype}: two runs")

    by_hand = run(sampling, name, x.clone(), hand_sampler(sampling, name, x, rows))
    assert_bits_equal(by_hand, first, f"{name} {dtype}: SPEC §11 by hand")

    for row in range(SHAPE[0]):
        single_x = start(sampling, name, dtype, rows[row], rows=1)
        single = run(sampling, name, single_x, detnoise_sampler(sampling, name, single_x, rows[row]))
        assert_bits_equal(first[row : row + 1], single, f"{name} {dtype}: row {row} vs its single run")

    with warnings.catch_warnings():  # torchsde warns about sigma round trips past its interval
        warnings.simplefilter("ignore")
        plain = run(sampling, name, x.clone(), None)  # torch's noise: the detnoise one must differ
    assert not np.array_equal(raw_bits(plain), raw_bits(first))


@needs_kdiffusion
@pytest.mark.parametrize("name", SAMPLERS)
def test_patched_module_defaults(sampling, name):
    """Under patch_k_diffusion a sampler's own noise sampler is detnoise's, seeded from torch's default
    generator: one block at (s, 0, 0) after torch.manual_seed(s) gives the seed (SPEC §11.1, §9.5)."""
    x = start(sampling, name, torch.float32, 5)
    with dk.patch_k_diffusion(sampling):
        torch.manual_seed(123)
        patched = run(sampling, name, x.clone())
        torch.manual_seed(123)
        again = run(sampling, name, x.clone())
    assert sampling.default_noise_sampler is not dk.default_noise_sampler  # released
    assert sampling.BrownianTreeNoiseSampler is not dk.BrownianTreeNoiseSampler
    words = reference.blocks(123, 0, 0, 1)[0]
    base = int(words[0]) | (int(words[1]) << 32)
    by_hand = run(sampling, name, x.clone(), hand_sampler(sampling, name, x, [(base + i) % MOD64 for i in range(SHAPE[0])]))
    assert_bits_equal(again, patched, "patched run repeats")
    assert_bits_equal(patched, by_hand, "patched run = SPEC §11 from torch.manual_seed's block")


@needs_kdiffusion
def test_patched_run_in_a_fresh_process(sampling):
    """The patched default repeats across processes (no hidden state from this one)."""
    code = f"""
import sys, json, torch
sys.path[:0] = [{str(ROOT / 'tests')!r}]
from kdiffusion_support import load_sampling
import detnoise.k_diffusion as dk
from test_k_diffusion import run, start
sampling = load_sampling()
x = start(sampling, "sample_dpmpp_2m_sde", torch.float32, 5)
with dk.patch_k_diffusion(sampling):
    torch.manual_seed(9)
    out = run(sampling, "sample_dpmpp_2m_sde", x)
print(json.dumps(out.view(torch.int32).flatten().tolist()))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    x = start(sampling, "sample_dpmpp_2m_sde", torch.float32, 5)
    with dk.patch_k_diffusion(sampling):
        torch.manual_seed(9)
        here = run(sampling, "sample_dpmpp_2m_sde", x)
    assert json.loads(result.stdout.strip().splitlines()[-1]) == here.view(torch.int32).flatten().tolist()


# ---- no hidden correlation ------------------------------------------------------------------------------


def uncorrelated(first: list[torch.Tensor], second: list[torch.Tensor]) -> bool:
    """|Pearson correlation| of the pooled elements within 4/sqrt(n) of 0."""
    a = torch.cat([t.double().flatten() for t in first])
    b = torch.cat([t.double().flatten() for t in second])
    a, b = a - a.mean(), b - b.mean()
    corr = float((a * b).sum() / (a.norm() * b.norm()))
    return abs(corr) <= 4 / math.sqrt(a.numel())


SEEDS = [17 * k + 3 for k in range(64)]
LATENT = torch.zeros(1, 4, 16, 16)


def test_initial_and_ancestral_noise_are_uncorrelated():
    initial = [dk.prepare_noise(LATENT, s) for s in SEEDS]
    ancestral = [dk.default_noise_sampler(LATENT, seed=s)(14.6, 10.0) for s in SEEDS]
    assert uncorrelated(initial, ancestral)


def test_initial_noise_and_brownian_increment_are_uncorrelated():
    initial = [dk.prepare_noise(LATENT, s) for s in SEEDS]
    brownian = [dk.BrownianTreeNoiseSampler(LATENT, 0.03, 14.6, seed=s, cpu=True)(torch.tensor(14.6), torch.tensor(10.0))
                for s in SEEDS]
    assert uncorrelated(initial, brownian)


@pytest.mark.parametrize("kind", ["ancestral", "brownian"])
def test_step_noise_is_standard_and_uncorrelated_across_steps(kind):
    """Over 64 seeds, each step's noise has E[z^2] = 1 within 5 standard errors (sqrt(2/n)), and
    consecutive steps are uncorrelated (within 4/sqrt(n))."""
    sigmas = [14.6, 6.0, 2.0, 0.5, 0.1, 0.03]
    steps: list[list[torch.Tensor]] = [[] for _ in sigmas[1:]]
    for s in SEEDS:
        if kind == "ancestral":
            sampler = dk.default_noise_sampler(LATENT, seed=s)
        else:
            sampler = dk.BrownianTreeNoiseSampler(LATENT, 0.03, 14.6, seed=s)
        for k, (sigma, sigma_next) in enumerate(zip(sigmas, sigmas[1:])):
            steps[k].append(sampler(torch.tensor(sigma), torch.tensor(sigma_next)))
    n = len(SEEDS) * LATENT.numel()
    for k, values in enumerate(steps):
        second_moment = float(torch.cat([v.double().flatten() for v in values]).square().mean())
        assert abs(second_moment - 1) <= 5 * math.sqrt(2 / n), (k, second_moment)
    for k in range(len(steps) - 1):
        assert uncorrelated(steps[k], steps[k + 1]), k


def test_the_check_fails_for_patch_torch_alone():
    """ComfyUI's GPU branch seeds its ancestral generator with ``seed`` (the CPU one with seed + 1).
    Under patch_torch() alone a generator seeded s gives what the initial noise's CPU generator
    gave, so step 1 repeats the initial noise. Emulated with a CPU generator seeded s."""
    initial, ancestral = [], []
    with detnoise.patch_torch():
        for s in SEEDS:
            initial.append(torch.randn(LATENT.size(), generator=torch.manual_seed(s), device="cpu"))
            cuda_branch = torch.Generator(device="cpu")
            cuda_branch.manual_seed(s)
            ancestral.append(torch.randn(LATENT.size(), generator=cuda_branch))
    assert not uncorrelated(initial, ancestral)
    assert torch.equal(initial[0], ancestral[0])


# ---- seeds, rows, batch indices -------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 2**63, 2**64 - 1])
def test_edge_seeds_follow_the_spec(seed):
    latent = torch.zeros(3, 4, 2, 2)
    rows = [(seed + i) % MOD64 for i in range(3)]
    assert dk.row_seeds(seed, 3) == rows
    assert_bits_equal(dk.prepare_noise(latent, seed), hand_initial(latent.shape, torch.float32, rows), "initial")
    sampler, hand = dk.default_noise_sampler(latent, seed=seed), HandAncestral(latent, rows)
    for call in range(3):
        assert_bits_equal(sampler(1.0, 0.5), hand(1.0, 0.5), f"ancestral call {call}")


def test_seeds_reduce_modulo_2_64():
    latent = torch.zeros(2, 8)
    assert_bits_equal(dk.prepare_noise(latent, 2**64 + 7), dk.prepare_noise(latent, 7), "2**64 + 7 == 7")
    assert_bits_equal(dk.prepare_noise(latent, -1), dk.prepare_noise(latent, 2**64 - 1), "-1 == 2**64 - 1")
    top = dk.prepare_noise(torch.zeros(3, 8), 2**64 - 1)
    assert_bits_equal(top[1:], dk.prepare_noise(latent, 0), "rows past 2**64 wrap to seeds 0, 1")
    for bad in (True, 1.5, "3"):
        with pytest.raises(TypeError):
            dk.prepare_noise(latent, bad)


def test_spec_test_vectors():
    assert reference.fold_in_stream(0, 0, INITIAL) == dk.initial_stream(0) == 0x974EEA92BC6DAC77
    assert reference.fold_in_stream(0, 0, ANCESTRAL) == dk.ancestral_stream(0) == 0xCC709CA7878E1514
    assert dk.INITIAL_NOISE_DOMAIN == INITIAL and dk.ANCESTRAL_NOISE_DOMAIN == ANCESTRAL
    spec = (ROOT / "docs" / "SPEC.md").read_text()
    section = spec[spec.index("### §11.5"):spec.index("## Appendix A")]
    listed = [float.fromhex(v) for v in re.findall(r"-?0x1\.[0-9a-f]+p[+-]\d+", section)]
    initial = reference.normal(4, "float32", 0, dk.initial_stream(0), 0).tolist()
    second_call = reference.normal(4, "float32", 0, dk.ancestral_stream(0), 1).tolist()
    assert listed == initial + second_call
    sampler = dk.default_noise_sampler(torch.zeros(1, 4), seed=0)
    sampler(1.0, 0.5)
    assert sampler(1.0, 0.5)[0].tolist() == second_call
    assert dk.prepare_noise(torch.zeros(1, 4), 0)[0].tolist() == initial


def test_prepare_noise_follows_batch_index():
    latent = torch.zeros(4, 3, 5)
    full = dk.prepare_noise(torch.zeros(6, 3, 5), 42)
    picked = dk.prepare_noise(latent, 42, [5, 0, 5, 2])
    assert_bits_equal(picked, full[[5, 0, 5, 2]], "rows by batch index")
    assert_bits_equal(dk.prepare_noise(latent[:1], 42, np.array([3])), full[3:4], "numpy indices")
    assert dk.prepare_noise(latent, 42).device.type == "cpu"
    with pytest.raises(ValueError, match=">= 0"):
        dk.prepare_noise(latent, 42, [0, -1, 2, 3])


def test_prepare_noise_dtypes_and_nested():
    for dtype in (torch.float16, torch.bfloat16, torch.float64):
        noise = dk.prepare_noise(torch.zeros(2, 6, dtype=dtype), 3)
        assert noise.dtype == dtype
        assert_bits_equal(noise, hand_initial((2, 6), dtype, [3, 4]), str(dtype))
    class NestedLatent:  # the shape of ComfyUI's comfy.nested_tensor.NestedTensor: parts of a latent
        is_nested = True

        def __init__(self, parts):
            self.parts = list(parts)

        def unbind(self):
            return tuple(self.parts)

    noise = dk.prepare_noise(NestedLatent([torch.zeros(2, 3), torch.zeros(2, 5)]), 9)
    assert isinstance(noise, NestedLatent)
    parts = noise.unbind()
    for index, part in enumerate(parts):
        expected = torch.stack([detnoise.normal((part.shape[1],), seed=r, stream=reference.fold_in_stream(
            r, reference.fold_in_stream(r, 0, INITIAL), index)) for r in (9, 10)])
        assert_bits_equal(part, expected, f"nested part {index}")
    with pytest.raises(TypeError, match="dtype"):
        dk.prepare_noise(torch.zeros(2, 3, dtype=torch.int32), 0)


def test_generators_and_lists():
    x = torch.zeros(3, 8)
    g = detnoise.Generator(seed=11)
    words = reference.blocks(11, 0, 0, 1)[0]
    base = int(words[0]) | (int(words[1]) << 32)
    assert dk.row_seeds(g, 3) == [(base + i) % MOD64 for i in range(3)]
    assert g.offset == 1  # one block taken, like a Brownian tree from a generator (SPEC §9.5)
    torch_gen = torch.Generator().manual_seed(11)
    assert dk.row_seeds(torch_gen, 3) == [(base + i) % MOD64 for i in range(3)]
    mixed = dk.row_seeds([5, detnoise.Generator(seed=11), 2**64 + 1], 3)
    assert mixed == [5, base, 1]
    sampler = dk.default_noise_sampler(x, seed=[5, 6, 7])
    assert_bits_equal(sampler(1.0, 0.5), HandAncestral(x, [5, 6, 7])(1.0, 0.5), "list of seeds")
    with pytest.raises(ValueError, match="3 rows"):
        dk.default_noise_sampler(x, seed=[1, 2])


def test_failed_construction_leaves_generator_unchanged():
    g = detnoise.Generator(seed=4)
    x = torch.zeros(2, 8)
    with pytest.raises(ValueError):
        dk.BrownianTreeNoiseSampler(x, 1.0, 1.0, seed=g)  # an empty interval
    with pytest.raises(ValueError):
        dk.default_noise_sampler(x, seed=[g, 1, 2])  # wrong number of rows
    with pytest.raises(TypeError):
        dk.default_noise_sampler(x, seed=[g, None])
    assert g.offset == 0


def test_brownian_rows_and_cpu_flag():
    x = torch.zeros(3, 4, 4)
    batch = dk.BrownianTreeNoiseSampler(x, 0.03, 14.6, seed=2**64 - 1, cpu=True)
    for row, seed in enumerate([2**64 - 1, 0, 1]):
        single = dk.BrownianTreeNoiseSampler(x[:1], 0.03, 14.6, seed=seed, cpu=False)
        assert_bits_equal(batch(torch.tensor(14.6), torch.tensor(3.0))[row], single(torch.tensor(14.6), torch.tensor(3.0))[0], f"row {row}")
    top = detnoise.BrownianTreeNoiseSampler(x[:1], 0.03, 14.6, seed=0, cpu=True)  # ComfyUI's signature
    assert_bits_equal(top(torch.tensor(14.6), torch.tensor(3.0)), dk.BrownianTreeNoiseSampler(x[:1], 0.03, 14.6, seed=0)(torch.tensor(14.6), torch.tensor(3.0)), "batch of one")
    indexed = dk.BrownianTreeNoiseSampler(x[:2], 0.03, 14.6, seed=7, batch_index=[2, 0])
    assert indexed.row_seeds == [9, 7]


def test_patch_k_diffusion_handles():
    import types

    module = types.ModuleType("fake_sampling")
    original = module.default_noise_sampler = lambda x: None
    module.BrownianTreeNoiseSampler = object
    first = dk.patch_k_diffusion(module)
    second = dk.patch_k_diffusion(module)
    assert module.default_noise_sampler is dk.default_noise_sampler
    assert module.BrownianTreeNoiseSampler is dk.BrownianTreeNoiseSampler
    first.release()
    assert module.default_noise_sampler is dk.default_noise_sampler  # second still holds it
    second.release()
    assert module.default_noise_sampler is original and module.BrownianTreeNoiseSampler is object
    handle = dk.patch_k_diffusion(module)
    dk.unpatch_k_diffusion()
    assert module.default_noise_sampler is original
    handle.release()  # after unpatch_k_diffusion: nothing left to do
    with dk.patch_k_diffusion("detnoise.k_diffusion") as own:  # a dotted name works too
        assert own.names == ["default_noise_sampler", "BrownianTreeNoiseSampler"]
    dk.unpatch_k_diffusion(module)  # idempotent
    with pytest.raises(ValueError, match="neither"):
        dk.patch_k_diffusion(types.ModuleType("empty"))
    with pytest.raises(TypeError):
        dk.patch_k_diffusion(42)


def test_import_detnoise_stays_lazy():
    code = ("import sys, detnoise; print('detnoise.k_diffusion' in sys.modules, 'detnoise.comfyui' in sys.modules); "
            "print(detnoise.k_diffusion.prepare_noise is sys.modules['detnoise.k_diffusion'].prepare_noise, "
            "hasattr(detnoise, 'comfyui'), hasattr(detnoise, 'no_such_name'))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env=dict(os.environ), cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False", "True", "True", "False"]


def readme_block() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## k-diffusion and ComfyUI"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@needs_kdiffusion
def test_readme_block_runs_as_written():
    """The README's k-diffusion block, unchanged, in a fresh process where ``import k_diffusion.sampling``
    finds k-diffusion 0.1.1.post1's sampling.py (its package __init__ needs torchvision, clip, wandb)."""
    block = readme_block()
    assert "import k_diffusion.sampling as sampling" in block
    code = f"""
import sys
sys.path[:0] = [{str(ROOT / 'tests')!r}]
from kdiffusion_support import load_sampling
load_sampling("k_diffusion")
namespace = {{}}
exec(compile({block!r}, "README.md", "exec"), namespace)
images = namespace["images"]
print(tuple(images.shape), bool(images.isfinite().all()))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "(4, 4, 64, 64) True"
