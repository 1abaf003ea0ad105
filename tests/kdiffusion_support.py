"""Loads k-diffusion 0.1.1.post1's ``sampling`` module without its package ``__init__``.

The package ``__init__`` imports torchvision, clip and wandb (and ``k_diffusion.utils`` imports
torchvision and PIL); ``sampling.py`` itself needs only torch, scipy, torchdiffeq, torchsde, tqdm and
``utils.append_dims``. So the wheel is installed with ``pip install --no-deps`` and ``sampling.py``
is executed inside a stand-in package whose ``utils`` holds just ``append_dims``.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import torch

KDIFFUSION_VERSION = "0.1.1.post1"
_DEPENDENCIES = ("scipy", "torchdiffeq", "torchsde", "tqdm")


def missing_reason() -> str | None:
    """Why the k-diffusion tests cannot run here, or None."""
    if importlib.util.find_spec("k_diffusion") is None:
        return (f"k-diffusion is not installed: pip install --no-deps k-diffusion=={KDIFFUSION_VERSION} "
                "(its __init__'s torchvision/clip/wandb are not needed)")
    for name in _DEPENDENCIES:
        if importlib.util.find_spec(name) is None:
            return f"k_diffusion.sampling needs {name}: pip install {name}"
    return None


def _append_dims(x: torch.Tensor, target_dims: int) -> torch.Tensor:
    """Trailing singleton dimensions up to ``target_dims`` (what sampling.py asks of its utils)."""
    extra = target_dims - x.ndim
    if extra < 0:
        raise ValueError(f"input has {x.ndim} dims, more than target_dims={target_dims}")
    return x.reshape(*x.shape, *([1] * extra))


def load_sampling(package: str = "_kdiffusion_under_test") -> types.ModuleType:
    """``k_diffusion/sampling.py`` of the installed wheel as ``<package>.sampling``.

    ``package="k_diffusion"`` registers the stand-in under k-diffusion's own name (for code written
    as ``import k_diffusion.sampling``); do that only in a subprocess.
    """
    name = f"{package}.sampling"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec("k_diffusion")
    assert spec is not None and spec.submodule_search_locations, missing_reason()
    folder = Path(list(spec.submodule_search_locations)[0])
    stand_in = types.ModuleType(package)
    stand_in.__path__ = [str(folder)]
    stand_in.__spec__ = importlib.util.spec_from_file_location(package, folder / "__init__.py",
                                                               submodule_search_locations=[str(folder)])
    utils = types.ModuleType(f"{package}.utils")
    utils.append_dims = _append_dims
    stand_in.utils = utils
    sys.modules[package] = stand_in
    sys.modules[f"{package}.utils"] = utils
    sampling_spec = importlib.util.spec_from_file_location(name, folder / "sampling.py")
    module = importlib.util.module_from_spec(sampling_spec)
    sys.modules[name] = module
    sampling_spec.loader.exec_module(module)
    stand_in.sampling = module
    return module
