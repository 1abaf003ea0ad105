"""Side-by-side noise benchmark: detnoise against torch, numpy, diffusers, jax and torch.func.

One process, one device at a time, the same output tensors: throughput for flat sizes from 16K to
256M elements, typical latent shapes and thread counts, ratios against torch.randn, the issue's
targets, and (with --memory) peak memory per draw. Writes benchmarks/results/run_<device>.json and a
throughput-versus-size plot run_<device>.png. Timing is wall-clock, best of several rounds; CUDA
timings synchronise once per round.

    python benchmarks/run.py --device cpu            # this machine
    python benchmarks/run.py --device cuda --quick   # what benchmarks/gpu_check.sh runs
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

import detnoise

RESULTS = Path(__file__).parent / "results"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float64": torch.float64}
LATENTS = {
    "SD1.5 1x4x64x64": (1, 4, 64, 64),
    "SDXL 1x4x128x128": (1, 4, 128, 128),
    "Flux 1x16x128x128": (1, 16, 128, 128),
    "Wan 1x16x21x60x104": (1, 16, 21, 60, 104),
    "HunyuanVideo 1x16x33x90x160": (1, 16, 33, 90, 160),
    "SD1.5 batch 64": (64, 4, 64, 64),
}


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def best_seconds(draw: Callable[[], object], device: str, budget: float = 0.25, rounds: int = 5) -> float:
    draw()
    sync(device)
    start = time.perf_counter()
    draw()
    sync(device)
    once = max(time.perf_counter() - start, 1e-7)
    repeats = max(1, min(1000, int(budget / rounds / once)))
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(repeats):
            draw()
        sync(device)
        best = min(best, (time.perf_counter() - start) / repeats)
    return best


def peers(device: str) -> dict[str, Callable]:
    """name -> make(shape, dtype) returning a zero-argument draw, or None where unsupported."""
    out: dict[str, Callable] = {}

    def detnoise_peer(shape, dtype):
        buffer = torch.empty(shape, dtype=dtype, device=device)
        g = detnoise.Generator(device, seed=0)
        return lambda: detnoise.randn(shape, generator=g, out=buffer)

    out["detnoise"] = detnoise_peer

    def torch_peer(shape, dtype):
        buffer = torch.empty(shape, dtype=dtype, device=device)
        g = torch.Generator(device).manual_seed(0)
        return lambda: torch.randn(shape, generator=g, out=buffer)

    out[f"torch.randn ({device} gen)"] = torch_peer

    if device == "cpu":
        def numpy_peer(shape, dtype):
            if dtype not in (torch.float32, torch.float64):
                return None
            rng = np.random.Generator(np.random.PCG64(0))
            buffer = np.empty(shape, dtype=np.float32 if dtype == torch.float32 else np.float64)
            return lambda: rng.standard_normal(out=buffer, dtype=buffer.dtype)

        out["numpy PCG64"] = numpy_peer

    try:
        from diffusers.utils import torch_utils

        original = torch_utils.randn_tensor

        def diffusers_peer(shape, dtype):
            g = torch.Generator().manual_seed(0)
            return lambda: original(shape, generator=g, device=torch.device(device), dtype=dtype)

        out["diffusers default (cpu gen)"] = diffusers_peer
    except ImportError:
        pass

    try:
        import jax
        import jax.numpy as jnp

        def jax_peer(shape, dtype):
            jdtype = {torch.float32: jnp.float32, torch.bfloat16: jnp.bfloat16, torch.float64: None}[dtype]
            if jdtype is None:
                return None
            key = jax.random.key(0)
            jax_device = jax.devices("gpu" if device == "cuda" else "cpu")[0]
            key = jax.device_put(key, jax_device)
            return lambda: jax.random.normal(key, shape, jdtype).block_until_ready()

        out["jax.random.normal"] = jax_peer
    except ImportError:
        pass

    if device == "cuda":
        try:
            from torch.func import _random as stateless

            def stateless_peer(shape, dtype):
                key = stateless.key(0, device=torch.device(device))
                return lambda: stateless.normal(key, *shape, dtype=dtype)

            out["torch.func._random.normal"] = stateless_peer
        except ImportError:
            pass
    return out


def measure(device: str, cases: list[tuple[str, tuple[int, ...], str]], threads: list[int]) -> list[dict]:
    rows = []
    makers = peers(device)
    for thread_count in threads:
        if device == "cpu":
            torch.set_num_threads(thread_count)
            detnoise.set_num_threads(thread_count)
        for label, shape, dtype_name in cases:
            numel = int(np.prod(shape))
            row = {"case": label, "shape": list(shape), "numel": numel, "dtype": dtype_name,
                   "threads": thread_count if device == "cpu" else None, "gps": {}}
            for name, make in makers.items():
                try:
                    draw = make(shape, DTYPES[dtype_name])
                except (RuntimeError, NotImplementedError, TypeError, ValueError):
                    draw = None
                if draw is None:
                    continue
                try:
                    row["gps"][name] = numel / best_seconds(draw, device) / 1e9
                except (RuntimeError, NotImplementedError, MemoryError) as error:
                    row["gps"][name] = None
                    row.setdefault("errors", {})[name] = str(error)[:200]
                del draw
            rows.append(row)
            base = row["gps"].get(f"torch.randn ({device} gen)")
            ours = row["gps"]["detnoise"]
            cells = "  ".join(f"{n.split(' ')[0]} {v:7.3f}" for n, v in row["gps"].items() if v)
            ratio = f"{ours / base:5.2f}x torch" if base else ""
            threads_text = f"t={thread_count}" if device == "cpu" else ""
            print(f"{label:28} {dtype_name:8} {threads_text:4} {cells}   {ratio}", flush=True)
    return rows


def memory_rows(device: str, numel: int) -> list[dict]:
    """Peak memory of one float32 draw of ``numel`` elements per peer, beyond the output itself."""
    rows = []
    for name in peers(device):
        if device == "cuda":
            make = peers(device)[name]
            draw = make((numel,), torch.float32)
            if draw is None:
                continue
            torch.cuda.synchronize()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            draw()
            torch.cuda.synchronize()
            extra = torch.cuda.max_memory_allocated() - base
            rows.append({"peer": name, "numel": numel, "peak_growth_bytes": extra, "output_bytes": 4 * numel})
            del draw
        else:
            code = (
                "import sys, torch; sys.path.insert(0, %r); import run; "
                "draw = run.peers('cpu')[%r]((%d,), torch.float32); "
                "status = lambda key: int(next(l.split()[1] for l in open('/proc/self/status') if l.startswith(key))); "
                "before = status('VmRSS:'); open('/proc/self/clear_refs', 'w').write('5'); draw(); "
                "print(status('VmHWM:') - before)"
            ) % (str(Path(__file__).parent), name, numel)
            done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
            if done.returncode == 0 and done.stdout.strip():
                # Growth of resident memory during the draw (peak, reset just before it). Buffers made
                # with out= exist before the draw but are touched only by it, so for those peers the
                # output's own pages count here: the figure to compare with the output size.
                growth = int(done.stdout.split()[-1]) * 1024
                rows.append({"peer": name, "numel": numel, "peak_growth_bytes": growth, "output_bytes": 4 * numel})
    for row in rows:
        print(f"memory: {row['peer']:30} peak grows {row['peak_growth_bytes'] / 2**20:8.1f} MiB during one draw "
              f"(output {row['output_bytes'] / 2**20:.0f} MiB)")
    return rows


def call_latency(device: str, shape: tuple[int, ...] = (1, 4, 64, 64), calls: int = 2000) -> dict:
    """Wall time of one plain call (a new tensor, no out=) with synchronisation, per peer: median and
    best over ``calls`` single calls. This is what a pipeline pays for a small latent's noise."""
    torch_gen = torch.Generator(device).manual_seed(0)
    ours = detnoise.Generator(device, seed=0)
    draws = {
        "torch.randn": lambda: torch.randn(shape, generator=torch_gen, device=device),
        "detnoise": lambda: detnoise.randn(shape, generator=ours, device=device),
    }
    result = {"shape": list(shape), "calls": calls}
    for name, draw in draws.items():
        for _ in range(50):
            draw()
        sync(device)
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            draw()
            sync(device)
            times.append(time.perf_counter() - start)
        times.sort()
        result[name] = {"median_us": times[len(times) // 2] * 1e6, "best_us": times[0] * 1e6}
        print(f"one call {list(shape)} float32: {name:12} median {result[name]['median_us']:7.2f} us, "
              f"best {result[name]['best_us']:7.2f} us (with synchronisation)")
    return result


def targets(device: str, rows: list[dict], latency: dict | None = None) -> list[str]:
    def gps(case, dtype, threads, peer):
        for row in rows:
            if row["case"] == case and row["dtype"] == dtype and row["threads"] == threads:
                return row["gps"].get(peer)
        return None

    lines = []
    if device == "cpu":
        torch_name = "torch.randn (cpu gen)"
        one = gps("flat 2^24", "float32", 1, "detnoise")
        two = gps("flat 2^24", "float32", 2, "detnoise")
        torch_one = gps("flat 2^24", "float32", 1, torch_name)
        bf16 = gps("flat 2^24", "bfloat16", 1, "detnoise")
        torch_bf16 = gps("flat 2^24", "bfloat16", 1, torch_name)
        if one and torch_one:
            lines.append(f"float32 2^24, 1 thread: detnoise/torch = {one / torch_one:.2f} (target >= 3)")
        if one and two:
            lines.append(f"float32 2^24: 2 threads / 1 thread = {two / one:.2f} (target >= 1.8)")
        if bf16 and torch_bf16:
            lines.append(f"bfloat16 2^24, 1 thread: detnoise/torch = {bf16 / torch_bf16:.2f} (target >= 5)")
    else:
        torch_name = "torch.randn (cuda gen)"
        for dtype in ("float32", "bfloat16"):
            ours, theirs = gps("flat 2^28", dtype, None, "detnoise"), gps("flat 2^28", dtype, None, torch_name)
            if ours and theirs:
                lines.append(f"{dtype} 2^28: detnoise/torch = {ours / theirs:.2f} (target >= 1.5)")
    if latency:
        ours, theirs = latency["detnoise"]["median_us"], latency["torch.randn"]["median_us"]
        where = "" if device == "cuda" else " (the target is for CUDA; CPU shown for reference)"
        lines.append(f"16K float32 call, median: detnoise {ours:.2f} us vs torch {theirs:.2f} us: "
                     f"+{ours - theirs:.2f} us (target: <= torch + 5 us){where}")
    return lines


def plot(rows: list[dict], path: Path, title: str) -> None:
    try:
        import matplotlib
    except ImportError:
        print("matplotlib not installed (pip install 'detnoise[bench]'): no plot")
        return

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 5))
    flat = [r for r in rows if r["case"].startswith("flat") and r["dtype"] == "float32"]
    for threads in sorted({r["threads"] for r in flat}, key=lambda t: t or 0):
        subset = sorted((r for r in flat if r["threads"] == threads), key=lambda r: r["numel"])
        for peer in subset[0]["gps"] if subset else []:
            xs = [r["numel"] for r in subset if r["gps"].get(peer)]
            ys = [r["gps"][peer] for r in subset if r["gps"].get(peer)]
            suffix = f", {threads} thr" if threads else ""
            axis.plot(xs, ys, marker="o", label=f"{peer}{suffix}", linestyle="-" if peer == "detnoise" else "--")
    axis.set_xscale("log", base=2)
    axis.set_yscale("log")
    axis.set_xlabel("elements (float32)")
    axis.set_ylabel("G normals / s")
    axis.set_title(title)
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--quick", action="store_true", help="fewer sizes and shapes (minutes become seconds)")
    parser.add_argument("--memory", action="store_true", help="also measure peak memory per draw")
    args = parser.parse_args()
    device = args.device
    if device == "cuda" and not (detnoise.built_with_cuda() and torch.cuda.is_available()):
        print("no usable CUDA device: nothing to measure")
        return 0
    exponents = [14, 18, 20, 24, 26] if args.quick else [14, 16, 18, 20, 22, 24, 26, 28]
    if device == "cuda":
        exponents = [14, 20, 24, 28] if args.quick else exponents
    cases = [(f"flat 2^{e}", (1 << e,), dtype) for e in exponents for dtype in ("float32", "bfloat16")]
    cases += [(f"flat 2^{e}", (1 << e,), "float64") for e in exponents if e <= 24]
    latents = list(LATENTS.items())[: 3 if args.quick else None]
    cases += [(label, shape, dtype) for label, shape in latents for dtype in ("float32", "bfloat16")]
    threads = sorted({1, torch.get_num_threads()}) if device == "cpu" else [None]
    name = torch.cuda.get_device_name(0) if device == "cuda" else f"{platform.processor() or platform.machine()} cpu"
    print(f"detnoise {detnoise.__version__} ({', '.join(detnoise.cpu_paths())}) vs peers on {name}; torch {torch.__version__}")
    print("throughput in G normals/s")
    rows = measure(device, cases, threads)
    if device == "cpu":
        torch.set_num_threads(max(threads))
        detnoise.set_num_threads(None)
    latency = call_latency(device)
    target_lines = targets(device, rows, latency)
    for line in target_lines:
        print("target: " + line)
    memory = memory_rows(device, 1 << 26) if args.memory else []
    RESULTS.mkdir(exist_ok=True)
    stem = f"run_{device}"
    payload = {"device": name, "torch": torch.__version__, "detnoise": detnoise.__version__,
               "cpu_paths": detnoise.cpu_paths(), "rows": rows, "latency": latency, "targets": target_lines,
               "memory": memory}
    (RESULTS / f"{stem}.json").write_text(json.dumps(payload, indent=1) + "\n")
    plot(rows, RESULTS / f"{stem}.png", f"normal noise throughput, {name}")
    print(f"wrote {RESULTS / (stem + '.json')} and {stem}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
