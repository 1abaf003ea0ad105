"""detnoise: deterministic Philox4x32-10 noise, bit-identical on CPU and CUDA.

Stream v1 (docs/SPEC.md) defines every value from (seed, stream, offset); the C++ CPU kernel, the
CUDA kernel and the pure-numpy :mod:`detnoise.reference` compute it bit for bit alike.

>>> import detnoise
>>> g = detnoise.Generator(seed=1234)
>>> noise = detnoise.randn(1, 4, 64, 64, generator=g)  # same bits on any CPU or GPU
"""

from detnoise._layout import DEFAULT_SEED, SPEC_VERSION
from detnoise._native import (
    build_info,
    built_with_cuda,
    cpu_paths,
    get_cpu_path,
    get_num_threads,
    set_cpu_path,
    set_num_threads,
)
from detnoise.functional import (
    bits,
    normal,
    normal_,
    rand,
    rand_like,
    randn,
    randn_like,
    random_bits,
    uniform,
    uniform_,
)
from detnoise.brownian import BatchedBrownianTree, BrownianTree, BrownianTreeNoiseSampler
from detnoise.diffusers_integration import patch_diffusers, patch_report, randn_tensor, unpatch_diffusers
from detnoise.cuda_graphs import GraphSafeDraws
from detnoise.determinism import determinism_status, deterministic, enable_full_determinism
from detnoise.fingerprint import fingerprint
from detnoise.generator import Generator, default_generator, initial_seed, manual_seed
from detnoise.slicing import rand_slice, randn_slice
from detnoise.torch_patch import TorchPatch, patch_torch, unpatch_torch

__version__ = "0.1.0"

# Submodules loaded on first use, so `import detnoise` does not pay for them.
_LAZY_SUBMODULES = ("k_diffusion", "comfyui")


def __getattr__(name: str) -> object:
    """``detnoise.k_diffusion`` and ``detnoise.comfyui``, imported when first named."""
    if name in _LAZY_SUBMODULES:
        import importlib

        return importlib.import_module(f"detnoise.{name}")
    raise AttributeError(f"module 'detnoise' has no attribute {name!r}")

__all__ = [
    "DEFAULT_SEED",
    "SPEC_VERSION",
    "BatchedBrownianTree",
    "BrownianTree",
    "BrownianTreeNoiseSampler",
    "Generator",
    "GraphSafeDraws",
    "bits",
    "build_info",
    "built_with_cuda",
    "cpu_paths",
    "default_generator",
    "determinism_status",
    "deterministic",
    "enable_full_determinism",
    "fingerprint",
    "get_cpu_path",
    "get_num_threads",
    "initial_seed",
    "manual_seed",
    "normal",
    "patch_diffusers",
    "patch_torch",
    "patch_report",
    "normal_",
    "rand",
    "rand_like",
    "rand_slice",
    "randn",
    "randn_tensor",
    "randn_like",
    "randn_slice",
    "random_bits",
    "set_cpu_path",
    "set_num_threads",
    "uniform",
    "uniform_",
    "unpatch_diffusers",
    "unpatch_torch",
    "TorchPatch",
]
