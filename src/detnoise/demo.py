"""``detnoise demo``: a diffusers pipeline run with detnoise noise, offline, with the proofs printed.

Builds a small DDPM pipeline from configs with seeded weights (no download; ``--model PATH`` loads a
local diffusers model directory instead), runs it with ``patch_diffusers()`` on the best device,
writes a PNG grid, and prints per-image fingerprints, batch invariance, CPU/GPU equality of the noise
where a GPU exists, and how long detnoise's randn_tensor takes against diffusers' default path.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import detnoise
from detnoise import diffusers_integration
from detnoise.determinism import determinism_status
from detnoise.fingerprint import fingerprint


def _best_device() -> torch.device:
    if detnoise.built_with_cuda() and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def build_offline_pipeline(sample_size: int = 32) -> Any:
    """A DDPMPipeline whose UNet has seeded random weights, built from configs alone."""
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel
    from diffusers.models.unets.unet_2d import UNet2DOutput

    class RowByRowUNet(UNet2DModel):
        # torch's GEMM differs in the last bit between batch sizes 1 and N; running rows one by one
        # keeps the model's arithmetic batch-invariant, so the demo can show whole images match.
        def forward(self, sample, timestep, *args, **kwargs):
            rows = [super(RowByRowUNet, self).forward(sample[i : i + 1], timestep, *args, **kwargs).sample
                    for i in range(sample.shape[0])]
            return UNet2DOutput(sample=torch.cat(rows))

    torch.manual_seed(0)
    unet = RowByRowUNet(sample_size=sample_size, in_channels=3, out_channels=3, block_out_channels=(32, 64),
                        layers_per_block=1, down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                        up_block_types=("AttnUpBlock2D", "UpBlock2D"), norm_num_groups=8)
    return DDPMPipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=1000))


def _run(pipe: Any, generators: Any, count: int, steps: int, prompt: str | None, progress: bool) -> tuple[np.ndarray, list]:
    pipe.set_progress_bar_config(disable=not progress)
    kwargs: dict[str, Any] = {"generator": generators, "num_inference_steps": steps, "output_type": "np"}
    if prompt is not None:
        kwargs["prompt"] = [prompt] * count
    else:
        kwargs["batch_size"] = count
    with diffusers_integration.record_draws() as log:
        images = pipe(**kwargs).images
    return np.asarray(images), log


def _grid(images: np.ndarray, path: Path) -> None:
    from PIL import Image

    pixels = (np.clip(images, 0, 1) * 255).round().astype(np.uint8)
    count, height, width, _ = pixels.shape
    grid = np.zeros((height, count * width + (count - 1) * 2, 3), dtype=np.uint8)
    for i, image in enumerate(pixels):
        grid[:, i * (width + 2) : i * (width + 2) + width] = image
    scale = max(1, 256 // height)
    Image.fromarray(grid).resize((grid.shape[1] * scale, grid.shape[0] * scale), Image.NEAREST).save(path)


def _time_ms(function, device: torch.device, repeats: int = 20) -> float:
    function()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        function()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats * 1e3


def timing_table(device: torch.device) -> list[str]:
    """detnoise.randn_tensor against diffusers' default path (CPU generator, then a copy) on device."""
    from diffusers.utils import torch_utils

    original = diffusers_integration._patch.original if diffusers_integration._patch else torch_utils.randn_tensor
    lines = []
    for shape, dtype in (((1, 4, 128, 128), torch.float32), ((1, 4, 128, 128), torch.bfloat16), ((16, 4, 128, 128), torch.bfloat16)):
        cpu_gens = [torch.Generator().manual_seed(i) for i in range(shape[0])]
        ours_gens = [torch.Generator(device.type).manual_seed(i) for i in range(shape[0])]
        theirs = _time_ms(lambda: original(shape, generator=cpu_gens if shape[0] > 1 else cpu_gens[0], device=device, dtype=dtype), device)
        ours = _time_ms(lambda: detnoise.randn_tensor(shape, generator=ours_gens if shape[0] > 1 else ours_gens[0], device=device, dtype=dtype), device)
        label = f"{'x'.join(map(str, shape))} {str(dtype)[6:]}"
        lines.append(f"  {label:22} diffusers default {theirs:8.3f} ms   detnoise {ours:8.3f} ms   ({theirs / ours:5.1f}x)")
    return lines


def main(args: argparse.Namespace) -> int:
    try:
        import diffusers  # noqa: F401
    except ImportError:
        print("detnoise demo needs diffusers: pip install 'detnoise[diffusers]'")
        return 2
    device = torch.device(args.device) if args.device else _best_device()
    seeds = list(range(args.seed, args.seed + args.images))
    if args.model:
        from diffusers import DiffusionPipeline

        pipe = DiffusionPipeline.from_pretrained(args.model, local_files_only=True)
        source = f"local model {args.model}"
    else:
        pipe = build_offline_pipeline()
        source = "offline DDPM pipeline (UNet2DModel from config, weights seeded with 0)"
    pipe.to(device)
    print(f"detnoise {detnoise.__version__} demo: {source}, {args.steps} steps, seeds {seeds}, device {device}")
    switches = determinism_status()
    print("determinism switches: " + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in switches.items()))

    with detnoise.patch_diffusers():
        generators = [torch.Generator(device.type).manual_seed(s) for s in seeds]
        print(f"batch of {len(seeds)} with one generator per image:")
        batch, batch_log = _run(pipe, generators, len(seeds), args.steps, args.prompt, progress=True)
        initial = batch_log[0][1]
        for i, seed in enumerate(seeds):
            print(f"  image {i} seed {seed}: noise {fingerprint(initial[i])[:16]}  image {fingerprint(torch.from_numpy(batch[i]))[:16]}")
        print("batch invariance (each image again on its own):")
        all_same = True
        for i, seed in enumerate(seeds):
            single, single_log = _run(pipe, torch.Generator(device.type).manual_seed(seed), 1, args.steps, args.prompt, progress=False)
            same_noise = torch.equal(single_log[0][1][0], initial[i])
            same_image = np.array_equal(single[0], batch[i])
            all_same &= same_noise and same_image
            print(f"  seed {seed}: noise {'identical' if same_noise else 'DIFFERS'}, image {'identical' if same_image else 'differs'}")
        if device.type == "cuda":
            cpu_noise = detnoise.randn_tensor(tuple(initial.shape), generator=[torch.Generator().manual_seed(s) for s in seeds])
            same = fingerprint(cpu_noise) == fingerprint(initial)
            print(f"CPU vs {torch.cuda.get_device_name(device)}: initial noise {'bit-identical' if same else 'DIFFERS'} "
                  f"({fingerprint(cpu_noise)[:16]})")
        else:
            print("no GPU here: CPU/GPU equality not shown (run `detnoise check` on a GPU machine and compare fingerprints)")
        print(f"noise timing on {device} (one call, synchronised):")
        for line in timing_table(device):
            print(line)
    out = Path(args.out)
    _grid(batch, out)
    print(f"wrote {out} ({len(seeds)} images)")
    return 0 if all_same else 1
