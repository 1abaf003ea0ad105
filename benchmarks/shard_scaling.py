"""Time per rank is proportional to the local shard: making 1/w of a tensor takes about 1/w of the
time of making all of it. Measures randn_slice of rank 0's Shard(0) and Shard(-1) blocks of a
global tensor for w = 1, 2, 4, 8, 16 (no processes needed: a rank's work is exactly this slice).
Writes benchmarks/results/shard_scaling_<device>.json.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

import detnoise
from detnoise.distributed import rank_rows


def best(function, device: str, rounds: int = 7) -> float:
    function()
    times = []
    for _ in range(rounds):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        function()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> int:
    device = sys.argv[1] if len(sys.argv) > 1 else "cpu"
    shape = (64, 16, 128, 128)  # 2^24 elements
    g = detnoise.Generator(device, seed=0)
    full = best(lambda: detnoise.randn_slice(shape, (slice(None),), generator=g, device=device), device)
    rows = []
    print(f"global {shape} float32 on {device}: full draw {full * 1e3:.2f} ms")
    print(f"{'w':>3} {'dim':>4} {'local elements':>15} {'ms':>8} {'time/full':>10} {'1/w':>6}")
    for dim in (0, 3):
        for world in (1, 2, 4, 8, 16):
            rank0 = rank_rows(shape[dim], 0, world)
            index = (rank0,) if dim == 0 else (Ellipsis, rank0)
            local = detnoise.randn_slice(shape, index, generator=g, device=device).numel()
            seconds = best(lambda: detnoise.randn_slice(shape, index, generator=g, device=device), device)
            rows.append({"world": world, "dim": dim, "local": local, "seconds": seconds, "fraction_of_full": seconds / full})
            print(f"{world:>3} {dim:>4} {local:>15} {seconds * 1e3:8.2f} {seconds / full:10.3f} {1 / world:6.3f}")
    out = Path(__file__).parent / "results" / f"shard_scaling_{device}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"device": device, "shape": list(shape), "full_seconds": full, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
