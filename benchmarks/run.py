"""Side-by-side noise benchmark: detnoise against torch, numpy, diffusers, jax and torch.func.

One process, one device at a time, the same output tensors: throughput for flat sizes from 16K to
256M elements, typical latent shapes and thread counts, ratios against torch.randn, the issue's
targets, and (with --memory) peak memory per draw. Writes benchmarks/results/run_<device>.json and a
throughput-versus-size plot run_<device>.png.

Timing (detnoise.timing.compare): the peers of one case run side by side, a group of calls of each in
turn per repeat, 15 repeats; the table shows the median rate and the interquartile range, with the
thread count on each row. "plain" peers make a new tensor per call (what most code does: it pays
for the new memory's first touch); "out=" peers write into one kept buffer. CUDA timings
synchronise once per group.

    python benchmarks/run.py --device cpu            # this machine
    python benchmarks/run.py --device cuda --quick   # what benchmarks/gpu_check.sh runs
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

import detnoise
from detnoise.timing import compare

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


def peers(device: str) -> dict[str, Callable]:
    """name -> make(shape, dtype) returning a zero-argument draw, or None where unsupported."""
    out: dict[str, Callable] = {}

    def detnoise_out(shape, dtype):
        buffer = torch.empty(shape, dtype=dtype, device=device)
        g = detnoise.Generator(device, seed=0)
        return lambda: detnoise.randn(shape, generator=g, out=buffer)

    def detnoise_plain(shape, dtype):
        g = detnoise.Generator(device, seed=0)
        return lambda: detnoise.randn(shape, generator=g, dtype=dtype, device=device)

    def torch_out(shape, dtype):
        buffer = torch.empty(shape, dtype=dtype, device=device)
        g = torch.Generator(device).manual_seed(0)
        return lambda: torch.randn(shape, generator=g, out=buffer)

    def torch_plain(shape, dtype):
        g = torch.Generator(device).manual_seed(0)
        return lambda: torch.randn(shape, generator=g, dtype=dtype, device=device)

    out[DETNOISE_OUT] = detnoise_out
    out[DETNOISE_PLAIN] = detnoise_plain
    out[torch_name(device, "out=")] = torch_out
    out[torch_name(device, "plain")] = torch_plain

    if device == "cpu":
        def numpy_peer(shape, dtype):
            if dtype not in (torch.float32, torch.float64):
                return None
            rng = np.random.Generator(np.random.PCG64(0))
            buffer = np.empty(shape, dtype=np.float32 if dtype == torch.float32 else np.float64)
            return lambda: rng.standard_normal(out=buffer, dtype=buffer.dtype)

        out["numpy PCG64 out="] = numpy_peer

    try:
        from diffusers.utils import torch_utils

        original = torch_utils.randn_tensor

        def diffusers_peer(shape, dtype):
            g = torch.Generator().manual_seed(0)
            return lambda: original(shape, generator=g, device=torch.device(device), dtype=dtype)

        out["diffusers default (cpu gen) plain"] = diffusers_peer
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

        out["jax.random.normal plain"] = jax_peer
    except ImportError:
        pass

    if device == "cuda":
        try:
            from torch.func import _random as stateless

            def stateless_peer(shape, dtype):
                key = stateless.key(0, device=torch.device(device))
                return lambda: stateless.normal(key, *shape, dtype=dtype)

            out["torch.func._random.normal plain"] = stateless_peer
        except ImportError:
            pass
    return out


DETNOISE_OUT = "detnoise out="
DETNOISE_PLAIN = "detnoise plain"


def torch_name(device: str, form: str) -> str:
    return f"torch.randn ({device} gen) {form}"


def measure(device: str, cases: list[tuple[str, tuple[int, ...], str]], threads: list[int]) -> list[dict]:
    """Each case: every peer side by side (detnoise.timing.compare), rates in G elements/s."""
    rows = []
    makers = peers(device)
    for thread_count in threads:
        if device == "cpu":
            torch.set_num_threads(thread_count)
            detnoise.set_num_threads(thread_count)
        for label, shape, dtype_name in cases:
            numel = int(np.prod(shape))
            row = {"case": label, "shape": list(shape), "numel": numel, "dtype": dtype_name,
                   "threads": thread_count if device == "cpu" else None, "gps": {}, "gps_iqr": {}}
            draws = {}
            for name, make in makers.items():
                try:
                    draw = make(shape, DTYPES[dtype_name])
                except (RuntimeError, NotImplementedError, TypeError, ValueError):
                    draw = None
                if draw is not None:
                    draws[name] = draw
            try:
                timings = compare(draws, device, min_repeat_s=0.01)
            except (RuntimeError, NotImplementedError, MemoryError) as error:
                row["error"] = str(error)[:200]
                timings = {}
            for name, timing in timings.items():
                row["gps"][name] = numel / timing.median_s / 1e9
                row["gps_iqr"][name] = [numel / timing.q3_s / 1e9, numel / timing.q1_s / 1e9]
            del draws
            rows.append(row)
            threads_text = f"t={thread_count}" if device == "cpu" else ""
            print(f"{label:28} {dtype_name:8} {threads_text}", flush=True)
            for name, rate in row["gps"].items():
                low, high = row["gps_iqr"][name]
                print(f"    {name:36} {rate:7.3f} G/s (IQR {low:.3f}-{high:.3f})", flush=True)
            for form, ours in (("out=", DETNOISE_OUT), ("plain", DETNOISE_PLAIN)):
                base = row["gps"].get(torch_name(device, form))
                if base and row["gps"].get(ours):
                    print(f"    {ours} / torch.randn {form}: {row['gps'][ours] / base:.2f}x", flush=True)
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
    interquartile range over ``calls`` single calls, the two peers alternating call by call. This
    is what a pipeline pays for a small latent's noise."""
    torch_gen = torch.Generator(device).manual_seed(0)
    ours = detnoise.Generator(device, seed=0)
    draws = {
        "torch.randn": lambda: torch.randn(shape, generator=torch_gen, device=device),
        "detnoise": lambda: detnoise.randn(shape, generator=ours, device=device),
    }
    for draw in draws.values():
        for _ in range(50):
            draw()
    sync(device)
    times: dict[str, list[float]] = {name: [] for name in draws}
    for _ in range(calls):
        for name, draw in draws.items():
            start = time.perf_counter()
            draw()
            sync(device)
            times[name].append(time.perf_counter() - start)
    result: dict = {"shape": list(shape), "calls": calls, "device": device,
                    "threads": torch.get_num_threads() if device == "cpu" else None}
    for name, values in times.items():
        q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
        result[name] = {"median_us": median * 1e6, "q1_us": q1 * 1e6, "q3_us": q3 * 1e6}
        print(f"one plain call {list(shape)} float32 on {device}: {name:12} median {median * 1e6:7.2f} us "
              f"(IQR {q1 * 1e6:.2f}-{q3 * 1e6:.2f}, {calls} calls, with synchronisation)")
    return result


def first_touch(numel: int = 1 << 24, threads: list[int] | None = None) -> list[dict]:
    """CPU only: a plain float32 draw with and without huge-page advice for its new output, against
    out= into a kept buffer and torch's plain call, side by side, for each thread count."""
    from detnoise import _core

    rows = []
    saved = _core.huge_page_advice()
    for thread_count in threads or [1]:
        torch.set_num_threads(thread_count)
        detnoise.set_num_threads(thread_count)
        generator = detnoise.Generator(seed=0)
        buffer = torch.empty(numel)

        def plain(advice: bool):
            def draw():
                _core.set_huge_page_advice(advice)
                return detnoise.randn(numel, generator=generator)
            return draw

        try:
            timings = compare({
                "detnoise out=": lambda: detnoise.randn(numel, generator=generator, out=buffer),
                "detnoise plain, huge-page advice": plain(True),
                "detnoise plain, no advice": plain(False),
                "torch.randn plain": lambda: torch.randn(numel),
            }, "cpu", min_repeat_s=0)
        finally:
            _core.set_huge_page_advice(saved)
        out_rate = numel / timings["detnoise out="].median_s
        print(f"first touch, float32 {numel} elements, {thread_count} thread(s), {_thp_mode()}:")
        row = {"numel": numel, "threads": thread_count, "thp": _thp_mode(), "gps": {}, "gps_iqr": {}}
        for name, timing in timings.items():
            rate = numel / timing.median_s
            row["gps"][name] = rate / 1e9
            row["gps_iqr"][name] = [numel / timing.q3_s / 1e9, numel / timing.q1_s / 1e9]
            print(f"    {name:34} {timing.rate(numel)}   {rate / out_rate:.2f}x detnoise out=")
        rows.append(row)
    return rows


def targets(device: str, rows: list[dict], latency: dict | None = None) -> list[str]:
    def gps(case, dtype, threads, peer):
        for row in rows:
            if row["case"] == case and row["dtype"] == dtype and row["threads"] == threads:
                return row["gps"].get(peer)
        return None

    lines = []
    torch_out = torch_name(device, "out=")
    if device == "cpu":
        one = gps("flat 2^24", "float32", 1, DETNOISE_OUT)
        two = gps("flat 2^24", "float32", 2, DETNOISE_OUT)
        torch_one = gps("flat 2^24", "float32", 1, torch_out)
        bf16 = gps("flat 2^24", "bfloat16", 1, DETNOISE_OUT)
        torch_bf16 = gps("flat 2^24", "bfloat16", 1, torch_out)
        plain_one = gps("flat 2^24", "float32", 1, DETNOISE_PLAIN)
        if one and torch_one:
            lines.append(f"float32 2^24, 1 thread, out=: detnoise/torch = {one / torch_one:.2f} (target >= 3)")
        if one and two:
            lines.append(f"float32 2^24, out=: 2 threads / 1 thread = {two / one:.2f} (target >= 1.8)")
        if bf16 and torch_bf16:
            lines.append(f"bfloat16 2^24, 1 thread, out=: detnoise/torch = {bf16 / torch_bf16:.2f} (target >= 5)")
        if plain_one and one:
            lines.append(f"float32 2^24, 1 thread: detnoise plain / detnoise out= = {plain_one / one:.2f} "
                         f"(target >= 0.8 where transparent huge pages are allowed: {_thp_mode()})")
    else:
        for dtype in ("float32", "bfloat16"):
            ours, theirs = gps("flat 2^28", dtype, None, DETNOISE_OUT), gps("flat 2^28", dtype, None, torch_out)
            if ours and theirs:
                lines.append(f"{dtype} 2^28, out=: detnoise/torch = {ours / theirs:.2f} (target >= 1.5)")
    if latency:
        ours, theirs = latency["detnoise"]["median_us"], latency["torch.randn"]["median_us"]
        where = "" if device == "cuda" else " (the target is for CUDA; CPU shown for reference)"
        lines.append(f"16K float32 plain call, median: detnoise {ours:.2f} us vs torch {theirs:.2f} us: "
                     f"+{ours - theirs:.2f} us (target: <= torch + 5 us){where}")
    return lines


def _thp_mode() -> str:
    """The kernel's transparent-huge-page mode, e.g. "madvise" (Linux), or "unknown"."""
    try:
        text = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return "unknown"
    chosen = re.search(r"\[(\w+)\]", text)
    return f"THP {chosen.group(1)}" if chosen else "unknown"


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
            axis.plot(xs, ys, marker="o", label=f"{peer}{suffix}", linestyle="-" if peer.startswith("detnoise") else "--")
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
    # On the CPU, 2^28 elements (1 GiB per buffer, a dozen peers side by side) would not fit next to
    # other work; 2^26 shows the large-size behaviour already.
    exponents = [14, 18, 20, 24, 26] if args.quick else [14, 16, 18, 20, 22, 24, 26]
    if device == "cuda":
        exponents = [14, 20, 24, 28] if args.quick else [14, 16, 18, 20, 22, 24, 26, 28]
    cases = [(f"flat 2^{e}", (1 << e,), dtype) for e in exponents for dtype in ("float32", "bfloat16")]
    cases += [(f"flat 2^{e}", (1 << e,), "float64") for e in exponents if e <= 24]
    latents = list(LATENTS.items())[: 3 if args.quick else None]
    cases += [(label, shape, dtype) for label, shape in latents for dtype in ("float32", "bfloat16")]
    threads = sorted({1, torch.get_num_threads()}) if device == "cpu" else [None]
    name = torch.cuda.get_device_name(0) if device == "cuda" else f"{platform.processor() or platform.machine()} cpu"
    print(f"detnoise {detnoise.__version__} ({', '.join(detnoise.cpu_paths())}) vs peers on {name}; torch {torch.__version__}")
    print("throughput in G normals/s: median of 15 repeats, peers side by side, interquartile range in brackets; "
          "plain = a new tensor per call, out= = one kept buffer")
    rows = measure(device, cases, threads)
    if device == "cpu":
        torch.set_num_threads(max(threads))
        detnoise.set_num_threads(None)
    touch = first_touch(threads=threads) if device == "cpu" else []
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
               "first_touch": touch, "memory": memory}
    (RESULTS / f"{stem}.json").write_text(json.dumps(payload, indent=1) + "\n")
    plot(rows, RESULTS / f"{stem}.png", f"normal noise throughput, {name}")
    print(f"wrote {RESULTS / (stem + '.json')} and {stem}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
