"""Real diffusers pipelines built offline from tiny configs, patched with detnoise.

Every noise tensor the pipelines draw is captured (detnoise.diffusers_integration.record_draws)
and compared bit for bit with detnoise draws from the same seed, taken in order along the stream.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

import detnoise
from detnoise import diffusers_integration

from conftest import assert_bits_equal, requires_cuda

diffusers = pytest.importorskip("diffusers")
from diffusers import (  # noqa: E402
    AutoencoderKL,
    DDIMPipeline,
    DDIMScheduler,
    DDPMPipeline,
    DDPMScheduler,
    EulerAncestralDiscreteScheduler,
    UNet2DModel,
)
from diffusers.models.unets.unet_2d import UNet2DOutput  # noqa: E402
from diffusers.utils import torch_utils  # noqa: E402

ORIGINAL_RANDN_TENSOR = torch_utils.randn_tensor


class PerSampleUNet(UNet2DModel):
    """A UNet2DModel that runs each batch row on its own.

    torch picks different GEMM kernels for batch 1 and batch 2 (the time-embedding Linear), which
    changes the model's outputs in the last bit (measured here: up to 1.5e-7). That is model
    arithmetic, not noise; running rows one by one removes it, so that these tests can check bit for
    bit that everything random in a batch is per row.
    """

    def forward(self, sample, timestep, *args, **kwargs):
        rows = []
        for row in range(sample.shape[0]):
            t = timestep[row : row + 1] if torch.is_tensor(timestep) and timestep.dim() > 0 else timestep
            rows.append(super().forward(sample[row : row + 1], t, *args, **kwargs).sample)
        return UNet2DOutput(sample=torch.cat(rows))


def tiny_unet(cls=PerSampleUNet) -> UNet2DModel:
    torch.manual_seed(0)
    return cls(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(8, 16), layers_per_block=1,
               down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
               norm_num_groups=4)


def quiet(pipe):
    pipe.set_progress_bar_config(disable=True)
    return pipe


def blocks(shape) -> int:
    return (int(np.prod(shape)) + 3) // 4


def assert_draws_follow_the_stream(log, seed: int, dtype: torch.dtype = torch.float32) -> None:
    """Each captured draw is the next piece of stream (seed, 0): consecutive, no repeats."""
    assert len(log) >= 2
    offset = 0
    for index, (shape, values) in enumerate(log):
        assert_bits_equal(values, detnoise.normal(shape, seed=seed, offset=offset, dtype=dtype), f"draw {index}")
        offset += blocks(shape)


@pytest.fixture(autouse=True)
def always_unpatched():
    yield
    detnoise.unpatch_diffusers()


def test_ddpm_initial_latents_and_every_step_noise() -> None:
    pipe = quiet(DDPMPipeline(unet=tiny_unet(), scheduler=DDPMScheduler(num_train_timesteps=50)))
    with detnoise.patch_diffusers(), diffusers_integration.record_draws() as log:
        pipe(batch_size=1, generator=torch.Generator().manual_seed(5), num_inference_steps=6, output_type="np")
    assert len(log) == 6  # the initial latents, then one variance noise per step with t > 0
    assert_draws_follow_the_stream(log, seed=5)


def test_ddim_with_eta_draws_variance_noise_from_the_stream() -> None:
    pipe = quiet(DDIMPipeline(unet=tiny_unet(), scheduler=DDIMScheduler(num_train_timesteps=50)))
    with detnoise.patch_diffusers(), diffusers_integration.record_draws() as log:
        pipe(batch_size=1, generator=torch.Generator().manual_seed(8), num_inference_steps=4, eta=0.7, output_type="np")
    assert len(log) == 5
    assert_draws_follow_the_stream(log, seed=8)


def test_euler_ancestral_step_noise() -> None:
    scheduler = EulerAncestralDiscreteScheduler(num_train_timesteps=50)
    scheduler.set_timesteps(4)
    g = torch.Generator().manual_seed(21)
    with detnoise.patch_diffusers(), diffusers_integration.record_draws() as log:
        sample = diffusers_integration.randn_tensor((1, 3, 8, 8), generator=g) * scheduler.init_noise_sigma
        for t in scheduler.timesteps:
            model_output = 0.1 * scheduler.scale_model_input(sample, t)
            sample = scheduler.step(model_output, t, sample, generator=g).prev_sample
    assert len(log) == 5
    assert_draws_follow_the_stream(log, seed=21)


def test_vae_latent_dist_sample() -> None:
    torch.manual_seed(0)
    vae = AutoencoderKL(in_channels=3, out_channels=3, block_out_channels=(8,), latent_channels=4, norm_num_groups=4,
                        down_block_types=("DownEncoderBlock2D",), up_block_types=("UpDecoderBlock2D",))
    image = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        dist = vae.encode(image).latent_dist
    with detnoise.patch_diffusers(), diffusers_integration.record_draws() as log:
        latents = dist.sample(generator=torch.Generator().manual_seed(13))
    assert len(log) == 1
    noise = detnoise.normal(dist.mean.shape, seed=13)
    assert_bits_equal(log[0][1], noise)
    assert torch.equal(latents, dist.mean + dist.std * noise)


def test_batch_of_generators_equals_single_runs() -> None:
    pipe = quiet(DDPMPipeline(unet=tiny_unet(), scheduler=DDPMScheduler(num_train_timesteps=50)))
    seeds = [3, 4, 5]
    with detnoise.patch_diffusers():
        batch = pipe(batch_size=3, generator=[torch.Generator().manual_seed(s) for s in seeds],
                     num_inference_steps=4, output_type="np").images
        singles = [pipe(batch_size=1, generator=torch.Generator().manual_seed(s), num_inference_steps=4,
                        output_type="np").images[0] for s in seeds]
    for row, single in enumerate(singles):
        assert np.array_equal(batch[row], single), f"image {row}"


def test_consecutive_calls_continue_reseeding_restarts_and_torch_draws_in_between_move_on() -> None:
    pipe = quiet(DDPMPipeline(unet=tiny_unet(), scheduler=DDPMScheduler(num_train_timesteps=50)))
    g = torch.Generator().manual_seed(9)
    with detnoise.patch_diffusers(), diffusers_integration.record_draws() as log:
        first = pipe(batch_size=1, generator=g, num_inference_steps=3, output_type="np").images
        torch.randperm(7, generator=g)  # torch draws from the same generator in between
        second = pipe(batch_size=1, generator=g, num_inference_steps=3, output_type="np").images
        g.manual_seed(9)
        third = pipe(batch_size=1, generator=g, num_inference_steps=3, output_type="np").images
    assert_draws_follow_the_stream(log[:3], seed=9)
    assert not np.array_equal(first, second)
    assert np.array_equal(first, third)


def test_float16_noise_is_float32_noise_rounded() -> None:
    import inspect

    if "dtype=self.unet.dtype" not in inspect.getsource(DDPMPipeline.__call__):
        pytest.skip(f"diffusers {diffusers.__version__}'s DDPMPipeline draws float32 noise whatever the UNet's dtype")
    pipe = quiet(DDPMPipeline(unet=tiny_unet(), scheduler=DDPMScheduler(num_train_timesteps=50)))
    with detnoise.patch_diffusers(), diffusers_integration.record_draws() as log32:
        pipe(batch_size=2, generator=torch.Generator().manual_seed(2), num_inference_steps=2, output_type="np")
    pipe.unet.to(torch.float16)
    with detnoise.patch_diffusers(), diffusers_integration.record_draws() as log16:
        pipe(batch_size=2, generator=torch.Generator().manual_seed(2), num_inference_steps=2, output_type="np")
    assert len(log16) == len(log32) == 2
    for (_, wide), (_, narrow) in zip(log32, log16):
        assert narrow.dtype == torch.float16
        assert torch.equal(narrow, wide.to(torch.float16))


def tiny_sd_components(sample_size: int = 8, **text_config) -> dict:
    """Tiny random UNet, VAE (one level: latents as large as images) and CLIP text model of a
    StableDiffusionPipeline, built offline; ``text_config`` adds CLIPTextConfig fields."""
    transformers = pytest.importorskip("transformers")
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)  # weight initialisation only
    unet = UNet2DConditionModel(sample_size=sample_size, in_channels=4, out_channels=4, block_out_channels=(8, 16),
                                layers_per_block=1, cross_attention_dim=16, attention_head_dim=2, norm_num_groups=4,
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"))
    vae = AutoencoderKL(in_channels=3, out_channels=3, block_out_channels=(8,), latent_channels=4, norm_num_groups=4,
                        down_block_types=("DownEncoderBlock2D",), up_block_types=("UpDecoderBlock2D",))
    text_encoder = transformers.CLIPTextModel(transformers.CLIPTextConfig(
        hidden_size=16, intermediate_size=32, num_attention_heads=2, num_hidden_layers=1, vocab_size=64,
        max_position_embeddings=8, projection_dim=16, **text_config))
    return dict(unet=unet, vae=vae, text_encoder=text_encoder)


def tiny_stable_diffusion():
    """A StableDiffusionPipeline of tiny random components, built offline (no tokenizer: prompts are
    given as embeddings), and the keyword arguments of a 3-step 8x8 run."""
    from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionPipeline

    parts = tiny_sd_components()
    pipe = quiet(StableDiffusionPipeline(
        **parts, tokenizer=None,
        scheduler=EulerAncestralDiscreteScheduler(num_train_timesteps=50),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False))
    embeds = torch.rand(1, 4, 16, generator=torch.Generator().manual_seed(0))
    run = dict(prompt_embeds=embeds, negative_prompt_embeds=torch.zeros_like(embeds), height=8, width=8,
               num_inference_steps=3, output_type="np")
    return pipe, run


def test_stable_diffusion_pipeline_from_tiny_components() -> None:
    pipe, run = tiny_stable_diffusion()
    unpatched = pipe(generator=torch.Generator().manual_seed(4), **run).images
    with detnoise.patch_diffusers(), diffusers_integration.record_draws() as log:
        patched = pipe(generator=torch.Generator().manual_seed(4), **run).images
    assert len(log) == 4  # initial latents + one ancestral noise per step
    assert_draws_follow_the_stream(log, seed=4)
    assert not np.array_equal(patched, unpatched)
    again = pipe(generator=torch.Generator().manual_seed(4), **run).images
    assert np.array_equal(again, unpatched)  # after unpatching: bit-identical to never patched


def test_patch_rebinds_every_loaded_module_and_unpatch_restores_them() -> None:
    import diffusers.pipelines.ddpm.pipeline_ddpm as pipeline_ddpm
    import diffusers.schedulers.scheduling_ddpm as scheduling_ddpm

    holders = {name for name, module in list(sys.modules.items())
               if name.startswith("diffusers") and getattr(module, "randn_tensor", None) is ORIGINAL_RANDN_TENSOR}
    assert {"diffusers.utils.torch_utils", pipeline_ddpm.__name__, scheduling_ddpm.__name__} <= holders
    handle = detnoise.patch_diffusers()
    assert detnoise.patch_diffusers() is handle  # patching twice is harmless
    assert set(handle.rebound) == holders
    for name in holders:
        assert sys.modules[name].randn_tensor is detnoise.randn_tensor
    import diffusers.schedulers.scheduling_lcm as imported_later  # picks up the patched binding

    assert imported_later.randn_tensor is detnoise.randn_tensor
    detnoise.unpatch_diffusers()
    for name in holders | {imported_later.__name__}:
        assert sys.modules[name].randn_tensor is ORIGINAL_RANDN_TENSOR, name
    assert not diffusers_integration.is_patched()


def test_context_manager_and_report() -> None:
    with detnoise.patch_diffusers() as handle:
        assert handle.active
        report = detnoise.patch_report()
        assert report.patched and "diffusers.utils.torch_utils" in report.covered
        assert any("patch active: yes" == line for line in report.lines())
    assert not handle.active
    assert torch_utils.randn_tensor is ORIGINAL_RANDN_TENSOR


def test_report_lists_randomness_outside_randn_tensor() -> None:
    import diffusers.schedulers.scheduling_amused  # noqa: F401
    import diffusers.schedulers.scheduling_sde_ve  # noqa: F401

    findings = detnoise.patch_report().findings
    assert any(f.module.endswith("scheduling_amused") and f.uses_generator for f in findings)
    assert any(f.module.endswith("scheduling_sde_ve") and not f.uses_generator for f in findings)
    assert not any(f.module == "diffusers.utils.torch_utils" and "randn(shape" in f.code for f in findings)


def test_wrong_signature_is_refused(monkeypatch) -> None:
    monkeypatch.setattr(torch_utils, "randn_tensor", lambda shape, generator=None: None)
    with pytest.raises(RuntimeError, match="not supported"):
        detnoise.patch_diffusers()
    assert not diffusers_integration.is_patched()


@requires_cuda
def test_cpu_and_cuda_torch_generators_give_identical_latents() -> None:
    pipe = quiet(DDPMPipeline(unet=tiny_unet(), scheduler=DDPMScheduler(num_train_timesteps=50)))
    with detnoise.patch_diffusers(), diffusers_integration.record_draws() as cpu_log:
        pipe(batch_size=2, generator=[torch.Generator().manual_seed(s) for s in (1, 2)], num_inference_steps=3, output_type="np")
    pipe.to("cuda")
    with detnoise.patch_diffusers(), diffusers_integration.record_draws() as cuda_log:
        pipe(batch_size=2, generator=[torch.Generator("cuda").manual_seed(s) for s in (1, 2)], num_inference_steps=3, output_type="np")
    assert len(cpu_log) == len(cuda_log) == 3
    for (_, on_cpu), (_, on_cuda) in zip(cpu_log, cuda_log):
        assert on_cuda.device.type == "cuda"
        assert_bits_equal(on_cuda, on_cpu)
