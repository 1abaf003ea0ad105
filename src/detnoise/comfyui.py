"""ComfyUI nodes whose noise is detnoise's: the same images on every device, each batch row its own.

Enable them with one line in ``ComfyUI/custom_nodes/detnoise/__init__.py``::

    from detnoise.comfyui import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

- **RandomNoise (detnoise)** (``DetnoiseRandomNoise``): a NOISE for ``SamplerCustomAdvanced``;
  its initial noise is :func:`detnoise.k_diffusion.prepare_noise` (row ``j`` from
  ``(noise_seed, batch_index[j])``).
- **Sampler noise (detnoise)** (``DetnoiseSampler``): takes a SAMPLER and returns one whose
  ancestral and SDE noise come from :mod:`detnoise.k_diffusion` (streams independent of the
  initial noise, docs/SPEC.md §11).
- **KSampler (detnoise)** (``DetnoiseKSampler``): KSampler's inputs and output, with both.

The nodes use ComfyUI's classic node interface (``INPUT_TYPES``, ``RETURN_TYPES``, ``FUNCTION``,
``CATEGORY``). This module imports without ComfyUI; the nodes import ``comfy`` only when ComfyUI
runs them.
"""

from __future__ import annotations

from typing import Any

import torch

from detnoise.k_diffusion import BatchIndex, _iter_modules, _ScopedNoise, prepare_noise

__all__ = [
    "DetnoiseKSampler",
    "DetnoiseNoise",
    "DetnoiseRandomNoise",
    "DetnoiseSampler",
    "DetnoiseSamplerNode",
    "NODE_CLASS_MAPPINGS",
    "NODE_DISPLAY_NAME_MAPPINGS",
]

_SEED_INPUT = ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "control_after_generate": True})
_SAMPLING_MODULE = "comfy.k_diffusion.sampling"


class DetnoiseNoise:
    """A NOISE value (what ``SamplerCustomAdvanced`` takes): ``seed`` and ``generate_noise``.

    ``generate_noise(input_latent)`` is ``detnoise.k_diffusion.prepare_noise(input_latent["samples"],
    seed, input_latent.get("batch_index"))``: row ``j`` depends only on (seed, batch index ``j``),
    on the CPU in the latent's dtype, as ComfyUI's RandomNoise returns it.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def generate_noise(self, input_latent: dict[str, Any]) -> torch.Tensor:
        return prepare_noise(input_latent["samples"], self.seed, input_latent.get("batch_index"))


class DetnoiseSampler:
    """A SAMPLER that runs ``sampler`` with detnoise's noise samplers.

    For the duration of ``sample(...)`` the sampling modules (ComfyUI's
    ``comfy.k_diffusion.sampling`` and the module of the wrapped ``sampler_function``) build
    :class:`detnoise.k_diffusion.AncestralNoiseSampler` and
    :class:`detnoise.k_diffusion.BrownianTreeNoiseSampler` where they would build their own, with
    the seed ComfyUI passes (the NOISE's seed). ``batch_index`` (one per row) makes row ``j``'s
    sampler noise that of batch index ``batch_index[j]``; the SAMPLER interface does not see the
    latent's ``batch_index``, so without it rows count from 0. Every other attribute is the wrapped
    sampler's.
    """

    def __init__(self, sampler: Any, batch_index: BatchIndex = None) -> None:
        if not callable(getattr(sampler, "sample", None)):
            raise TypeError(f"DetnoiseSampler: expected a ComfyUI SAMPLER (with .sample), got {type(sampler).__name__}")
        self.sampler = sampler
        self.batch_index = batch_index

    def _modules(self) -> list[Any]:
        names = [_SAMPLING_MODULE]
        function = getattr(self.sampler, "sampler_function", None)
        module_name = getattr(function, "__module__", None)
        if isinstance(module_name, str) and module_name not in names:
            names.append(module_name)
        return list(_iter_modules(names))

    def sample(self, *args: Any, **kwargs: Any) -> Any:
        with _ScopedNoise(self._modules(), self.batch_index):
            return self.sampler.sample(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name == "sampler":  # not set yet (copy/unpickle): no recursion
            raise AttributeError(name)
        return getattr(self.sampler, name)


class DetnoiseRandomNoise:
    """Node: NOISE from a seed, for SamplerCustomAdvanced (ComfyUI's RandomNoise, detnoise values)."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:  # noqa: N802 (ComfyUI's name)
        return {"required": {"noise_seed": _SEED_INPUT}}

    RETURN_TYPES = ("NOISE",)
    FUNCTION = "get_noise"
    CATEGORY = "sampling/custom_sampling/noise"
    DESCRIPTION = "Initial noise from detnoise: the same on every device; row i depends only on (seed, batch index i)."

    def get_noise(self, noise_seed: int) -> tuple[DetnoiseNoise]:
        return (DetnoiseNoise(noise_seed),)


class DetnoiseSamplerNode:
    """Node: SAMPLER -> SAMPLER whose ancestral and SDE noise are detnoise's."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:  # noqa: N802
        return {"required": {"sampler": ("SAMPLER",)}}

    RETURN_TYPES = ("SAMPLER",)
    FUNCTION = "get_sampler"
    CATEGORY = "sampling/custom_sampling/samplers"
    DESCRIPTION = "Ancestral and SDE noise from detnoise: the same on every device, independent of the initial noise."

    def get_sampler(self, sampler: Any) -> tuple[DetnoiseSampler]:
        return (DetnoiseSampler(sampler),)


class DetnoiseKSampler:
    """Node: KSampler's inputs and output, with detnoise's initial noise and sampler noise."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:  # noqa: N802
        import comfy.samplers

        return {
            "required": {
                "model": ("MODEL",),
                "seed": _SEED_INPUT,
                "steps": ("INT", {"default": 20, "min": 1, "max": 10000}),
                "cfg": ("FLOAT", {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01}),
                "sampler_name": (comfy.samplers.KSampler.SAMPLERS,),
                "scheduler": (comfy.samplers.KSampler.SCHEDULERS,),
                "positive": ("CONDITIONING",),
                "negative": ("CONDITIONING",),
                "latent_image": ("LATENT",),
                "denoise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}),
            }
        }

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "sample"
    CATEGORY = "sampling"
    DESCRIPTION = "KSampler with detnoise noise: the same images on every device; each batch row its own."

    def sample(self, model: Any, seed: int, steps: int, cfg: float, sampler_name: str, scheduler: str,
               positive: Any, negative: Any, latent_image: dict[str, Any], denoise: float = 1.0) -> tuple[dict[str, Any]]:
        import comfy.sample
        import comfy.samplers
        import comfy.utils
        import latent_preview

        latent = latent_image
        samples = comfy.sample.fix_empty_latent_channels(model, latent["samples"])
        batch_index = latent.get("batch_index")
        noise = prepare_noise(samples, seed, batch_index)
        # KSampler's own sigma rules (denoise, the samplers that drop the penultimate sigma).
        sigmas = comfy.samplers.KSampler(model, steps=steps, device=model.load_device, sampler=sampler_name,
                                         scheduler=scheduler, denoise=denoise, model_options=model.model_options).sigmas
        sampler = DetnoiseSampler(comfy.samplers.sampler_object(sampler_name), batch_index=batch_index)
        callback = latent_preview.prepare_callback(model, steps)
        disable_pbar = not comfy.utils.PROGRESS_BAR_ENABLED
        result = comfy.sample.sample_custom(model, noise, cfg, sampler, sigmas, positive, negative, samples,
                                            noise_mask=latent.get("noise_mask"), callback=callback,
                                            disable_pbar=disable_pbar, seed=seed)
        out = latent.copy()
        out["samples"] = result
        return (out,)


NODE_CLASS_MAPPINGS = {
    "DetnoiseRandomNoise": DetnoiseRandomNoise,
    "DetnoiseSampler": DetnoiseSamplerNode,
    "DetnoiseKSampler": DetnoiseKSampler,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "DetnoiseRandomNoise": "RandomNoise (detnoise)",
    "DetnoiseSampler": "Sampler noise (detnoise)",
    "DetnoiseKSampler": "KSampler (detnoise)",
}
