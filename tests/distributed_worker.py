"""One rank of tests/test_distributed.py: draws DTensors over gloo and saves its shards."""

from __future__ import annotations

import faulthandler
import sys

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
try:
    from torch.distributed.tensor import Replicate, Shard
except ImportError:  # torch 2.4: the same classes, not yet public
    from torch.distributed._tensor import Replicate, Shard

import detnoise
import detnoise.distributed


def main() -> None:
    faulthandler.dump_traceback_later(100)  # before the test's 120 s timeout: where a hung rank waits
    rank, world_size, init_file, out_file = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    shape = (6, 10, 7)
    results = {}
    mesh = init_device_mesh("cpu", (world_size,))
    cases = {"shard0": [Shard(0)], "shard1": [Shard(1)], "shard2": [Shard(2)], "replicate": [Replicate()]}
    if world_size == 4:
        mesh_2d = init_device_mesh("cpu", (2, 2))
        cases.update({"mesh2x2_s0_s1": [Shard(0), Shard(1)], "mesh2x2_s1_r": [Shard(1), Replicate()]})
    generator = detnoise.Generator(seed=2024)
    for name, placements in cases.items():
        the_mesh = mesh_2d if name.startswith("mesh2x2") else mesh
        dtype = torch.bfloat16 if name == "shard1" else torch.float32
        noise = detnoise.distributed.randn(shape, generator, device_mesh=the_mesh, placements=placements, dtype=dtype)
        results[name] = {"local": noise.to_local().clone(), "full": noise.full_tensor(), "offset": generator.offset}
    results["rank_rows"] = detnoise.distributed.rank_slice((10, 3, 4), generator=detnoise.Generator(seed=9))
    torch.save(results, out_file)
    # Every rank past its last collective before any tears gloo down: one CI run of torch 2.4 had
    # rank 1 hang for 120 s after rank 0 had finished and exited.
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
