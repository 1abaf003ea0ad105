"""A real StableDiffusionPipeline with DPMSolverSDEScheduler under patch_diffusers (issue 11).

Tiny components are built offline (UNet, VAE, CLIP text model and a CLIP tokenizer written from a
26-letter vocabulary), so nothing downloads. test_brownian_diffusers.py checks the scheduler in a
hand-written loop; this file checks what a pipeline call does: the run repeats bit for bit, every
Brownian query the scheduler makes equals a direct detnoise.BrownianTree query with the tree seed
SPEC §9.5 defines, and a batch with per-row generators and noise seeds gives each row the single-row
run's noise (initial latents and Brownian increments).
"""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import detnoise
from detnoise import brownian, diffusers_integration, reference

from conftest import assert_bits_equal

pytest.importorskip("torchsde")  # diffusers' scheduling_dpmsolver_sde imports it
transformers = pytest.importorskip("transformers")
diffusers = pytest.importorskip("diffusers")
from diffusers import DPMSolverSDEScheduler, StableDiffusionPipeline  # noqa: E402

from test_diffusers_pipelines import tiny_sd_components  # noqa: E402

# One VAE level: vae_scale_factor 1, so 16x16 images are 16x16 latents of 4 channels.
RUN = dict(height=16, width=16, num_inference_steps=3, output_type="np")


@pytest.fixture(autouse=True)
def always_unpatched():
    yield
    detnoise.unpatch_diffusers()


def tiny_tokenizer(folder: Path) -> Any:
    """A CLIPTokenizer from files written here: start/end tokens and each lowercase letter, alone
    and word-final; no merges, so a word is its letters."""
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for letter in string.ascii_lowercase:
        vocab[letter] = len(vocab)
        vocab[letter + "</w>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return transformers.CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=8)


@pytest.fixture(scope="module")
def components(tmp_path_factory) -> dict[str, Any]:
    parts = tiny_sd_components(sample_size=16, bos_token_id=0, eos_token_id=1, pad_token_id=1)
    return dict(**parts, tokenizer=tiny_tokenizer(tmp_path_factory.mktemp("tok")),
                safety_checker=None, feature_extractor=None, requires_safety_checker=False)


def sde_pipeline(components: dict[str, Any], noise_sampler_seed: int | list[int] | None) -> StableDiffusionPipeline:
    pipe = StableDiffusionPipeline(scheduler=DPMSolverSDEScheduler(noise_sampler_seed=noise_sampler_seed),
                                   **components)
    pipe.set_progress_bar_config(disable=True)
    return pipe


class Query:
    """One Brownian query the scheduler made: the drop-in tree, the times asked, the increment."""

    def __init__(self, tree: brownian.BatchedBrownianTree, s: float, t: float, values: torch.Tensor) -> None:
        self.tree, self.s, self.t, self.values = tree, s, t, values


@pytest.fixture
def queries(monkeypatch) -> list[Query]:
    """Every call of detnoise's BatchedBrownianTree, in order (the patched scheduler's noise)."""
    log: list[Query] = []
    original_call = brownian.BatchedBrownianTree.__call__

    def recording_call(self, t0, t1):
        result = original_call(self, t0, t1)
        log.append(Query(self, float(t0), float(t1), result.clone()))
        return result

    monkeypatch.setattr(brownian.BatchedBrownianTree, "__call__", recording_call)
    return log


def run(pipe: StableDiffusionPipeline, prompt: str | list[str], generator, log: list[Query]) -> tuple[np.ndarray, list[Query]]:
    """The pipeline's image and the Brownian queries this call made."""
    first = len(log)
    image = pipe(prompt, generator=generator, **RUN).images
    return image, log[first:]


def queries_per_run(pipe: StableDiffusionPipeline) -> int:
    """DPM-Solver-SDE calls scheduler.step once per timestep (two stages per step: (s, midpoint),
    then (s, t)) and each call queries the tree once, except the last one, whose step to sigma 0
    adds no noise."""
    return len(pipe.scheduler.timesteps) - 1


def tree_interval(pipe: StableDiffusionPipeline) -> tuple[float, float]:
    """[t0, t1] diffusers' DPMSolverSDEScheduler gives its tree: the smallest positive and the
    largest sigma of the schedule (taken from the scheduler, not from the tree under test)."""
    sigmas = pipe.scheduler.sigmas
    return sigmas[sigmas > 0].min().item(), sigmas.max().item()


def assert_direct_tree_queries(queries: list[Query], interval: tuple[float, float], tree_seed: int) -> None:
    """Each query equals, bit for bit, ``BrownianTree(t0, t1, seed=tree_seed, tol=1e-6)(s, t)``
    (diffusers' tolerance), with s and t clamped into [t0, t1] as the drop-in documents."""
    low, high = interval
    assert queries, "the scheduler made no query of detnoise's tree: patch_diffusers did not reach it"
    for index, query in enumerate(queries):
        direct = detnoise.BrownianTree(low, high, query.values.shape, seed=tree_seed, tol=1e-6)
        s, t = (min(max(time, low), high) for time in (query.s, query.t))
        # W(s, t) is the exact negation of W(t, s) (SPEC §9.5), so the drop-in's sort-and-sign
        # gives the same bits as the direct query in the caller's order.
        assert_bits_equal(query.values, direct(s, t), f"query {index} ({query.s}, {query.t})")


def test_seeded_runs_repeat_and_each_query_is_a_direct_tree_query(components, queries) -> None:
    pipe = sde_pipeline(components, noise_sampler_seed=77)
    with detnoise.patch_diffusers():
        first, first_queries = run(pipe, "a cat", torch.Generator().manual_seed(1), queries)
        second, second_queries = run(pipe, "a cat", torch.Generator().manual_seed(1), queries)
    assert_bits_equal(second, first, "second run's image")
    assert len(first_queries) == len(second_queries) == queries_per_run(pipe) == 4
    for one, other in zip(first_queries, second_queries):
        assert_bits_equal(other.values, one.values, "second run's noise")
    assert_direct_tree_queries(first_queries, tree_interval(pipe), tree_seed=77)


def test_noise_seed_none_takes_the_tree_seed_from_torch_default_generator(components, queries) -> None:
    # noise_sampler_seed=None: diffusers draws the tree seed from torch's global RNG; detnoise takes
    # one block of torch.default_generator instead (SPEC §9.5). After torch.manual_seed(k) that
    # generator is at block 0 of stream 0 under seed k (§3), and the pipeline's own draws use
    # `generator=`, so the tree seed is w0 | w1 << 32 of that block, computed here by the reference.
    seed = 5
    words = reference.philox4x32_10((0, 0, 0, 0), (seed, 0))
    tree_seed = words[0] | (words[1] << 32)
    pipe = sde_pipeline(components, noise_sampler_seed=None)
    with detnoise.patch_diffusers():
        torch.manual_seed(seed)
        first, first_queries = run(pipe, "a dog", torch.Generator().manual_seed(1), queries)
        torch.manual_seed(seed)
        second, _ = run(pipe, "a dog", torch.Generator().manual_seed(1), queries)
        third, _ = run(pipe, "a dog", torch.Generator().manual_seed(1), queries)  # the generator moved on
    assert_bits_equal(second, first, "reseeded run's image")
    assert not np.array_equal(third, first)
    assert_direct_tree_queries(first_queries, tree_interval(pipe), tree_seed=tree_seed)
    # The public form of the same rule: a tree built from a generator in that state.
    low, high = tree_interval(pipe)
    from_generator = detnoise.BrownianTree(low, high, first_queries[0].values.shape,
                                           generator=torch.Generator().manual_seed(seed), tol=1e-6)
    assert from_generator.seeds == [tree_seed]


def test_batch_rows_get_the_single_row_runs_noise(components, queries) -> None:
    prompts, seeds, noise_seeds = ["a cat", "a dog"], [3, 4], [10, 11]
    with detnoise.patch_diffusers():
        with diffusers_integration.record_draws() as batch_draws:
            batch_pipe = sde_pipeline(components, noise_sampler_seed=noise_seeds)
            _, batch_queries = run(batch_pipe, prompts, [torch.Generator().manual_seed(s) for s in seeds], queries)
        singles = []
        for prompt, seed, noise_seed in zip(prompts, seeds, noise_seeds):
            with diffusers_integration.record_draws() as draws:
                _, row_queries = run(sde_pipeline(components, noise_sampler_seed=noise_seed), prompt,
                                     torch.Generator().manual_seed(seed), queries)
            singles.append((draws, row_queries))
    # Only the noise is compared, not the images: the UNet's CPU arithmetic depends on the batch
    # size (with guidance, batch 4 against 2), so the rows' images differ from the single runs' in
    # the last bits although every noise value going in is identical.
    assert len(batch_draws) == 1 and batch_draws[0][0] == (2, 4, 16, 16)  # the initial latents
    assert len(batch_queries) == queries_per_run(batch_pipe)
    for row, (draws, row_queries) in enumerate(singles):
        assert len(draws) == 1
        assert_bits_equal(batch_draws[0][1][row : row + 1], draws[0][1], f"row {row}'s initial latents")
        assert len(row_queries) == len(batch_queries)
        for index, (batched, single) in enumerate(zip(batch_queries, row_queries)):
            assert (batched.s, batched.t) == (single.s, single.t)
            assert_bits_equal(batched.values[row : row + 1], single.values, f"row {row}, query {index}")
