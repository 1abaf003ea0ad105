"""Brownian tree queries: detnoise against torchsde (through diffusers' BatchedBrownianTree), one run.

Issue 11 targets: per query on an SDXL latent (1,4,128,128) float32, CPU >= 10x faster than
torchsde.BrownianInterval through diffusers' wrapper; CUDA <= 5x one torch.randn of that shape.
The queries are the ones DPMSolverSDEScheduler makes in a 25-step Karras schedule (sigma 14.6 to
0.0292): (sigma_k, sigma_mid) then (sigma_k, sigma_k+1) per step, on a fresh tree per repeat. Also
timed: a single query on a fresh tree (no reusable end point) and one torch.randn.

Usage: python benchmarks/brownian_speed.py [cpu|cuda] [repeats]
Prints a table and writes benchmarks/results/brownian_speed_<device>.json.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch

import detnoise
from detnoise import brownian

SHAPE = (1, 4, 128, 128)


def karras_sigmas(steps: int, sigma_min: float = 0.0292, sigma_max: float = 14.6146, rho: float = 7.0) -> list[float]:
    ramp = [i / (steps - 1) for i in range(steps)]
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return [(hi + r * (lo - hi)) ** rho for r in ramp]


def sampler_queries(steps: int = 25) -> list[tuple[float, float]]:
    sigmas = karras_sigmas(steps)
    queries = []
    for sigma, sigma_next in zip(sigmas, sigmas[1:]):
        mid = math.sqrt(sigma * sigma_next)  # DPM-Solver-SDE's midpoint: exp of the mean of -log sigma
        queries += [(sigma, mid), (sigma, sigma_next)]
    return queries


def timed(function, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    function()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def summary_ms(samples: list[float], per: int = 1) -> dict[str, float]:
    values = sorted(s * 1e3 / per for s in samples)
    return {"median": statistics.median(values), "min": values[0], "max": values[-1],
            "q1": values[len(values) // 4], "q3": values[(3 * len(values)) // 4]}


def main() -> int:
    from diffusers.schedulers.scheduling_dpmsolver_sde import BatchedBrownianTree as TorchsdeTree

    device = torch.device(sys.argv[1] if len(sys.argv) > 1 else ("cuda" if torch.cuda.is_available() else "cpu"))
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 15
    threads = torch.get_num_threads()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({threads} threads)"
    x = torch.zeros(SHAPE, device=device)
    queries = sampler_queries()
    sigmas = karras_sigmas(25)
    lo, hi = min(sigmas), max(sigmas)

    def run_sequence(cls) -> None:
        tree = cls(x, lo, hi, seed=0)
        for s, t in queries:
            tree(s, t)

    def run_single(cls) -> None:
        cls(x, lo, hi, seed=0)(queries[10][0], queries[10][1])

    results: dict[str, dict[str, float]] = {}
    for label, cls in (("torchsde", TorchsdeTree), ("detnoise", brownian.BatchedBrownianTree)):
        run_sequence(cls)  # warm-up
        results[f"{label}_sampler_query"] = summary_ms([timed(lambda: run_sequence(cls), device) for _ in range(repeats)],
                                                       per=len(queries))
        results[f"{label}_fresh_tree_query"] = summary_ms([timed(lambda: run_single(cls), device) for _ in range(repeats)])
    generator = torch.Generator(device=device).manual_seed(0)
    results["torch_randn"] = summary_ms([timed(lambda: torch.randn(SHAPE, generator=generator, device=device), device)
                                         for _ in range(max(repeats, 50))])
    depth = brownian.BatchedBrownianTree(x, lo, hi, seed=0).tree.depth
    ratios = {
        "sampler_query_speedup_vs_torchsde": results["torchsde_sampler_query"]["median"] / results["detnoise_sampler_query"]["median"],
        "fresh_query_speedup_vs_torchsde": results["torchsde_fresh_tree_query"]["median"] / results["detnoise_fresh_tree_query"]["median"],
        "sampler_query_over_torch_randn": results["detnoise_sampler_query"]["median"] / results["torch_randn"]["median"],
    }
    print(f"device: {name}; torch {torch.__version__}; shape {SHAPE} float32; tol 1e-6 (tree depth {depth}); "
          f"{len(queries)} sampler queries per repeat; {repeats} repeats")
    print(f"{'timing (ms)':28} {'median':>8} {'q1':>8} {'q3':>8} {'min':>8} {'max':>8}")
    for key, row in results.items():
        print(f"{key:28} {row['median']:8.3f} {row['q1']:8.3f} {row['q3']:8.3f} {row['min']:8.3f} {row['max']:8.3f}")
    for key, value in ratios.items():
        print(f"{key:36} {value:8.2f}")
    out = Path(__file__).parent / "results" / f"brownian_speed_{device.type}_{threads}_threads.json"
    out.write_text(json.dumps({"device": name, "threads": threads, "torch": torch.__version__, "shape": list(SHAPE),
                               "depth": depth, "queries_per_repeat": len(queries), "repeats": repeats,
                               "results_ms": results, "ratios": ratios}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
