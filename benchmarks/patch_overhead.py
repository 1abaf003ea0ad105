"""What detnoise's torch-level patch costs: rebinding (what patch_torch does) against a
TorchFunctionMode doing the same job, on a non-draw op and on a tiny StableDiffusionPipeline call.

Prints a table of medians (with the spread of >= 15 repeats) and ratios against the unpatched run
in the same process, and writes benchmarks/results/patch_overhead_cpu.json.

    python benchmarks/patch_overhead.py [--repeats 15]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from typing import Callable

import torch
from torch.overrides import TorchFunctionMode

import detnoise
from detnoise import torch_patch


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


def timed(call: Callable[[], object], repeats: int, inner: int) -> list[float]:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            call()
        samples.append((time.perf_counter() - start) / inner)
    return samples


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
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
        for _ in range(args.repeats):  # interleaved, so drift hits every mechanism alike
            runs["unpatched"] += timed(call, 1, inner)
            with detnoise.patch_diffusers():
                runs["patch_diffusers"] += timed(call, 1, inner)
            with detnoise.patch_torch():
                runs["patch_torch (rebinding)"] += timed(call, 1, inner)
            handle = detnoise.patch_torch()  # fills the wrappers' originals; then undo the rebinding
            saved = {n: getattr(*torch_patch._owner_and_attribute(n)) for n in torch_patch.PATCHED}
            for n in torch_patch.PATCHED:
                owner, attribute = torch_patch._owner_and_attribute(n)
                if n in torch_patch._inherited:
                    delattr(owner, attribute)
                else:
                    setattr(owner, attribute, torch_patch._ORIGINAL[n])
            with DrawMode(table):
                runs["TorchFunctionMode"] += timed(call, 1, inner)
            for n, value in saved.items():
                setattr(*torch_patch._owner_and_attribute(n), value)
            handle.release()
        base = statistics.median(runs["unpatched"])
        results[name] = {}
        for mechanism, samples in runs.items():
            median = statistics.median(samples)
            results[name][mechanism] = {"median_s": median, "min_s": min(samples), "max_s": max(samples),
                                        "ratio": median / base}
    print(f"device: cpu ({platform.processor() or platform.machine()}), torch threads {torch.get_num_threads()}, "
          f"repeats {args.repeats}, torch {torch.__version__}")
    for name, mechanisms in results.items():
        print(f"\n{name}")
        for mechanism, r in mechanisms.items():
            print(f"  {mechanism:26s} median {r['median_s'] * 1e6:12.2f} us  [{r['min_s'] * 1e6:.2f} .. "
                  f"{r['max_s'] * 1e6:.2f}]  x{r['ratio']:.3f}")
    out = os.path.join(os.path.dirname(__file__), "results", "patch_overhead_cpu.json")
    with open(out, "w") as file:
        json.dump({"threads": torch.get_num_threads(), "repeats": args.repeats, "results": results}, file, indent=1)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
