"""diffusers' DPMSolverSDEScheduler on detnoise's Brownian tree (patch_diffusers), built offline.

A tiny denoising loop (UNet2DModel + DPMSolverSDEScheduler, the loop a diffusers pipeline runs)
must repeat bit for bit, every Brownian query it makes must equal a direct detnoise.BrownianTree
query, and a batch with per-row generators and noise seeds must equal its single-row runs.
"""

from __future__ import annotations

import pytest
import torch

import detnoise
from detnoise import brownian

from conftest import assert_bits_equal

pytest.importorskip("torchsde")
diffusers = pytest.importorskip("diffusers")
from diffusers import DPMSolverSDEScheduler  # noqa: E402
from diffusers.schedulers import scheduling_dpmsolver_sde  # noqa: E402

from test_diffusers_pipelines import tiny_unet  # noqa: E402

ORIGINAL_TREE = scheduling_dpmsolver_sde.BatchedBrownianTree


@pytest.fixture(autouse=True)
def always_unpatched():
    yield
    detnoise.unpatch_diffusers()


@pytest.fixture(scope="module")
def unet():
    return tiny_unet()


def run_sde_pipeline(unet, generator, noise_sampler_seed, steps: int = 4) -> torch.Tensor:
    """What a diffusers pipeline does with an SDE scheduler: initial latents from randn_tensor, then
    scheduler.step on the model's output at every timestep."""
    scheduler = DPMSolverSDEScheduler(num_train_timesteps=50, noise_sampler_seed=noise_sampler_seed)
    scheduler.set_timesteps(steps)
    batch = len(generator) if isinstance(generator, list) else 1
    sample = diffusers.utils.torch_utils.randn_tensor((batch, 3, 8, 8), generator=generator) * scheduler.init_noise_sigma
    with torch.no_grad():
        for t in scheduler.timesteps:
            model_output = unet(scheduler.scale_model_input(sample, t), t).sample
            sample = scheduler.step(model_output, t, sample).prev_sample
    return sample


def test_patch_replaces_and_unpatch_restores_the_tree() -> None:
    with detnoise.patch_diffusers():
        assert scheduling_dpmsolver_sde.BatchedBrownianTree is brownian.BatchedBrownianTree
        with detnoise.patch_diffusers():  # nested: the inner exit keeps the patch
            pass
        assert scheduling_dpmsolver_sde.BatchedBrownianTree is brownian.BatchedBrownianTree
    assert scheduling_dpmsolver_sde.BatchedBrownianTree is ORIGINAL_TREE


def test_pipeline_repeats_and_every_query_is_a_direct_tree_query(unet, monkeypatch) -> None:
    queries = []
    original_call = brownian.BatchedBrownianTree.__call__

    def recording_call(self, t0, t1):
        result = original_call(self, t0, t1)
        queries.append((self, float(t0), float(t1), result.clone()))
        return result

    monkeypatch.setattr(brownian.BatchedBrownianTree, "__call__", recording_call)
    with detnoise.patch_diffusers():
        first = run_sde_pipeline(unet, torch.Generator().manual_seed(1), noise_sampler_seed=77)
        second = run_sde_pipeline(unet, torch.Generator().manual_seed(1), noise_sampler_seed=77)
    assert_bits_equal(second, first, "second run")
    assert len(queries) >= 4
    for wrapper, s, t, values in queries:
        tree = wrapper.tree
        direct = detnoise.BrownianTree(tree.t0, tree.t1, values.shape, seed=77, tol=1e-6)
        low, high = min(max(min(s, t), tree.t0), tree.t1), min(max(max(s, t), tree.t0), tree.t1)
        expected = direct(low, high) if s <= t else direct(high, low)
        assert_bits_equal(values, expected, f"query ({s}, {t})")


def test_noise_seed_none_follows_torch_default_generator(unet) -> None:
    with detnoise.patch_diffusers():
        torch.manual_seed(5)
        first = run_sde_pipeline(unet, torch.Generator().manual_seed(1), noise_sampler_seed=None)
        torch.manual_seed(5)
        second = run_sde_pipeline(unet, torch.Generator().manual_seed(1), noise_sampler_seed=None)
        third = run_sde_pipeline(unet, torch.Generator().manual_seed(1), noise_sampler_seed=None)
    assert_bits_equal(second, first)
    assert not torch.equal(third, first)


def test_batch_rows_equal_single_runs(unet) -> None:
    seeds, noise_seeds = [3, 4], [10, 11]
    with detnoise.patch_diffusers():
        batch = run_sde_pipeline(unet, [torch.Generator().manual_seed(s) for s in seeds], noise_sampler_seed=noise_seeds)
        for row, (seed, noise_seed) in enumerate(zip(seeds, noise_seeds)):
            single = run_sde_pipeline(unet, torch.Generator().manual_seed(seed), noise_sampler_seed=noise_seed)
            assert_bits_equal(batch[row], single[0], f"row {row}")


def test_drop_in_matches_the_diffusers_contract() -> None:
    x = torch.zeros(2, 3, 4)
    tree = brownian.BatchedBrownianTree(x, 5.0, 1.0, seed=[1, 2])  # t0 > t1: sorted, with a sign
    w = tree(2.0, 3.0)
    assert w.shape == x.shape and tree.batched
    assert torch.equal(tree(3.0, 2.0), -w)
    # diffusers multiplies by the product of the two sort signs: here -1.
    assert_bits_equal(w[0], -detnoise.BrownianTree(1.0, 5.0, (3, 4), seed=1, tol=1e-6)(2.0, 3.0))
    single = brownian.BatchedBrownianTree(x, 1.0, 5.0, seed=1)  # one seed: one tree of x's whole shape
    assert not single.batched and single(2.0, 3.0).shape == x.shape
    with pytest.raises(AssertionError):
        brownian.BatchedBrownianTree(x, 0.0, 1.0, seed=[1, 2, 3])


def test_noise_sampler_is_unit_variance_step_noise() -> None:
    x = torch.zeros(1, 200, 500)
    sampler = detnoise.BrownianTreeNoiseSampler(x, 0.03, 14.6, seed=0, transform=lambda s: s.log().neg())
    noise = sampler(torch.tensor(10.0), torch.tensor(7.0))
    assert noise.shape == x.shape
    assert abs(noise.var().item() - 1.0) < 0.02
    again = detnoise.BrownianTreeNoiseSampler(x, 0.03, 14.6, seed=0, transform=lambda s: s.log().neg())
    assert torch.equal(again(torch.tensor(10.0), torch.tensor(7.0)), noise)
