"""DPM++ 2M SDE noise per step: detnoise.k_diffusion against torchsde through k-diffusion, one thread.

Issue 19 target: on a (1,4,128,128) float32 latent, the noise of one DPM++ 2M SDE step (the
sampler's ``noise_sampler(sigma_i, sigma_i+1)`` call) >= 10x faster with
``detnoise.k_diffusion.BrownianTreeNoiseSampler`` than with k-diffusion 0.1.1.post1's own
``BrownianTreeNoiseSampler`` (torchsde.BrownianTree). One repeat builds a fresh noise sampler and
makes the calls ``sample_dpmpp_2m_sde`` makes in a 25-step Karras schedule (sigma 14.6 to 0.0292,
24 calls: none for the last step to 0); the time per call is the repeat's time / 24. Repeats of the
two alternate, so both see the same machine load. Also timed: the ancestral sampler against
``torch.randn_like`` (k-diffusion's default), per call.

k-diffusion's package __init__ needs torchvision, clip and wandb; if ``import k_diffusion.sampling``
fails, sampling.py is loaded the way the tests load it (tests/kdiffusion_support.py).

Usage: python benchmarks/k_diffusion_speed.py [repeats]
Prints a table and writes benchmarks/results/k_diffusion_speed_cpu_1_thread.json.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

import detnoise
import detnoise.k_diffusion as dk

SHAPE = (1, 4, 128, 128)
STEPS = 25


def load_sampling():
    try:
        import k_diffusion.sampling as sampling

        return sampling
    except ImportError:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from kdiffusion_support import load_sampling as load

        return load()


def summary_ms(samples: list[float], per: int) -> dict[str, float]:
    values = sorted(s * 1e3 / per for s in samples)
    return {"median": statistics.median(values), "min": values[0], "max": values[-1],
            "q1": values[len(values) // 4], "q3": values[(3 * len(values)) // 4]}


def main() -> int:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 9
    torch.set_num_threads(1)
    detnoise.set_num_threads(1)
    sampling = load_sampling()
    sigmas = sampling.get_sigmas_karras(STEPS, 0.0292, 14.6146)
    sigma_min, sigma_max = sigmas[sigmas > 0].min(), sigmas.max()
    calls = [(sigmas[i], sigmas[i + 1]) for i in range(STEPS) if sigmas[i + 1] > 0]
    x = torch.zeros(SHAPE)

    def brownian_repeat(make) -> float:
        start = time.perf_counter()
        noise_sampler = make()
        for sigma, sigma_next in calls:
            noise_sampler(sigma, sigma_next)
        return time.perf_counter() - start

    makers = {
        "torchsde_via_k_diffusion": lambda: sampling.BrownianTreeNoiseSampler(x, sigma_min, sigma_max, seed=0),
        "detnoise_k_diffusion": lambda: dk.BrownianTreeNoiseSampler(x, sigma_min, sigma_max, seed=0),
    }
    samples: dict[str, list[float]] = {name: [] for name in makers}
    for name, make in makers.items():  # warm-up (first-call costs, caches)
        brownian_repeat(make)
    for _ in range(repeats):
        for name, make in makers.items():
            samples[name].append(brownian_repeat(make))

    ancestral = dk.default_noise_sampler(x, seed=0)
    ancestral_samples: dict[str, list[float]] = {"torch_randn_like": [], "detnoise_ancestral": []}
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in calls:
            torch.randn_like(x)
        ancestral_samples["torch_randn_like"].append(time.perf_counter() - start)
        start = time.perf_counter()
        for sigma, sigma_next in calls:
            ancestral(sigma, sigma_next)
        ancestral_samples["detnoise_ancestral"].append(time.perf_counter() - start)

    results = {name: summary_ms(values, len(calls)) for name, values in {**samples, **ancestral_samples}.items()}
    ratios = {
        "brownian_speedup_vs_torchsde": results["torchsde_via_k_diffusion"]["median"] / results["detnoise_k_diffusion"]["median"],
        "ancestral_over_torch_randn_like": results["detnoise_ancestral"]["median"] / results["torch_randn_like"]["median"],
    }
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}"
    print(f"{machine}; torch {torch.__version__}; 1 thread; shape {list(SHAPE)} float32; {repeats} repeats of {len(calls)} calls")
    print(f"{'per call, ms':32s} {'median':>9s} {'q1':>9s} {'q3':>9s} {'min':>9s} {'max':>9s}")
    for key, row in results.items():
        print(f"{key:32s} {row['median']:9.3f} {row['q1']:9.3f} {row['q3']:9.3f} {row['min']:9.3f} {row['max']:9.3f}")
    for key, value in ratios.items():
        print(f"{key}: {value:.1f}")
    out = Path(__file__).parent / "results" / "k_diffusion_speed_cpu_1_thread.json"
    out.write_text(json.dumps({"machine": machine, "threads": 1, "torch": torch.__version__, "shape": list(SHAPE),
                               "repeats": repeats, "calls_per_repeat": len(calls), "results_ms_per_call": results,
                               "ratios": ratios}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
