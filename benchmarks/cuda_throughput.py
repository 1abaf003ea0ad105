"""A quick CUDA throughput table: detnoise.randn against torch.randn on the same card, same run.

Prints one row per (dtype, size) and writes benchmarks/results/cuda_throughput.json. The full
side-by-side benchmark is benchmarks/run.py (issue "Performance"); this one only needs torch.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

import detnoise


def _time_ms(function, repeats: int = 20) -> float:
    function()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        function()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / repeats


def main() -> None:
    if not (detnoise.built_with_cuda() and torch.cuda.is_available()):
        print("no CUDA device or no CUDA build: nothing to measure")
        return
    card = torch.cuda.get_device_name(0)
    rows = []
    print(f"card: {card}")
    print(f"{'dtype':9} {'elements':>11} {'detnoise G/s':>13} {'torch G/s':>10} {'ratio':>6}")
    for dtype in (torch.float32, torch.bfloat16, torch.float64):
        for numel in (1 << 14, 1 << 20, 1 << 26, 1 << 28):
            out = torch.empty(numel, dtype=dtype, device="cuda")
            g = detnoise.Generator("cuda", seed=0)
            tg = torch.Generator("cuda").manual_seed(0)
            ours = _time_ms(lambda: detnoise.randn(numel, generator=g, out=out))
            theirs = _time_ms(lambda: torch.randn(numel, generator=tg, out=out, dtype=dtype, device="cuda"))
            row = {"dtype": str(dtype), "numel": numel, "detnoise_ms": ours, "torch_ms": theirs,
                   "detnoise_gps": numel / ours / 1e6, "torch_gps": numel / theirs / 1e6}
            rows.append(row)
            print(f"{str(dtype)[6:]:9} {numel:>11} {row['detnoise_gps']:>13.1f} {row['torch_gps']:>10.1f} "
                  f"{row['detnoise_gps'] / row['torch_gps']:>6.2f}")
            del out
    path = Path(__file__).parent / "results" / "cuda_throughput.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps({"card": card, "torch": torch.__version__, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
