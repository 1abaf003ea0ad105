"""Why CUDA cannot be used here, and what fixes it: one sentence per cause.

The causes, in the order they stop a CUDA draw: a CPU-only torch, no driver or no visible GPU, a
driver older than the CUDA runtime, a detnoise build without CUDA kernels, and a build without
kernels for this GPU's architecture ("no kernel image"). The CUDA runtime reports the same error
(cudaErrorInsufficientDriver) for a missing driver and for one too old, so whether the driver's
library loads at all tells them apart (:func:`nvidia_driver_installed`). The CLI, ``detnoise.Generator`` and the
launchers use these texts so that every CUDA failure names its fix.
"""

from __future__ import annotations

import ctypes
import sys

import torch

_TORCH_CUDA_INSTALL = "install a CUDA build of torch (https://pytorch.org/get-started/locally/)"


NO_DRIVER = ("no NVIDIA driver is installed (its library, libcuda, cannot be loaded; `nvidia-smi` would list the "
             "GPU): install one, or draw with device='cpu' (the values are the same)")
_DRIVER_LIBRARY = "nvcuda.dll" if sys.platform == "win32" else "libcuda.so.1"


def nvidia_driver_installed() -> bool:
    """Whether the NVIDIA driver's user-space library (libcuda.so.1, nvcuda.dll on Windows) loads.

    Its absence means no driver at all; a driver that loads but is older than the CUDA runtime
    gives the same runtime error, so this is what tells "no driver" from "driver too old"."""
    try:
        ctypes.CDLL(_DRIVER_LIBRARY)
    except OSError:
        return False
    return True


def _torch_label() -> str:
    return f"torch {torch.__version__}"


def torch_cuda_problem() -> str | None:
    """None if torch can use a CUDA device, else what stops it and the fix."""
    if torch.version.cuda is None:
        return f"{_torch_label()} is a CPU-only build, so nothing can run on CUDA: {_TORCH_CUDA_INSTALL}"
    try:
        if torch.cuda.is_available():
            return None
        torch.cuda.init()  # raises the driver's own reason where there is one
    except (RuntimeError, AssertionError) as error:
        return explain(str(error)) or f"torch cannot start CUDA ({error})"
    return ("torch sees no CUDA device: check `nvidia-smi` and CUDA_VISIBLE_DEVICES, or draw with device='cpu' "
            "(the values are the same)")


def detnoise_cuda_problem() -> str | None:
    """None if this detnoise build has CUDA kernels, else the fix (a rebuild with nvcc)."""
    from detnoise import _native

    return _native.cuda_unavailable_reason()


def cuda_problems() -> list[str]:
    """Every cause that stops a detnoise CUDA draw here, each once (empty when CUDA draws can run)."""
    problems = [problem for problem in (torch_cuda_problem(), detnoise_cuda_problem()) if problem]
    return list(dict.fromkeys(problems))


def cuda_draw_problem() -> str:
    """Why a detnoise draw on CUDA cannot run here, every cause with its fix, as one sentence (for
    the library's errors; call it once a CUDA draw was found impossible)."""
    return "; ".join(cuda_problems()) or "torch sees no CUDA device"


def _architecture() -> str:
    try:
        major, minor = torch.cuda.get_device_capability()
        return f"{major}{minor}"
    except (RuntimeError, AssertionError):
        return "XY"


def explain(error_text: str) -> str | None:
    """The fix for a CUDA error message from torch, the driver or a detnoise launch; None if unknown."""
    text = error_text.lower()
    if "no kernel image" in text or "invalid device function" in text or "nokernelimage" in text:
        arch = _architecture()
        return (f"the compiled CUDA code has no kernels for this GPU (sm_{arch}): reinstall detnoise with "
                f"`pip install --no-build-isolation --force-reinstall . -C cmake.define.CMAKE_CUDA_ARCHITECTURES={arch}`"
                " (or install a torch built for this GPU, if torch raised it)")
    if "driver" in text and ("too old" in text or "insufficient" in text):
        if "insufficient" in text and not nvidia_driver_installed():  # the runtime's word for no driver too
            return NO_DRIVER
        return (f"the NVIDIA driver is older than the CUDA runtime ({_torch_label()} uses CUDA {torch.version.cuda}): "
                "update the driver (`nvidia-smi` shows the newest CUDA it supports), or install torch and build "
                "detnoise with a CUDA toolkit that driver supports")
    if "no nvidia driver" in text or "found no nvidia driver" in text:
        return NO_DRIVER
    if "no cuda gpus are available" in text or "no cuda-capable device" in text:
        return ("no CUDA device is visible: check `nvidia-smi` and CUDA_VISIBLE_DEVICES, or draw with device='cpu' "
                "(the values are the same)")
    if "not compiled with cuda" in text or "without aten_cuda" in text:
        return f"{_torch_label()} is a CPU-only build: {_TORCH_CUDA_INSTALL}"
    return None


def generator_device(device: str | torch.device) -> str | torch.device:
    """``device`` unchanged if torch can make a generator there; else raises RuntimeError naming the fix.

    ``detnoise.Generator`` calls this before ``torch.Generator.__new__``, whose own error on a CPU-only
    torch speaks of linker flags.
    """
    if device == "cpu" or (isinstance(device, torch.device) and device.type == "cpu"):
        return device
    if torch.device(device).type != "cuda":
        return device
    problem = torch_cuda_problem()
    if problem is not None:
        raise RuntimeError(
            f"detnoise.Generator({str(device)!r}): {problem}. detnoise's values do not depend on the generator's "
            "device, so detnoise.Generator('cpu', seed=...) drives the same draws on any device"
        )
    return device
