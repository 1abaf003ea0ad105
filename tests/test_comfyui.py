"""detnoise.comfyui: the node pack, without ComfyUI installed.

ComfyUI's interfaces are mirrored by small stand-ins written here (a sampling module whose samplers
build their noise samplers from ``extra_args["seed"]`` as ComfyUI's do, a KSAMPLER-like object, the
``comfy.sample``/``comfy.samplers`` functions the KSampler node calls); the node classes are checked
for ComfyUI's classic node format.
"""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

import detnoise
import detnoise.k_diffusion as dk
from detnoise import comfyui
from conftest import assert_bits_equal

ROOT = Path(__file__).resolve().parents[1]
SEED_MAX = 0xFFFFFFFFFFFFFFFF


# ---- stand-ins for ComfyUI's modules ---------------------------------------------------------------


def _comfy_sampling_module() -> types.ModuleType:
    """A module with ComfyUI's noise sampler names and two samplers that use them the way
    comfy/k_diffusion/sampling.py does (seed from extra_args; cpu=True for the Brownian one)."""
    module = types.ModuleType("comfy.k_diffusion.sampling")

    def default_noise_sampler(x, seed=None):
        generator = torch.Generator().manual_seed(seed + 1) if seed is not None else None
        return lambda sigma, sigma_next: torch.randn(x.size(), dtype=x.dtype, generator=generator)

    class BrownianTreeNoiseSampler:
        def __init__(self, x, sigma_min, sigma_max, seed=None, transform=lambda t: t, cpu=False):
            self.x = x

        def __call__(self, sigma, sigma_next):
            return torch.ones_like(self.x)

    def sample_ancestral_noise(model, x, sigmas, extra_args=None, callback=None, disable=None):
        noise_sampler = module.default_noise_sampler(x, seed=extra_args.get("seed"))
        return torch.stack([noise_sampler(sigmas[i], sigmas[i + 1]) for i in range(len(sigmas) - 1)])

    def sample_sde_noise(model, x, sigmas, extra_args=None, callback=None, disable=None):
        sigma_min, sigma_max = sigmas[sigmas > 0].min(), sigmas.max()
        noise_sampler = module.BrownianTreeNoiseSampler(x, sigma_min, sigma_max, seed=extra_args.get("seed"), cpu=True)
        return torch.stack([noise_sampler(sigmas[i], sigmas[i + 1]) for i in range(len(sigmas) - 2)])

    sample_ancestral_noise.__module__ = sample_sde_noise.__module__ = module.__name__
    module.default_noise_sampler = default_noise_sampler
    module.BrownianTreeNoiseSampler = BrownianTreeNoiseSampler
    module.sample_ancestral_noise = sample_ancestral_noise
    module.sample_sde_noise = sample_sde_noise
    return module


class FakeKSampler:
    """ComfyUI's KSAMPLER interface: sampler_function, extra_options, sample(...)."""

    def __init__(self, sampler_function, extra_options=None, inpaint_options=None):
        self.sampler_function = sampler_function
        self.extra_options = extra_options or {}
        self.inpaint_options = inpaint_options or {}

    def sample(self, model_wrap, sigmas, extra_args, callback, noise, latent_image=None, denoise_mask=None, disable_pbar=False):
        return self.sampler_function(model_wrap, noise, sigmas, extra_args=extra_args, callback=callback,
                                     disable=disable_pbar, **self.extra_options)


def install(monkeypatch, module: types.ModuleType) -> None:
    """Puts ``module`` (and empty parents as needed) into sys.modules for one test, linked as
    attributes of its parents the way an import links them."""
    parts = module.__name__.split(".")
    for depth in range(1, len(parts)):
        name = ".".join(parts[:depth])
        if name not in sys.modules:
            monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, module.__name__, module)
    if len(parts) > 1:
        monkeypatch.setattr(sys.modules[".".join(parts[:-1])], parts[-1], module, raising=False)


@pytest.fixture
def comfy_sampling(monkeypatch):
    module = _comfy_sampling_module()
    install(monkeypatch, module)
    return module


SIGMAS = torch.tensor([14.6, 7.0, 3.0, 1.0, 0.3, 0.0])


# ---- node format ----------------------------------------------------------------------------------------


def _check_node(node_class) -> dict:
    spec = node_class.INPUT_TYPES()
    assert set(spec) <= {"required", "optional", "hidden"} and "required" in spec
    for name, entry in spec["required"].items():
        assert isinstance(name, str) and isinstance(entry, tuple) and 1 <= len(entry) <= 2
        assert isinstance(entry[0], (str, list))
        if len(entry) == 2:
            assert isinstance(entry[1], dict)
    assert isinstance(node_class.RETURN_TYPES, tuple) and all(isinstance(t, str) for t in node_class.RETURN_TYPES)
    assert callable(getattr(node_class(), node_class.FUNCTION))
    assert isinstance(node_class.CATEGORY, str) and node_class.CATEGORY.startswith("sampling")
    return spec


def test_node_classes_follow_comfyui_format(monkeypatch):
    samplers = types.ModuleType("comfy.samplers")
    samplers.KSampler = type("KSampler", (), {"SAMPLERS": ["euler", "euler_ancestral"], "SCHEDULERS": ["normal", "karras"]})
    install(monkeypatch, samplers)
    assert set(comfyui.NODE_CLASS_MAPPINGS) == set(comfyui.NODE_DISPLAY_NAME_MAPPINGS)
    noise = _check_node(comfyui.DetnoiseRandomNoise)
    assert comfyui.DetnoiseRandomNoise.RETURN_TYPES == ("NOISE",)
    assert noise["required"]["noise_seed"] == ("INT", {"default": 0, "min": 0, "max": SEED_MAX, "control_after_generate": True})
    sampler = _check_node(comfyui.DetnoiseSamplerNode)
    assert sampler["required"] == {"sampler": ("SAMPLER",)} and comfyui.DetnoiseSamplerNode.RETURN_TYPES == ("SAMPLER",)
    ksampler = _check_node(comfyui.DetnoiseKSampler)
    assert list(ksampler["required"]) == ["model", "seed", "steps", "cfg", "sampler_name", "scheduler", "positive",
                                          "negative", "latent_image", "denoise"]
    assert ksampler["required"]["sampler_name"] == (["euler", "euler_ancestral"],)
    assert ksampler["required"]["seed"][1]["max"] == SEED_MAX
    assert comfyui.DetnoiseKSampler.RETURN_TYPES == ("LATENT",)


def test_imports_without_comfyui():
    code = ("import sys, detnoise.comfyui as c; print(sorted(c.NODE_CLASS_MAPPINGS)); "
            "print(any(m == 'comfy' or m.startswith('comfy.') for m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env=dict(os.environ), cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["['DetnoiseKSampler', 'DetnoiseRandomNoise', 'DetnoiseSampler']", "False"]


def test_custom_nodes_one_liner_loads_like_comfyui(tmp_path):
    """ComfyUI loads custom_nodes/<name>/__init__.py under a module name made from its path (and
    registers it in sys.modules before running it); the README's one line must work there."""
    readme = (ROOT / "README.md").read_text()
    line = "from detnoise.comfyui import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS"
    assert line in readme
    folder = tmp_path / "custom_nodes" / "detnoise"
    folder.mkdir(parents=True)
    (folder / "__init__.py").write_text(line + "\n")
    code = f"""
import importlib.util, sys
path = {str(folder)!r}
name = path.replace(".", "_x_")
spec = importlib.util.spec_from_file_location(name, path + "/__init__.py")
module = importlib.util.module_from_spec(spec)
sys.modules[name] = module
spec.loader.exec_module(module)
print(sorted(module.NODE_CLASS_MAPPINGS), len(module.NODE_DISPLAY_NAME_MAPPINGS))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env=dict(os.environ), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['DetnoiseKSampler', 'DetnoiseRandomNoise', 'DetnoiseSampler'] 3"


# ---- NOISE -----------------------------------------------------------------------------------------------


def test_noise_values_follow_batch_index():
    (noise,) = comfyui.DetnoiseRandomNoise().get_noise(noise_seed=SEED_MAX)
    assert noise.seed == SEED_MAX
    latent = torch.zeros(3, 4, 8, 8, dtype=torch.float16)
    plain = noise.generate_noise({"samples": latent})
    assert plain.dtype == torch.float16 and plain.device.type == "cpu"
    assert_bits_equal(plain, dk.prepare_noise(latent, SEED_MAX), "no batch_index")
    indexed = noise.generate_noise({"samples": latent, "batch_index": [2, 0, 7]})
    # batch index i is row seed SEED_MAX + i (mod 2**64): 1, SEED_MAX, 6
    for row, row_seed in enumerate([1, SEED_MAX, 6]):
        assert_bits_equal(indexed[row], dk.prepare_noise(latent[:1], row_seed)[0], f"row {row}")
    assert_bits_equal(indexed[1], plain[0], "batch index 0 = row 0 of the plain batch")


# ---- SAMPLER wrapper -------------------------------------------------------------------------------------


def test_wrapped_sampler_noise_is_detnoise(comfy_sampling):
    x = torch.zeros(3, 2, 4, 4)
    extra_args = {"seed": SEED_MAX - 1}
    original = comfy_sampling.default_noise_sampler
    (wrapped,) = comfyui.DetnoiseSamplerNode().get_sampler(FakeKSampler(comfy_sampling.sample_ancestral_noise))
    steps = wrapped.sample(None, SIGMAS, extra_args, None, x)
    expected = dk.default_noise_sampler(x, seed=SEED_MAX - 1)
    for step in range(len(SIGMAS) - 1):
        assert_bits_equal(steps[step], expected(SIGMAS[step], SIGMAS[step + 1]), f"ancestral step {step}")
    assert comfy_sampling.default_noise_sampler is original  # put back after the call
    stock = FakeKSampler(comfy_sampling.sample_ancestral_noise).sample(None, SIGMAS, extra_args, None, x)
    assert not torch.equal(stock, steps)
    assert wrapped.sampler_function is comfy_sampling.sample_ancestral_noise  # other attributes pass through


def test_wrapped_sde_sampler_noise_is_detnoise(comfy_sampling):
    x = torch.zeros(2, 2, 4, 4)
    wrapped = comfyui.DetnoiseSampler(FakeKSampler(comfy_sampling.sample_sde_noise))
    steps = wrapped.sample(None, SIGMAS, {"seed": 5}, None, x)
    expected = dk.BrownianTreeNoiseSampler(x, SIGMAS[-2], SIGMAS[0], seed=5)
    for step in range(len(SIGMAS) - 2):
        assert_bits_equal(steps[step], expected(SIGMAS[step], SIGMAS[step + 1]), f"Brownian step {step}")
    assert comfy_sampling.BrownianTreeNoiseSampler.__module__ != "detnoise.k_diffusion"


def test_wrapped_sampler_batch_index_and_restore_on_error(comfy_sampling):
    x = torch.zeros(2, 6)
    wrapped = comfyui.DetnoiseSampler(FakeKSampler(comfy_sampling.sample_ancestral_noise), batch_index=[4, 1])
    steps = wrapped.sample(None, SIGMAS, {"seed": 10}, None, x)
    assert_bits_equal(steps[0], dk.default_noise_sampler(x, seed=[14, 11])(14.6, 7.0), "rows by batch index")
    original = comfy_sampling.default_noise_sampler

    def failing(*args, **kwargs):
        raise RuntimeError("model failed")

    with pytest.raises(RuntimeError, match="model failed"):
        comfyui.DetnoiseSampler(FakeKSampler(failing)).sample(None, SIGMAS, {"seed": 1}, None, x)
    assert comfy_sampling.default_noise_sampler is original
    with pytest.raises(TypeError, match="SAMPLER"):
        comfyui.DetnoiseSampler(object())


# ---- KSampler-style node ---------------------------------------------------------------------------------


def test_ksampler_node_wires_comfyui(comfy_sampling, monkeypatch):
    calls = {}
    sample_module = types.ModuleType("comfy.sample")
    sample_module.fix_empty_latent_channels = lambda model, latent: latent
    sample_module.sample_custom = lambda *args, **kwargs: calls.setdefault("sample_custom", (args, kwargs)) and torch.full((2, 6), 3.0)
    samplers_module = types.ModuleType("comfy.samplers")

    class KSampler:
        def __init__(self, model, steps, device, sampler=None, scheduler=None, denoise=None, model_options=None):
            calls["KSampler"] = (steps, sampler, scheduler, denoise)
            self.sigmas = SIGMAS

    samplers_module.KSampler = KSampler
    samplers_module.sampler_object = lambda name: FakeKSampler(comfy_sampling.sample_ancestral_noise)
    utils_module = types.ModuleType("comfy.utils")
    utils_module.PROGRESS_BAR_ENABLED = False
    preview = types.ModuleType("latent_preview")
    preview.prepare_callback = lambda model, steps: None
    for module in (sample_module, samplers_module, utils_module, preview):
        install(monkeypatch, module)
    model = types.SimpleNamespace(load_device=torch.device("cpu"), model_options={})
    latent = {"samples": torch.zeros(2, 6), "batch_index": [3, 0]}
    (out,) = comfyui.DetnoiseKSampler().sample(model, SEED_MAX, 5, 7.0, "euler_ancestral", "karras", "pos", "neg", latent, 0.8)
    assert torch.equal(out["samples"], torch.full((2, 6), 3.0)) and out["batch_index"] == [3, 0]
    assert calls["KSampler"] == (5, "euler_ancestral", "karras", 0.8)
    args, kwargs = calls["sample_custom"]
    noise, cfg, sampler, sigmas = args[1], args[2], args[3], args[4]
    assert_bits_equal(noise, dk.prepare_noise(latent["samples"], SEED_MAX, [3, 0]), "initial noise by batch index")
    assert cfg == 7.0 and sigmas is SIGMAS and kwargs["seed"] == SEED_MAX and kwargs["disable_pbar"] is True
    assert isinstance(sampler, comfyui.DetnoiseSampler) and sampler.batch_index == [3, 0]
    steps = sampler.sample(None, SIGMAS, {"seed": SEED_MAX}, None, noise)
    assert_bits_equal(steps[0], dk.default_noise_sampler(noise, seed=[2, SEED_MAX])(14.6, 7.0), "sampler rows by batch index")
