"""What detnoise's torch-level patch costs, side by side with torch and with detnoise called directly.

Three tables, all measured in one run and printed with medians and spreads:

1. ``functions``: every covered function (``*_like`` forms and ``Tensor.*_`` methods included) at
   sizes from 1 element to an SDXL latent (1, 4, 128, 128): the patched call, the same detnoise
   draw called directly (``detnoise.randn``/``randn_like``/``normal_``/``uniform_`` where detnoise
   has the function, else the kinds layer ``detnoise._kinds`` that the patch calls, given the
   shape, dtype and device of the call's tensor as the patch reads them), and torch's own
   function. Patched and direct calls alternate in batches of about 0.5 ms, each round from a new
   process state (a kept allocation of random size, a random call depth: see ``paired``), for
   ``--seconds`` per row and longer (up to ``--max-seconds``) until the median's 95% confidence
   interval is at most 1 us wide on either side, in ``--processes`` fresh processes (default 3)
   whose samples are pooled per row; the overhead column is the median of the per-batch differences
   (patched - direct), with their interquartile range and that interval. Budget (issue 17): at
   most 5 us. A control row times the same direct draw on both sides (true overhead 0).
2. ``generators``: ``detnoise.randn(4)`` with a plain ``torch.Generator`` against a
   ``detnoise.Generator`` (budget: at most 5 us more).
3. ``first call``: in fresh processes, ``import detnoise``, then the first patched call of each
   function against a warm call (budget: at most 50 ms more).

The old mechanism comparison (rebinding vs a TorchFunctionMode, on non-draw ops and a tiny
StableDiffusionPipeline call) runs with ``--mechanism``.

    python benchmarks/patch_overhead.py [--seconds 2] [--max-seconds 20] [--repeats 41] [--processes 3] [--quick]
        [--only randint,normal] [--sizes "1,SDXL latent"] [--mechanism] [--threads 1 --clock thread]

Writes benchmarks/results/patch_overhead_cpu.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable

import torch
from torch.overrides import TorchFunctionMode

import detnoise
from detnoise import _kinds, torch_patch

BUDGET_US = 5.0  # issue 17: a patched call costs at most this much more than the direct draw
SDXL = (1, 4, 128, 128)
SIZES = {"1": (1,), "64x64": (64, 64), "SDXL latent": SDXL}


def numel(shape: tuple[int, ...]) -> int:
    count = 1
    for dim in shape:
        count *= dim
    return count


# ---- table 1: every covered function -------------------------------------------------------------


def function_cases(shape: tuple[int, ...]) -> dict[str, tuple[Callable, Callable, Callable]]:
    """name -> (patched call, direct detnoise call, torch's own call). The patch must be active
    when the patched call runs; torch's originals are taken before patching."""
    g = detnoise.Generator(seed=1)  # the same generator kind for patched and direct
    tg = torch.Generator().manual_seed(1)
    original = {name: getattr(*torch_patch._owner_and_attribute(name)) for name in torch_patch.PATCHED}
    x = torch.empty(shape)
    n = numel(shape)
    probs = torch.ones(n)
    p = torch.full(shape, 0.5)
    cpu = None  # the kinds layer's device argument: torch's default device
    return {
        "torch.randn": (lambda: torch.randn(shape, generator=g), lambda: detnoise.randn(shape, generator=g),
                        lambda: original["randn"](shape, generator=tg)),
        "torch.rand": (lambda: torch.rand(shape, generator=g), lambda: detnoise.rand(shape, generator=g),
                       lambda: original["rand"](shape, generator=tg)),
        "torch.randint": (lambda: torch.randint(0, 1000, shape, generator=g),
                          lambda: _kinds.integer_values(shape, torch.int64, cpu, g, "randint", 0, 1000),
                          lambda: original["randint"](0, 1000, shape, generator=tg)),
        "torch.randperm": (lambda: torch.randperm(n, generator=g),
                           lambda: _kinds.permutation_values(n, torch.int64, cpu, g, "randperm"),
                           lambda: original["randperm"](n, generator=tg)),
        "torch.normal(m, s, size)": (lambda: torch.normal(0.5, 2.0, shape, generator=g),
                                     lambda: _kinds.normal_values(shape, torch.float32, cpu, g, "normal", 0.5, 2.0),
                                     lambda: original["normal"](0.5, 2.0, shape, generator=tg)),
        "torch.normal(tensor, tensor)": (lambda: torch.normal(x, p, generator=g),
                                         lambda: _kinds.normal_values(tuple(x.shape), x.dtype, x.device, g, "normal", x, p),
                                         lambda: original["normal"](x, p, generator=tg)),
        "torch.bernoulli": (lambda: torch.bernoulli(p, generator=g),
                            lambda: _kinds.bernoulli_values(tuple(p.shape), p.dtype, p.device, g, "bernoulli", p),
                            lambda: original["bernoulli"](p, generator=tg)),
        "torch.multinomial": (lambda: torch.multinomial(probs, 1, generator=g),
                              lambda: _kinds.multinomial_values(probs, 1, False, g, "multinomial"),
                              lambda: original["multinomial"](probs, 1, generator=tg)),
        "torch.randn_like": (lambda: torch.randn_like(x, generator=g), lambda: detnoise.randn_like(x, generator=g),
                             lambda: original["randn_like"](x, generator=tg)),
        "torch.rand_like": (lambda: torch.rand_like(x, generator=g), lambda: detnoise.rand_like(x, generator=g),
                            lambda: original["rand_like"](x, generator=tg)),
        "torch.randint_like": (lambda: torch.randint_like(x, 1000, generator=g),
                               lambda: _kinds.integer_values(tuple(x.shape), x.dtype, x.device, g, "randint_like", 0, 1000),
                               lambda: original["randint_like"](x, 1000, generator=tg)),
        "Tensor.normal_()": (lambda: x.normal_(generator=g), lambda: detnoise.normal_(x, generator=g),
                             lambda: original["Tensor.normal_"](x, generator=tg)),
        "Tensor.normal_(m, s)": (lambda: x.normal_(0.5, 2.0, generator=g), lambda: detnoise.normal_(x, 0.5, 2.0, generator=g),
                                 lambda: original["Tensor.normal_"](x, 0.5, 2.0, generator=tg)),
        "Tensor.uniform_(a, b)": (lambda: x.uniform_(-1.0, 1.0, generator=g),
                                  lambda: detnoise.uniform_(x, -1.0, 1.0, generator=g),
                                  lambda: original["Tensor.uniform_"](x, -1.0, 1.0, generator=tg)),
        "Tensor.random_(a, b)": (lambda: x.random_(0, 1000, generator=g),
                                 lambda: x.copy_(_kinds.integer_values(tuple(x.shape), x.dtype, x.device, g, "random_", 0, 1000)),
                                 lambda: original["Tensor.random_"](x, 0, 1000, generator=tg)),
        "Tensor.bernoulli_(p)": (lambda: x.bernoulli_(0.5, generator=g),
                                 lambda: x.copy_(_kinds.bernoulli_values(tuple(x.shape), x.dtype, x.device, g, "bernoulli_", 0.5)),
                                 lambda: original["Tensor.bernoulli_"](x, 0.5, generator=tg)),
        "Tensor.exponential_()": (lambda: x.exponential_(generator=g),
                                  lambda: x.copy_(_kinds.exponential_values(tuple(x.shape), x.dtype, x.device, g, "exponential_")),
                                  lambda: original["Tensor.exponential_"](x, generator=tg)),
        # The estimator's own error: the same direct draw on both sides, so the true overhead is 0
        # (the draw with the largest per-call noise).
        "control: randint direct twice": (
            lambda: _kinds.integer_values(shape, torch.int64, cpu, g, "randint", 0, 1000),
            lambda: _kinds.integer_values(shape, torch.int64, cpu, g, "randint", 0, 1000),
            lambda: original["randint"](0, 1000, shape, generator=tg)),
    }


CLOCK = time.perf_counter  # --clock thread: time.thread_time (CPU time of this thread; with --threads 1)


def batch(call: Callable[[], Any], inner: int) -> float:
    start = CLOCK()
    for _ in range(inner):
        call()
    return (CLOCK() - start) / inner


def inner_count(call: Callable[[], Any], target_s: float = 2e-3) -> int:
    call()
    estimate = batch(call, 3)
    return max(1, min(2000, int(target_s / max(estimate, 1e-7))))


def quartiles(samples: list[float]) -> tuple[float, float, float]:
    q = statistics.quantiles(samples, n=4, method="inclusive") if len(samples) > 1 else samples * 3
    return q[0], statistics.median(samples), q[2]


def median_interval(samples: list[float]) -> tuple[float, float]:
    """A distribution-free 95% confidence interval of the median: the order statistics
    (n - 1.96 sqrt(n)) / 2 places in from each end (the sign test's interval)."""
    ordered = sorted(samples)
    k = max(0, int((len(ordered) - 1.96 * len(ordered) ** 0.5) / 2))
    return ordered[k], ordered[len(ordered) - 1 - k]


PRECISION_US = 1.0  # a row runs on past --seconds until its median is known to within this


def precise_enough(overhead: list[float]) -> bool:
    low, high = median_interval(overhead)
    median = statistics.median(overhead)
    return max(median - low, high - median) * 1e6 <= PRECISION_US


def at_depth(depth: int, call: Callable[[], Any], inner: int) -> float:
    """batch(call, inner), run ``depth`` Python frames further down the stack."""
    return batch(call, inner) if depth == 0 else at_depth(depth - 1, call, inner)


def paired(patched: Callable[[], Any], direct: Callable[[], Any], own: Callable[[], Any], seconds: float,
           max_seconds: float, min_pairs: int) -> tuple[dict[str, list[float]], int]:
    """Batches of about 0.5 ms (one call at the SDXL latent), patched and direct back to back in
    alternating order, then torch's own; rounds for ``seconds`` (at least ``min_pairs``), then on
    until the median's interval is within PRECISION_US or ``max_seconds`` have passed.

    Each round starts from a new process state: a kept allocation of random size (0-4 MiB) and a
    random call depth (0-15 frames). Without this, a large draw's cost depends on where the
    allocator puts its temporaries (whether glibc returns them to the OS, which the kernel then
    faults and zeroes again) and how the call's frames fall on CPython's frame stack, both fixed
    for a whole row: two empty Python frames before an SDXL multinomial measured -7.6 to +6.2 us
    over the direct draw, with tight intervals, at call depths 0-7 of one process, and the patched
    row from -1.6 to +7.0 us in two rows of another (benchmarks/NOTES.md). Drawn afresh each
    round, that bias becomes round-to-round noise that both sides share, so the rounds are
    independent and the interval, which narrows as 1/sqrt(rounds), covers it."""
    inner = inner_count(direct, 5e-4)
    runs: dict[str, list[float]] = {"patched": [], "direct": [], "torch": [], "overhead": []}
    states = random.Random(0)
    start = time.perf_counter()
    repeat = 0
    while True:
        elapsed = time.perf_counter() - start
        if repeat >= min_pairs and elapsed >= seconds and (
                elapsed >= max_seconds or (repeat % 64 == 0 and precise_enough(runs["overhead"]))):
            break
        padding = torch.empty(states.randrange(4 << 20), dtype=torch.uint8)  # noqa: F841 (kept for the round)
        depth = states.randrange(16)
        # Alternate the order so that drift and cache effects fall on both sides alike.
        order = (patched, direct) if repeat % 2 == 0 else (direct, patched)
        first, second = at_depth(depth, order[0], inner), at_depth(depth, order[1], inner)
        p, d = (first, second) if repeat % 2 == 0 else (second, first)
        runs["patched"].append(p)
        runs["direct"].append(d)
        runs["overhead"].append(p - d)
        runs["torch"].append(batch(own, inner))
        repeat += 1
    return runs, inner


def collect_functions(seconds: float, max_seconds: float, min_pairs: int,
                      sizes: dict[str, tuple[int, ...]], only: list[str]) -> list[dict]:
    """Every selected row's per-round samples (seconds), measured in this process."""
    rows = []
    for size_label, shape in sizes.items():
        cases = function_cases(shape)
        for name, (patched, direct, own) in cases.items():
            if only and not any(part in name for part in only):
                continue
            with detnoise.patch_torch():
                runs, inner = paired(patched, direct, own, seconds, max_seconds, min_pairs)
            rows.append({"function": name, "size": size_label, "numel": numel(shape), "inner": inner, "runs": runs})
    return rows


def collect_in_processes(processes: int, args: argparse.Namespace) -> list[dict]:
    """collect_functions in ``processes`` fresh processes one after another, each given 1/processes
    of the row times; each row's samples pooled. A process's own state (where its buffers and the
    interpreter's objects lie) shifts a large draw's rows by a few us that no in-process
    randomisation undoes (two 20-s runs of the SDXL multinomial row: 4.6 [1.7, 7.0] and 7.0 [4.0,
    9.5] us; 150 s: 2.9 [1.6, 4.2]), so the pooled median spans several."""
    pooled: dict[tuple[str, str], dict] = {}
    for index in range(processes):
        with tempfile.TemporaryDirectory() as folder:
            out = os.path.join(folder, "rows.json")
            command = [sys.executable, __file__, "--worker", out, "--seconds", str(args.seconds / processes),
                       "--max-seconds", str(args.max_seconds / processes), "--repeats", str(args.repeats),
                       "--threads", str(args.threads), "--clock", args.clock, "--only", args.only,
                       "--sizes", args.sizes] + (["--quick"] if args.quick else [])
            subprocess.run(command, check=True)
            with open(out) as file:
                rows = json.load(file)
        print(f"  (process {index + 1} of {processes} done)", flush=True)
        for row in rows:
            key = (row["function"], row["size"])
            entry = pooled.setdefault(key, {**row, "runs": {k: [] for k in row["runs"]}, "process_medians_us": []})
            for k, samples in row["runs"].items():
                entry["runs"][k].extend(samples)
            entry["process_medians_us"].append(statistics.median(row["runs"]["overhead"]) * 1e6)
    return list(pooled.values())


def summarise_functions(collected: list[dict]) -> list[dict]:
    """Medians, quartiles and the overhead's 95% interval per row, printed as a table."""
    rows = []
    for raw in collected:
        runs = raw["runs"]
        row = {key: raw[key] for key in ("function", "size", "numel", "inner")}
        row["rounds"] = len(runs["overhead"])
        for key, samples in runs.items():
            low, median, high = quartiles(samples)
            row[key] = {"median_us": median * 1e6, "q1_us": low * 1e6, "q3_us": high * 1e6}
        ci_low, ci_high = median_interval(runs["overhead"])
        row["overhead"]["ci95_us"] = [ci_low * 1e6, ci_high * 1e6]
        if "process_medians_us" in raw:
            row["overhead"]["process_medians_us"] = raw["process_medians_us"]
        row["within_budget"] = row["overhead"]["median_us"] <= BUDGET_US
        rows.append(row)
        o = row["overhead"]
        per_process = ("  per process " + ", ".join(f"{m:.2f}" for m in raw["process_medians_us"])
                       if "process_medians_us" in raw else "")
        print(f"  {row['function']:30s} {row['size']:12s} patched {row['patched']['median_us']:9.2f}  direct "
              f"{row['direct']['median_us']:9.2f}  overhead {o['median_us']:7.2f} "
              f"[IQR {o['q1_us']:.2f}, {o['q3_us']:.2f}; 95% CI {ci_low * 1e6:.2f}, {ci_high * 1e6:.2f}] "
              f"n {row['rounds']:5d}  torch {row['torch']['median_us']:9.2f}{per_process}"
              f"{'' if row['within_budget'] else '  OVER BUDGET'}", flush=True)
    return rows


# ---- table 2: plain torch generator against detnoise.Generator -------------------------------------


def measure_generators(repeats: int) -> dict:
    ours = detnoise.Generator(seed=1)
    plain = torch.Generator().manual_seed(1)
    calls = {
        "detnoise.randn(4, generator=detnoise.Generator)": lambda: detnoise.randn(4, generator=ours),
        "detnoise.randn(4, generator=torch.Generator())": lambda: detnoise.randn(4, generator=plain),
        "torch.randn(4, generator=torch.Generator())": lambda: torch.randn(4, generator=plain),
    }
    inner = inner_count(calls["detnoise.randn(4, generator=detnoise.Generator)"])
    runs: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            runs[name].append(batch(call, inner))
    result = {}
    for name, samples in runs.items():
        low, median, high = quartiles(samples)
        result[name] = {"median_us": median * 1e6, "q1_us": low * 1e6, "q3_us": high * 1e6}
        print(f"  {name:50s} {median * 1e6:8.2f} us [{low * 1e6:.2f}, {high * 1e6:.2f}]", flush=True)
    return result


# ---- table 3: the first patched call in a fresh process ---------------------------------------------

FIRST_CALL = r'''
import sys, time, json
t0 = time.perf_counter()
import torch
t1 = time.perf_counter()
import detnoise
t2 = time.perf_counter()
x, g = torch.empty(4, 4, 64, 64), None
calls = {
    "torch.randn": lambda: torch.randn(4, 4, 64, 64), "torch.rand": lambda: torch.rand(4, 4, 64, 64),
    "torch.randint": lambda: torch.randint(10, (4, 4, 64, 64)), "torch.randperm": lambda: torch.randperm(1000),
    "torch.normal": lambda: torch.normal(0.5, 2.0, (4, 4, 64, 64)), "torch.bernoulli": lambda: torch.bernoulli(x.fill_(0.5)),
    "torch.multinomial": lambda: torch.multinomial(torch.ones(10), 3), "torch.randn_like": lambda: torch.randn_like(x),
    "torch.rand_like": lambda: torch.rand_like(x), "torch.randint_like": lambda: torch.randint_like(x, 9),
    "Tensor.normal_": lambda: x.normal_(0.5, 2.0), "Tensor.uniform_": lambda: x.uniform_(-1, 1),
    "Tensor.random_": lambda: x.random_(9), "Tensor.bernoulli_": lambda: x.bernoulli_(0.5),
    "Tensor.exponential_": lambda: x.exponential_(),
}
call = calls[sys.argv[1]]
with detnoise.patch_torch():
    a = time.perf_counter(); call(); b = time.perf_counter()
    warm = min((lambda s: (call(), time.perf_counter() - s)[1])(time.perf_counter()) for _ in range(5))
print(json.dumps({"import_torch_s": t1 - t0, "import_detnoise_s": t2 - t1, "first_s": b - a, "warm_s": warm,
                  "dynamo_imported": "torch._dynamo" in sys.modules}))
'''


def measure_first_calls(names: list[str]) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    result = {}
    for name in names:
        out = subprocess.run([sys.executable, "-c", FIRST_CALL, name], capture_output=True, text=True, env=env,
                             timeout=600, check=True).stdout
        row = json.loads(out)
        result[name] = row
        print(f"  {name:22s} import detnoise {row['import_detnoise_s'] * 1e3:7.1f} ms  first call "
              f"{row['first_s'] * 1e3:8.2f} ms  warm {row['warm_s'] * 1e3:7.2f} ms  extra "
              f"{(row['first_s'] - row['warm_s']) * 1e3:7.2f} ms  torch._dynamo imported: {row['dynamo_imported']}",
              flush=True)
    return result


# ---- --mechanism: rebinding against a TorchFunctionMode ---------------------------------------------


class DrawMode(TorchFunctionMode):
    """The alternative mechanism: intercept every torch call, send draws to detnoise."""

    def __init__(self, table: dict) -> None:
        super().__init__()
        self.table = table

    def __torch_function__(self, func, types, args=(), kwargs=None):
        replacement = self.table.get(func)
        if replacement is not None:
            return replacement(*args, **(kwargs or {}))
        return func(*args, **(kwargs or {}))


def mode_table() -> dict:
    """original torch callable -> detnoise wrapper (the wrappers run with the patch's 'full' level)."""
    table = {}
    for name, wrapper in torch_patch.PATCHED.items():
        owner, attribute = torch_patch._owner_and_attribute(name)
        table[getattr(owner, attribute)] = wrapper
    return table


def tiny_sd():
    import transformers
    from diffusers import AutoencoderKL, EulerAncestralDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(8, 16),
                                layers_per_block=1, cross_attention_dim=16, attention_head_dim=2, norm_num_groups=4,
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"))
    vae = AutoencoderKL(in_channels=3, out_channels=3, block_out_channels=(8,), latent_channels=4, norm_num_groups=4,
                        down_block_types=("DownEncoderBlock2D",), up_block_types=("UpDecoderBlock2D",))
    text_encoder = transformers.CLIPTextModel(transformers.CLIPTextConfig(
        hidden_size=16, intermediate_size=32, num_attention_heads=2, num_hidden_layers=1, vocab_size=64,
        max_position_embeddings=8, projection_dim=16))
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=None, unet=unet,
                                   scheduler=EulerAncestralDiscreteScheduler(num_train_timesteps=50),
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    embeds = torch.rand(1, 4, 16, generator=torch.Generator().manual_seed(0))

    def call() -> None:
        pipe(prompt_embeds=embeds, negative_prompt_embeds=torch.zeros_like(embeds), height=16, width=16,
             num_inference_steps=4, output_type="np", generator=torch.Generator().manual_seed(1))

    return call


def measure_mechanisms(repeats: int) -> dict:
    a, b = torch.ones(16), torch.ones(16)
    cases = {
        "torch.add (16 floats)": (lambda: torch.add(a, b), 2000),
        "a * b + a (16 floats)": (lambda: a * b + a, 2000),
        "torch.randn(16)": (lambda: torch.randn(16), 2000),
        "tiny SD call (4 steps, 16x16)": (tiny_sd(), 1),
    }
    table = mode_table()
    results = {}
    for name, (call, inner) in cases.items():
        call()  # warm up
        runs: dict[str, list[float]] = {"unpatched": [], "patch_diffusers": [], "patch_torch (rebinding)": [],
                                        "TorchFunctionMode": []}
        for _ in range(repeats):  # interleaved, so drift hits every mechanism alike
            runs["unpatched"].append(batch(call, inner))
            with detnoise.patch_diffusers():
                runs["patch_diffusers"].append(batch(call, inner))
            with detnoise.patch_torch():
                runs["patch_torch (rebinding)"].append(batch(call, inner))
            handle = detnoise.patch_torch()  # fills the wrappers' originals; then undo the rebinding
            saved = {n: getattr(*torch_patch._owner_and_attribute(n)) for n in torch_patch.PATCHED}
            for n in torch_patch.PATCHED:
                owner, attribute = torch_patch._owner_and_attribute(n)
                if n in torch_patch._inherited:
                    delattr(owner, attribute)
                else:
                    setattr(owner, attribute, torch_patch._ORIGINAL[n])
            with DrawMode(table):
                runs["TorchFunctionMode"].append(batch(call, inner))
            for n, value in saved.items():
                setattr(*torch_patch._owner_and_attribute(n), value)
            handle.release()
        base = statistics.median(runs["unpatched"])
        results[name] = {}
        print(f"\n{name}")
        for mechanism, samples in runs.items():
            low, median, high = quartiles(samples)
            results[name][mechanism] = {"median_s": median, "q1_s": low, "q3_s": high, "ratio": median / base}
            print(f"  {mechanism:26s} median {median * 1e6:12.2f} us  [{low * 1e6:.2f} .. {high * 1e6:.2f}]  "
                  f"x{median / base:.3f}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=41,
                        help="least rounds per row; the generator and mechanism tables' rounds")
    parser.add_argument("--seconds", type=float, default=2.0,
                        help="least time per row of the functions table (its rounds: as many as fit, at least --repeats)")
    parser.add_argument("--max-seconds", type=float, default=20.0,
                        help=f"most time per row, spent while the median's 95%% interval is wider than +-{PRECISION_US} us")
    parser.add_argument("--quick", action="store_true", help="sizes 1 and SDXL latent only, no first-call table")
    parser.add_argument("--only", default="", help="comma-separated parts of function names: only those rows")
    parser.add_argument("--sizes", default="", help="comma-separated size labels (1, 64x64, 'SDXL latent'): only those")
    parser.add_argument("--mechanism", action="store_true", help="also rebinding vs TorchFunctionMode")
    parser.add_argument("--threads", type=int, default=0, help="torch and detnoise threads (0: leave as they are)")
    parser.add_argument("--clock", choices=("wall", "thread"), default="wall",
                        help="thread: CPU time of the calling thread, which a loaded machine disturbs far less "
                             "than wall time (meaningful with --threads 1, where every kernel runs on that thread)")
    parser.add_argument("--processes", type=int, default=3,
                        help="the functions table: fresh processes it is measured in, one after another, each "
                             "given 1/N of the row times; samples pooled per row")
    parser.add_argument("--worker", default="", help=argparse.SUPPRESS)  # a --processes child: rows to this file
    args = parser.parse_args()
    global CLOCK
    if args.threads:
        torch.set_num_threads(args.threads)
        detnoise.set_num_threads(args.threads)
    if args.clock == "thread":
        CLOCK = time.thread_time
    sizes = {k: v for k, v in SIZES.items() if (not args.quick or k != "64x64")
             and (not args.sizes or k in args.sizes.split(","))}
    only = [part for part in args.only.split(",") if part]
    if args.worker:
        with open(args.worker, "w") as file:
            json.dump(collect_functions(args.seconds, args.max_seconds, args.repeats, sizes, only), file)
        return
    load_before = os.getloadavg()
    print(f"device: cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores), torch threads "
          f"{torch.get_num_threads()}, detnoise threads {detnoise.get_num_threads()}, repeats {args.repeats}, seconds per row {args.seconds} to {args.max_seconds} over {args.processes} processes, "
          f"clock {args.clock}, torch {torch.__version__}, load average {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}")
    results: dict[str, Any] = {
        "device": "cpu", "processor": platform.processor() or platform.machine(), "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(), "detnoise_threads": detnoise.get_num_threads(),
        "repeats": args.repeats, "seconds_per_row": [args.seconds, args.max_seconds], "processes": args.processes, "clock": args.clock, "torch": torch.__version__, "load_average_before": load_before,
    }
    print("\nper call, us: patched | detnoise direct | overhead = median of per-batch (patched - direct) "
          "[IQR; 95% CI of the median] | rounds | torch")
    if args.processes > 1:
        collected = collect_in_processes(args.processes, args)
    else:
        collected = collect_functions(args.seconds, args.max_seconds, args.repeats, sizes, only)
    results["functions"] = summarise_functions(collected)
    over = [f"{row['function']} at {row['size']}" for row in results["functions"] if not row["within_budget"]]
    print(f"\nbudget: overhead median at most {BUDGET_US} us: "
          + ("held in every row" if not over else f"exceeded in {len(over)} rows: {', '.join(over)}"))
    print("\nplain torch.Generator vs detnoise.Generator")
    results["generators"] = measure_generators(args.repeats)
    if not args.quick:
        print("\nfirst patched call in a fresh process (each function alone)")
        results["first_call"] = measure_first_calls(
            [name.split("(")[0] for name in ("torch.randn", "torch.rand", "torch.randint", "torch.randperm",
                                             "torch.normal", "torch.bernoulli", "torch.multinomial", "torch.randn_like",
                                             "torch.rand_like", "torch.randint_like", "Tensor.normal_", "Tensor.uniform_",
                                             "Tensor.random_", "Tensor.bernoulli_", "Tensor.exponential_")])
    if args.mechanism:
        results["mechanism"] = measure_mechanisms(args.repeats)
    results["load_average_after"] = os.getloadavg()
    print(f"\nload average after: {results['load_average_after']}")
    out = os.path.join(os.path.dirname(__file__), "results", "patch_overhead_cpu.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as file:
        json.dump(results, file, indent=1)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
