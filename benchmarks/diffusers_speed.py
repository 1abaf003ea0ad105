"""detnoise.randn_tensor against diffusers' default path and torch.randn, in one run on one card.

Issue targets (GPU): SDXL latents (1,4,128,128) float32 and bfloat16 >= 10x faster than diffusers'
default CPU-generator path and within 1.5x of torch.randn with a CUDA generator; a list of 16
generators at (16,4,128,128) bfloat16 >= 50x faster than diffusers' list path.
Every call here is a plain call (a new tensor each time, as a pipeline makes it); the three paths of
a case run side by side (detnoise.timing.compare), and the table shows the median of 15 repeats with
the interquartile range, on the device and thread count printed first.
Prints a table and writes benchmarks/results/diffusers_speed_<device>.json.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import torch

import detnoise
from detnoise.timing import compare


def main() -> int:
    from diffusers.utils import torch_utils

    original = torch_utils.randn_tensor
    device = torch.device(sys.argv[1] if len(sys.argv) > 1 else ("cuda" if torch.cuda.is_available() else "cpu"))
    threads = torch.get_num_threads()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({threads} threads)"
    cases = [("SDXL", (1, 4, 128, 128), torch.float32, 1), ("SDXL", (1, 4, 128, 128), torch.bfloat16, 1),
             ("SDXL x16 list", (16, 4, 128, 128), torch.bfloat16, 16)]
    rows = []
    print(f"device: {name}; torch {torch.__version__}; plain calls, median of 15 repeats (IQR)")
    print(f"{'case':14} {'dtype':9} {'diffusers default ms':>27} {'torch.randn ms':>27} {'detnoise ms':>27} "
          f"{'vs diffusers':>12} {'vs torch':>9}")
    for label, shape, dtype, generators in cases:
        cpu_gens = [torch.Generator().manual_seed(i) for i in range(generators)]
        dev_gens = [torch.Generator(device.type).manual_seed(i) for i in range(generators)]
        pick = (lambda gens: gens if generators > 1 else gens[0])
        timings = compare({
            "diffusers": lambda: original(shape, generator=pick(cpu_gens), device=device, dtype=dtype),
            "torch": lambda: torch.randn(shape, generator=dev_gens[0], device=device, dtype=dtype),
            "detnoise": lambda: detnoise.randn_tensor(shape, generator=pick(dev_gens), device=device, dtype=dtype),
        }, device.type)
        diffusers_ms, torch_ms, ours_ms = (timings[k].median_s * 1e3 for k in ("diffusers", "torch", "detnoise"))
        row = {"case": label, "shape": list(shape), "dtype": str(dtype), "generators": generators,
               "diffusers_default_ms": diffusers_ms, "torch_randn_ms": torch_ms, "detnoise_ms": ours_ms,
               "speedup_vs_diffusers": diffusers_ms / ours_ms, "ratio_to_torch": ours_ms / torch_ms,
               "timings": {k: t.as_dict() for k, t in timings.items()}}
        rows.append(row)

        def cell(key: str) -> str:
            t = timings[key]
            return f"{t.median_s * 1e3:8.3f} ({t.q1_s * 1e3:.3f}-{t.q3_s * 1e3:.3f})"

        print(f"{label:14} {str(dtype)[6:]:9} {cell('diffusers'):>27} {cell('torch'):>27} {cell('detnoise'):>27} "
              f"{row['speedup_vs_diffusers']:11.1f}x {row['ratio_to_torch']:8.2f}x")
    path = Path(__file__).parent / "results" / f"diffusers_speed_{re.sub(r'[^A-Za-z0-9]+', '_', name).strip('_')}.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps({"device": name, "threads": threads if device.type == "cpu" else None,
                               "torch": torch.__version__, "rows": rows}, indent=1) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
