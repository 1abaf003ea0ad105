"""detnoise.randn_tensor against diffusers' default path and torch.randn, in one run on one card.

Issue targets (GPU): SDXL latents (1,4,128,128) float32 and bfloat16 >= 10x faster than diffusers'
default CPU-generator path and within 1.5x of torch.randn with a CUDA generator; a list of 16
generators at (16,4,128,128) bfloat16 >= 50x faster than diffusers' list path.
Prints a table and writes benchmarks/results/diffusers_speed_<device>.json.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import torch

import detnoise


def time_ms(function, device: torch.device, repeats: int) -> float:
    for _ in range(3):
        function()
    if device.type == "cuda":
        torch.cuda.synchronize()
    best = float("inf")
    for _ in range(5):  # best of 5 rounds of `repeats` calls, each round synchronised once
        start = time.perf_counter()
        for _ in range(repeats):
            function()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, (time.perf_counter() - start) / repeats * 1e3)
    return best


def main() -> int:
    from diffusers.utils import torch_utils

    original = torch_utils.randn_tensor
    device = torch.device(sys.argv[1] if len(sys.argv) > 1 else ("cuda" if torch.cuda.is_available() else "cpu"))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    cases = [("SDXL", (1, 4, 128, 128), torch.float32, 1), ("SDXL", (1, 4, 128, 128), torch.bfloat16, 1),
             ("SDXL x16 list", (16, 4, 128, 128), torch.bfloat16, 16)]
    rows = []
    print(f"device: {name}; torch {torch.__version__}")
    print(f"{'case':15} {'dtype':9} {'diffusers ms':>12} {'torch.randn ms':>14} {'detnoise ms':>11} {'vs diffusers':>12} {'vs torch':>9}")
    for label, shape, dtype, generators in cases:
        cpu_gens = [torch.Generator().manual_seed(i) for i in range(generators)]
        dev_gens = [torch.Generator(device.type).manual_seed(i) for i in range(generators)]
        pick = (lambda gens: gens if generators > 1 else gens[0])
        repeats = 20 if device.type == "cuda" else 5
        diffusers_ms = time_ms(lambda: original(shape, generator=pick(cpu_gens), device=device, dtype=dtype), device, repeats)
        torch_ms = time_ms(lambda: torch.randn(shape, generator=dev_gens[0], device=device, dtype=dtype), device, repeats)
        ours_ms = time_ms(lambda: detnoise.randn_tensor(shape, generator=pick(dev_gens), device=device, dtype=dtype), device, repeats)
        row = {"case": label, "shape": list(shape), "dtype": str(dtype), "generators": generators,
               "diffusers_default_ms": diffusers_ms, "torch_randn_ms": torch_ms, "detnoise_ms": ours_ms,
               "speedup_vs_diffusers": diffusers_ms / ours_ms, "ratio_to_torch": ours_ms / torch_ms}
        rows.append(row)
        print(f"{label:15} {str(dtype)[6:]:9} {diffusers_ms:12.3f} {torch_ms:14.3f} {ours_ms:11.3f} "
              f"{row['speedup_vs_diffusers']:11.1f}x {row['ratio_to_torch']:8.2f}x")
    path = Path(__file__).parent / "results" / f"diffusers_speed_{re.sub(r'[^A-Za-z0-9]+', '_', name).strip('_')}.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps({"device": name, "torch": torch.__version__, "rows": rows}, indent=1) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
