"""Sharded noise on torch.distributed: each rank computes exactly its part, no communication.

``randn(global_shape, generator, device_mesh=..., placements=...)`` returns a DTensor whose
``full_tensor()`` equals ``detnoise.randn(global_shape, generator=...)`` from the same generator
state on one process. Every rank advances its generator by the whole draw, so all ranks stay in
step. No collective is issued.

Multi-GPU example (one process per GPU)::

    # torchrun --nproc-per-node 8 make_noise.py
    import torch, torch.distributed as dist, detnoise, detnoise.distributed
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard

    dist.init_process_group("nccl")
    torch.cuda.set_device(dist.get_rank() % torch.cuda.device_count())
    mesh = init_device_mesh("cuda", (dist.get_world_size(),))
    g = detnoise.Generator("cuda", seed=1234)
    latents = detnoise.distributed.randn((64, 16, 21, 90, 160), g, device_mesh=mesh,
                                         placements=[Shard(0)], dtype=torch.bfloat16)
    # latents.to_local() holds this rank's rows; latents.full_tensor() == one-GPU draw (same bits)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from detnoise.generator import Generator
from detnoise.slicing import randn_slice, rand_slice


def _dtensor_api():
    """torch's DTensor module and its local-shape helper, imported when first used (they are heavy).

    They are public as torch.distributed.tensor from torch 2.5; torch 2.4 has the same classes and
    helper under torch.distributed._tensor."""
    try:
        import torch.distributed.tensor as api
        from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

        api.DTensor  # noqa: B018 - torch 2.4 has the package without the DTensor names
    except (ImportError, AttributeError):
        import torch.distributed._tensor as api
        from torch.distributed._tensor._utils import compute_local_shape_and_global_offset
    return api, compute_local_shape_and_global_offset


def _local_box(global_shape: tuple[int, ...], device_mesh, placements) -> tuple[slice, ...]:
    api, compute_local_shape_and_global_offset = _dtensor_api()
    Replicate, Shard = api.Replicate, api.Shard
    for placement in placements:
        if not isinstance(placement, (Shard, Replicate)):
            raise ValueError(f"detnoise.distributed draws Shard(d) and Replicate() placements, got {placement}")
    local_shape, offset = compute_local_shape_and_global_offset(global_shape, device_mesh, placements)
    return tuple(slice(start, start + length) for start, length in zip(offset, local_shape))


def _dtensor(kind, global_shape, generator, device_mesh, placements, dtype):
    DTensor = _dtensor_api()[0].DTensor
    shape = tuple(int(dim) for dim in global_shape)
    placements = tuple(placements)
    if len(placements) != device_mesh.ndim:
        raise ValueError(f"need one placement per mesh dimension ({device_mesh.ndim}), got {len(placements)}")
    box = _local_box(shape, device_mesh, placements)
    local = kind(shape, box, generator=generator, dtype=dtype, device=device_mesh.device_type)
    stride = tuple(torch.empty(shape, device="meta").stride())
    return DTensor.from_local(local, device_mesh, placements, run_check=False, shape=torch.Size(shape), stride=stride)


def randn(
    global_shape: Sequence[int],
    generator: Generator | None = None,
    *,
    device_mesh,
    placements,
    dtype: torch.dtype | None = None,
):
    """Standard normal noise as a DTensor: this rank's shard of ``detnoise.randn(global_shape)``.

    ``placements`` has one ``Shard(d)`` or ``Replicate()`` per mesh dimension (2-D meshes too). The
    shard is computed in time proportional to its size. All ranks must pass generators in the same
    state; each advances by the whole draw.
    """
    return _dtensor(randn_slice, global_shape, generator, device_mesh, placements, dtype)


def rand(
    global_shape: Sequence[int],
    generator: Generator | None = None,
    *,
    device_mesh,
    placements,
    dtype: torch.dtype | None = None,
):
    """Uniform [0, 1) noise as a DTensor; see :func:`randn`."""
    return _dtensor(rand_slice, global_shape, generator, device_mesh, placements, dtype)


def rank_rows(batch: int, rank: int, world_size: int) -> slice:
    """Rows ``rank * batch // world_size`` up to ``(rank + 1) * batch // world_size``."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, world_size), got rank={rank}, world_size={world_size}")
    return slice(rank * batch // world_size, (rank + 1) * batch // world_size)


def rank_slice(
    global_shape: Sequence[int],
    generator: Generator | None = None,
    *,
    rank: int | None = None,
    world_size: int | None = None,
    dtype: torch.dtype | None = None,
    device=None,
) -> torch.Tensor:
    """For plain torch.distributed: rank r of w makes rows ``r*B//w ... (r+1)*B//w - 1`` of a batch.

    The rows equal the same rows of ``detnoise.randn(global_shape)`` on one process, and the generator
    advances by the whole batch on every rank. ``rank`` and ``world_size`` default to
    ``torch.distributed``'s.
    """
    if rank is None or world_size is None:
        import torch.distributed as dist

        if not dist.is_initialized():
            raise RuntimeError("rank_slice needs rank= and world_size=, or an initialised torch.distributed")
        rank = dist.get_rank() if rank is None else rank
        world_size = dist.get_world_size() if world_size is None else world_size
    shape = tuple(int(dim) for dim in global_shape)
    if not shape:
        raise ValueError("rank_slice needs a batch dimension")
    return randn_slice(shape, (rank_rows(shape[0], rank, world_size),), generator=generator, dtype=dtype, device=device)
