"""Sharded generation over gloo (2 and 4 processes, spawned here): every rank's shard equals the same
slice of a single-process draw, no rank disagrees on the generator's offset, and slices of odd shapes
and of huge virtual tensors equal the full draw's elements."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import detnoise
from detnoise import reference

from conftest import assert_bits_equal

WORKER = Path(__file__).with_name("distributed_worker.py")


# 4 processes (uneven shards) under `pytest -m slow`: each starts torch, about 10 s on 2 cores.
@pytest.mark.parametrize("world_size", [2, pytest.param(4, marks=pytest.mark.slow)])
def test_dtensor_shards_equal_single_process_slices(tmp_path: Path, world_size: int) -> None:
    init = tmp_path / "init"
    outs = [tmp_path / f"rank{r}.pt" for r in range(world_size)]
    procs = [subprocess.Popen([sys.executable, str(WORKER), str(r), str(world_size), str(init), str(outs[r])],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in range(world_size)]
    try:
        for proc in procs:
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err[-3000:]
    except subprocess.TimeoutExpired:
        # A hung rank: the workers print their stacks after 100 s (faulthandler); show them all.
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        stderr = [proc.communicate()[1] for proc in procs]
        pytest.fail("a rank hung:\n" + "\n".join(f"rank {r}: {err[-2000:]}" for r, err in enumerate(stderr)))
    finally:  # no rank outlives the test (its open pipes would fail a later test)
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    results = [torch.load(path, weights_only=True) for path in outs]  # torch 2.4 warns without it
    g = detnoise.Generator(seed=2024)
    shape = (6, 10, 7)
    names = [name for name in results[0] if name != "rank_rows"]
    for name in names:  # the same generator drew the cases in this order on every rank
        dtype = torch.bfloat16 if name == "shard1" else torch.float32
        single = detnoise.randn(shape, generator=g, dtype=dtype)
        offsets = {r[name]["offset"] for r in results}
        assert offsets == {g.offset}, name
        for rank, result in enumerate(results):
            assert_bits_equal(result[name]["full"], single, f"{name} full_tensor on rank {rank}")
        locals_ = [r[name]["local"] for r in results]
        if name == "replicate":
            for local in locals_:
                assert_bits_equal(local, single)
        elif name in ("shard0", "shard1", "shard2"):
            dim = int(name[-1])
            expected = torch.chunk(single, world_size, dim=dim)  # DTensor's Shard(d) split
            for rank, local in enumerate(locals_):
                want = expected[rank] if rank < len(expected) else single.narrow(dim, 0, 0)
                assert_bits_equal(local, want, f"{name} rank {rank}")
        elif name == "mesh2x2_s0_s1":
            for rank, local in enumerate(locals_):  # mesh coordinate (rank // 2, rank % 2)
                want = torch.chunk(torch.chunk(single, 2, dim=0)[rank // 2], 2, dim=1)[rank % 2]
                assert_bits_equal(local, want, f"{name} rank {rank}")
        elif name == "mesh2x2_s1_r":
            for rank, local in enumerate(locals_):
                assert_bits_equal(local, torch.chunk(single, 2, dim=1)[rank // 2], f"{name} rank {rank}")
    whole = detnoise.randn(10, 3, 4, generator=detnoise.Generator(seed=9))
    rows = torch.cat([r["rank_rows"] for r in results])
    assert_bits_equal(rows, whole)


@pytest.mark.parametrize(
    "index",
    [
        (slice(1, 5, 2), -1, slice(None, None, 4)),
        (Ellipsis, 3),
        (2,),
        (slice(0, 0),),
        (1, 2, 3),
        (slice(None), slice(2, 9, 3)),
        (slice(-4, None), slice(3, 4)),
    ],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_slices_equal_the_full_draw(index, dtype: torch.dtype) -> None:
    whole = detnoise.randn(6, 7, 9, generator=detnoise.Generator(seed=1), dtype=dtype)
    g = detnoise.Generator(seed=1)
    part = detnoise.randn_slice((6, 7, 9), index, generator=g, dtype=dtype)
    assert_bits_equal(part, whole[index])
    assert g.offset == (6 * 7 * 9 + (1 if dtype == torch.float64 else 3)) // (2 if dtype == torch.float64 else 4)
    u = detnoise.rand_slice((6, 7, 9), index, generator=detnoise.Generator(seed=1), dtype=dtype)
    assert_bits_equal(u, detnoise.rand(6, 7, 9, generator=detnoise.Generator(seed=1), dtype=dtype)[index])


def test_slice_of_a_huge_virtual_tensor() -> None:
    """1000 elements of a 2**40-element tensor, crossing block boundaries and 2**32 indices."""
    shape = (2**20, 2**20)
    g = detnoise.Generator(seed=77)
    g.offset = 5
    part = detnoise.randn_slice(shape, (4096, slice(2**20 - 1000, None)), generator=g)
    first = 4096 * 2**20 + 2**20 - 1000
    assert_bits_equal(part, reference.normal(1000, "float32", 77, 0, 5, first))
    assert g.offset == 5 + 2**38
    strided = detnoise.randn_slice(shape, (slice(2**19, 2**19 + 4), slice(7, 2**20, 2**18)), generator=detnoise.Generator(seed=77))
    for row in range(4):
        for col in range(4):
            element = (2**19 + row) * 2**20 + 7 + col * 2**18
            assert_bits_equal(strided[row, col : col + 1], reference.normal(1, "float32", 77, 0, 0, element))


def test_slice_errors_leave_the_generator_alone() -> None:
    g = detnoise.Generator(seed=3)
    for bad, error in [((slice(None, None, -1),), ValueError), ((6,), IndexError), ((0, 0, 0, 0), IndexError),
                       ((Ellipsis, Ellipsis), IndexError), (("a",), TypeError)]:
        with pytest.raises(error):
            detnoise.randn_slice((6, 7, 9), bad, generator=g)
    assert g.offset == 0


def test_rank_rows_partition_any_batch() -> None:
    from detnoise.distributed import rank_rows

    for batch in (1, 7, 64):
        for world in (1, 3, 4, 8):
            rows = [rank_rows(batch, r, world) for r in range(world)]
            assert sum(s.stop - s.start for s in rows) == batch and rows[0].start == 0 and rows[-1].stop == batch
