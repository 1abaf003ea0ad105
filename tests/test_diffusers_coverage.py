"""patch_diffusers() covers every draw of a pipeline call (issue: direct torch draws with a
generator, global-RNG draws inside diffusers, discrete schedulers), and the patterns diffusers'
fast tests use: seeded runs, generator lists, num_images_per_prompt, latents passed in, and the
mask-latents skip. Everything is built offline from tiny components."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

import detnoise
from detnoise import diffusers_integration, randn_tensor, torch_patch

from conftest import assert_bits_equal

diffusers = pytest.importorskip("diffusers")
from diffusers import AmusedScheduler, DDPMPipeline, DDPMScheduler, ScoreSdeVeScheduler  # noqa: E402

from test_diffusers_pipelines import (  # noqa: E402
    assert_draws_follow_the_stream, blocks, quiet, tiny_stable_diffusion, tiny_unet)


@pytest.fixture(autouse=True)
def always_unpatched():
    state = torch.get_rng_state()
    yield
    detnoise.unpatch_diffusers()
    detnoise.unpatch_torch()
    torch.set_rng_state(state)


# ---- the mask-latents skip (diffusers' test_stable_diffusion_inpaint_mask_latents) -----------------


def test_mask_latents_skip_matches_a_randn_tensor_draw() -> None:
    shape = (1, 4, 8, 8)
    with detnoise.patch_diffusers():
        g = torch.Generator().manual_seed(0)
        randn_tensor(shape, generator=g)  # the pipeline's first draw (image latents)
        second = randn_tensor(shape, generator=g)
        g = torch.Generator().manual_seed(0)
        torch.randn(shape, generator=g)  # the test skips that draw with torch itself
        assert_bits_equal(randn_tensor(shape, generator=g), second)


# ---- a generator-passing direct draw (LTX image-to-video's decode noise) ---------------------------


class DecodeNoisePipeline(DDPMPipeline):
    """DDPM plus LTX-style decode noise: ``torch.randn(latents.shape, generator=generator)``."""

    def __call__(self, generator, **kwargs):
        images = super().__call__(generator=generator, output_type="np", **kwargs).images
        noise = torch.randn(images.shape, generator=generator, dtype=torch.float64)
        return images + 0.01 * noise.numpy()


def test_generator_passing_direct_draw_site() -> None:
    pipe = quiet(DecodeNoisePipeline(unet=tiny_unet(), scheduler=DDPMScheduler(num_train_timesteps=50)))
    run = dict(batch_size=1, num_inference_steps=3)
    with detnoise.patch_diffusers():
        first = pipe(torch.Generator().manual_seed(6), **run)
        second = pipe(torch.Generator().manual_seed(6), **run)
    with detnoise.patch_torch(), detnoise.patch_diffusers():
        explicit = pipe(detnoise.Generator(seed=6), **run)  # every draw a detnoise draw, explicitly
    unpatched = pipe(torch.Generator().manual_seed(6), **run)
    assert np.array_equal(first, second) and np.array_equal(first, explicit)
    assert not np.array_equal(first, unpatched)


# ---- a global-RNG site inside diffusers (scheduling_sde_ve.add_noise) -----------------------------


def test_global_rng_site_inside_diffusers_and_torch_rng_outside() -> None:
    scheduler = ScoreSdeVeScheduler(num_train_timesteps=50)
    x = torch.zeros(2, 3, 4, 4)
    steps = torch.tensor([3, 7])
    with detnoise.patch_diffusers():
        torch.manual_seed(11)
        first = scheduler.add_noise(x, None, steps)  # torch.randn_like(original_samples) in diffusers
        torch.manual_seed(11)
        second = scheduler.add_noise(x, None, steps)
        torch.manual_seed(11)
        outside = torch.randn_like(x)  # user code: still torch's global RNG
    sigmas = scheduler.discrete_sigmas[steps][:, None, None, None]
    assert_bits_equal(first, second)
    assert_bits_equal(first, detnoise.normal(x.shape, seed=11) * sigmas + x)
    torch.manual_seed(11)
    assert_bits_equal(outside, torch.randn_like(x))


def test_weight_initialisers_are_left_alone() -> None:
    from diffusers.models.embeddings import GaussianFourierProjection

    def build() -> torch.Tensor:
        torch.manual_seed(2)
        return GaussianFourierProjection(embedding_size=8).weight.detach().clone()

    unpatched = build()
    with detnoise.patch_diffusers():
        assert_bits_equal(build(), unpatched)  # nn.Parameter(torch.randn(...)) in __init__: torch's RNG


# ---- a discrete scheduler (amused: torch.multinomial, torch.rand with a generator) ------------------


def amused_loop(generator) -> torch.Tensor:
    scheduler = AmusedScheduler(mask_token_id=15)
    scheduler.set_timesteps(4)
    sample = torch.full((1, 4, 4), 15, dtype=torch.long)
    logits = torch.linspace(-2.0, 2.0, 1 * 4 * 4 * 15, dtype=torch.float32).reshape(1, 15, 4, 4).sin()
    for t in scheduler.timesteps:
        sample = scheduler.step(logits, t, sample, generator=generator).prev_sample
    return sample


def test_discrete_scheduler() -> None:
    with detnoise.patch_diffusers():
        first = amused_loop(torch.Generator().manual_seed(3))
        second = amused_loop(torch.Generator().manual_seed(3))
    with detnoise.patch_torch():
        explicit = amused_loop(detnoise.Generator(seed=3))
    assert torch.equal(first, second) and torch.equal(first, explicit)


# ---- diffusers' fast-test patterns on a tiny Stable Diffusion pipeline ---------------------------


@pytest.fixture(scope="module")
def stable_diffusion():
    return tiny_stable_diffusion()


def test_num_images_per_prompt_and_seeded_runs(stable_diffusion) -> None:
    pipe, run = stable_diffusion
    with detnoise.patch_diffusers(), diffusers_integration.record_draws() as log:
        first = pipe(generator=torch.Generator().manual_seed(4), num_images_per_prompt=2, **run).images
        second = pipe(generator=torch.Generator().manual_seed(4), num_images_per_prompt=2, **run).images
    assert np.array_equal(first, second)
    assert log[0][0] == (2, 4, 1, 1) or log[0][0][0] == 2  # one draw for both images
    assert_draws_follow_the_stream(log[:4], seed=4)


def test_generator_list_rows_equal_single_runs(stable_diffusion) -> None:
    pipe, run = stable_diffusion
    with detnoise.patch_diffusers(), diffusers_integration.record_draws() as log:
        pipe(generator=[torch.Generator().manual_seed(s) for s in (1, 2)], num_images_per_prompt=2, **run)
        singles = []
        for seed in (1, 2):
            with diffusers_integration.record_draws() as single:
                pipe(generator=torch.Generator().manual_seed(seed), **run)
            singles.append(single)
    for row in range(2):  # every draw's row r equals run r's draw
        for (_, batch), (_, one) in zip(log[:4], singles[row]):
            assert_bits_equal(batch[row : row + 1], one)


def test_latents_passed_in_skip_the_initial_draw(stable_diffusion) -> None:
    pipe, run = stable_diffusion
    latents = detnoise.normal((1, 4, 1, 1), seed=99)
    with detnoise.patch_diffusers(), diffusers_integration.record_draws() as log:
        first = pipe(generator=torch.Generator().manual_seed(5), latents=latents, **run).images
        second = pipe(generator=torch.Generator().manual_seed(5), latents=latents, **run).images
    assert np.array_equal(first, second)
    assert len(log) == 6  # step noise only, 3 per run
    assert_draws_follow_the_stream(log[:3], seed=5)  # the step noise starts at block 0


def test_torch_draw_between_runs_continues_the_stream() -> None:
    pipe = quiet(DDPMPipeline(unet=tiny_unet(), scheduler=DDPMScheduler(num_train_timesteps=50)))
    g = torch.Generator().manual_seed(9)
    with detnoise.patch_diffusers(), diffusers_integration.record_draws() as log:
        pipe(batch_size=1, generator=g, num_inference_steps=3, output_type="np")
        torch.randperm(7, generator=g)  # a detnoise draw now: 4 blocks of the same stream
        pipe(batch_size=1, generator=g, num_inference_steps=3, output_type="np")
    used = sum(blocks(shape) for shape, _ in log[:3])
    for index, (shape, values) in enumerate(log[3:]):
        assert_bits_equal(values, detnoise.normal(shape, seed=9, offset=used + 4), f"draw {index}")
        used += blocks(shape)


def test_patch_report_all_names_what_remains() -> None:
    with detnoise.patch_diffusers():
        report = detnoise.patch_report(all=True)
    remaining = {(f.module, f.code.split("(")[0]) for f in report.uncovered}
    # diffusers 0.30 also ships Flax schedulers; they draw with jax.random, which is not torch's RNG.
    remaining = {(module, code) for module, code in remaining if not module.endswith("_flax")}
    # 0.42.1: one numpy draw in an RL example; torchsde's Brownian interval in the SDE solver only
    # where torchsde is missing (with it, patch_diffusers swaps in detnoise.BatchedBrownianTree).
    sde = "diffusers.schedulers.scheduling_dpmsolver_sde"
    have_torchsde = importlib.util.find_spec("torchsde") is not None
    expected = {"diffusers.experimental.rl.value_guided_sampling"} | (set() if have_torchsde else {sde})
    assert {module for module, _ in remaining} <= expected
    covered = {f.module for f in report.findings if f.status == "covered"}
    wanted = {"diffusers.schedulers.scheduling_amused", "diffusers.schedulers.scheduling_sde_ve",
              "diffusers.pipelines.ltx.pipeline_ltx_image2video"} | ({sde} if have_torchsde else set())
    # Older diffusers (0.30, the oldest admitted) has no LTX pipelines: require the modules it ships.
    root = Path(diffusers.__file__).parent
    assert {m for m in wanted if root.joinpath(*m.split(".")[1:]).with_suffix(".py").is_file()} <= covered
    assert any(f.status == "initialiser" and f.function == "__init__" for f in report.findings)


def test_stable_diffusion_inpaint_mask_latents_pattern() -> None:
    # diffusers' test_stable_diffusion_inpaint_mask_latents, on tiny offline components.
    transformers = pytest.importorskip("transformers")
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionInpaintPipeline, UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=8, in_channels=9, out_channels=4, block_out_channels=(8, 16),
                                layers_per_block=1, cross_attention_dim=16, attention_head_dim=2, norm_num_groups=4,
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"))
    vae = AutoencoderKL(in_channels=3, out_channels=3, block_out_channels=(8, 8), latent_channels=4, norm_num_groups=4,
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2)
    text_encoder = transformers.CLIPTextModel(transformers.CLIPTextConfig(
        hidden_size=16, intermediate_size=32, num_attention_heads=2, num_hidden_layers=1, vocab_size=64,
        max_position_embeddings=8, projection_dim=16))
    pipe = quiet(StableDiffusionInpaintPipeline(vae=vae, text_encoder=text_encoder, tokenizer=None, unet=unet,
                                                scheduler=PNDMScheduler(skip_prk_steps=True), safety_checker=None,
                                                feature_extractor=None, requires_safety_checker=False))
    embeds = torch.rand(1, 4, 16, generator=torch.Generator().manual_seed(0))
    image = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    mask = (torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(2)) > 0.5).float()
    run = dict(prompt_embeds=embeds, negative_prompt_embeds=torch.zeros_like(embeds), height=16, width=16,
               num_inference_steps=2, strength=0.9, output_type="np", mask_image=mask)
    with detnoise.patch_diffusers():
        out_0 = pipe(image=image, generator=torch.Generator().manual_seed(0), **run).images
        processed = pipe.image_processor.preprocess(image)
        masked = processed * (mask < 0.5)
        generator = torch.Generator().manual_seed(0)
        image_latents = pipe._encode_vae_image(processed, generator=generator)
        torch.randn((1, 4, 8, 8), generator=generator)
        mask_latents = pipe._encode_vae_image(masked, generator=generator)
        generator = torch.Generator().manual_seed(0)
        torch.randn((1, 4, 8, 8), generator=generator)
        out_1 = pipe(image=image_latents, masked_image_latents=mask_latents, generator=generator, **run).images
    assert np.abs(out_0 - out_1).max() < 1e-4


# ---- patch-report classifies a draw by what it does, not by the function it sits in -----------------

# The two lines of diffusers 0.42.1 that a function-name rule got wrong, in their context there.
_BROWNIAN_SEED = '''
class BatchedBrownianTree:
    def __init__(self, x, t0, t1, seed=None, **kwargs):
        w0 = kwargs.get("w0", torch.zeros_like(x))
        if seed is None:
            seed = torch.randint(0, 2**63 - 1, []).item()
        self.trees = [torchsde.BrownianInterval(t0=t0, t1=t1, size=w0.shape, entropy=s) for s in seed]
'''
_PATCHED_INPUTS_WEIGHT = '''
class Transformer2DModel:
    def _init_patched_inputs(self, norm_type):
        if norm_type == "ada_norm_single":
            self.norm_out = nn.LayerNorm(self.inner_dim, elementwise_affine=False, eps=1e-6)
            self.scale_shift_table = nn.Parameter(torch.randn(2, self.inner_dim) / self.inner_dim**0.5)
'''


def _status_of(source: str, code_start: str) -> str:
    findings = diffusers_integration._scan_source("diffusers.example", source, True, range(0))
    return next(f.status for f in findings if f.code.startswith(code_start))


def test_patch_report_classifies_draws_by_what_they_do() -> None:
    # The Brownian tree's seed is drawn in __init__ but seeds noise; the Parameter is made outside
    # __init__ but is a weight.
    assert _status_of(_BROWNIAN_SEED, "seed = torch.randint") == "covered"
    assert _status_of(_PATCHED_INPUTS_WEIGHT, "self.scale_shift_table = nn.Parameter") == "initialiser"
    # A weight reached through local names, and an in-place draw into a weight, are weights too.
    flow = ("def build(self, heads):\n    A = torch.zeros(heads).uniform_(0, 16)\n    log_a = torch.log(A)\n"
            "    self.A_log = nn.Parameter(log_a)\n    noise = torch.randn(heads)\n    return noise\n")
    assert _status_of(flow, "A = torch.zeros") == "initialiser"
    assert _status_of(flow, "noise = torch.randn") == "covered"
    assert _status_of("def f(self):\n    self.embedding.weight.data.uniform_(-1, 1)\n", "self.embedding") == "initialiser"


def test_patch_report_all_on_the_installed_diffusers_lines() -> None:
    """The same two lines as the installed diffusers (0.42.1) has them, through patch_report(all=True)."""
    with detnoise.patch_diffusers():
        findings = detnoise.patch_report(all=True).findings
    by_line = {(f.module, f.code): f.status for f in findings}
    seed = ("diffusers.schedulers.scheduling_dpmsolver_sde", "seed = torch.randint(0, 2**63 - 1, []).item()")
    weight = ("diffusers.models.transformers.transformer_2d",
              "self.scale_shift_table = nn.Parameter(torch.randn(2, self.inner_dim) / self.inner_dim**0.5)")
    if seed not in by_line or weight not in by_line:
        pytest.skip(f"diffusers {diffusers.__version__} does not have the two lines of 0.42.1")
    assert by_line[seed] == "covered"
    assert by_line[weight] == "initialiser"


def test_patched_diffusers_leaves_every_reported_initialiser_to_torch() -> None:
    # The runtime rule (by function name) must agree with the report: transformer_2d's
    # _init_patched_inputs makes a weight, so its draw stays torch's under patch_diffusers().
    assert torch_patch.is_initialiser("_init_patched_inputs")
    with detnoise.patch_diffusers():
        report = detnoise.patch_report(all=True)
    assert "still drawn by detnoise" not in str(report)
    assert not [f for f in report.findings if f.status == "initialiser" and diffusers_integration._patched_anyway(f)]
