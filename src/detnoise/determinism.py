"""The rest of the reproducibility recipe: torch's determinism switches, on and restored.

detnoise makes the noise identical everywhere; the model's own arithmetic also has to be
deterministic for the same image to come out. These are the switches diffusers' reproducibility
guide lists. ``enable_full_determinism()`` turns them on for the process; ``deterministic()`` turns
them on for a ``with`` block and restores the previous settings afterwards.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from typing import Any

import torch

CUBLAS_WORKSPACE_CONFIG = ":16:8"
_UNSET = object()


def determinism_status() -> dict[str, bool]:
    """Which switches are on now, by name (``detnoise verify`` and ``detnoise demo`` print this)."""
    return {
        "CUBLAS_WORKSPACE_CONFIG=:16:8": os.environ.get("CUBLAS_WORKSPACE_CONFIG") == CUBLAS_WORKSPACE_CONFIG,
        "cudnn.benchmark=False": not torch.backends.cudnn.benchmark,
        "cudnn.deterministic=True": bool(torch.backends.cudnn.deterministic),
        "matmul.allow_tf32=False": not torch.backends.cuda.matmul.allow_tf32,
        "cudnn.allow_tf32=False": not torch.backends.cudnn.allow_tf32,
        "use_deterministic_algorithms(True)": torch.are_deterministic_algorithms_enabled(),
    }


def _cuda_capability() -> tuple[int, int] | None:
    """The first CUDA device's compute capability, or None where torch cannot use a CUDA device."""
    try:
        if not torch.cuda.is_available():
            return None
        return torch.cuda.get_device_capability(0)
    except (RuntimeError, AssertionError):
        return None


def determinism_rows() -> list[tuple[str, bool, str, str]]:
    """(switch, on now, matters here: "yes"/"no"/"little", why) for each switch on this machine.

    Where a switch cannot change anything on this machine (no GPU, no cuDNN, a GPU without TF32),
    "matters" says "no" and why. detnoise's own noise depends on none of them.
    """
    capability = _cuda_capability()
    status = determinism_status()
    if capability is None:
        no_gpu = "no usable CUDA device: cuBLAS and cuDNN do not run"
        cublas = cudnn = tf32 = ("no", no_gpu)
        algorithms = ("little", "on the CPU, few torch ops lack a deterministic kernel; it makes those raise")
    else:
        cublas = ("yes", "cuBLAS may split reductions differently from run to run without it")
        cudnn_ok = torch.backends.cudnn.is_available()
        cudnn = ("yes", "cuDNN may pick a different convolution algorithm per run") if cudnn_ok else (
            "no", "torch was built without cuDNN")
        tf32 = (("yes", f"sm_{capability[0]}{capability[1]} has TF32: matmuls and convolutions round to 10 mantissa bits")
                if capability[0] >= 8 else ("no", f"sm_{capability[0]}{capability[1]} has no TF32 units"))
        algorithms = ("yes", "some CUDA kernels (scatter, index_add, ...) use atomics; it makes them raise or switch")
    why = {
        "CUBLAS_WORKSPACE_CONFIG=:16:8": cublas,
        "cudnn.benchmark=False": cudnn,
        "cudnn.deterministic=True": cudnn,
        "matmul.allow_tf32=False": tf32,
        "cudnn.allow_tf32=False": tf32 if cudnn[0] == "yes" else cudnn,
        "use_deterministic_algorithms(True)": algorithms,
    }
    return [(name, held, *why[name]) for name, held in status.items()]


def determinism_table() -> list[str]:
    """``determinism_rows()`` as aligned text lines, a header first (what ``detnoise verify``,
    ``detnoise info`` and ``detnoise demo`` print)."""
    rows = determinism_rows()
    width = max(len(name) for name, *_ in rows)
    lines = [f"{'switch':{width}}  {'on':3}  {'matters here':12}  why"]
    lines += [f"{name:{width}}  {'yes' if held else 'no':3}  {matters:12}  {why}" for name, held, matters, why in rows]
    return lines


def _snapshot() -> dict[str, Any]:
    return {
        "cublas": os.environ.get("CUBLAS_WORKSPACE_CONFIG", _UNSET),
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "cudnn_deterministic": torch.backends.cudnn.deterministic,
        "matmul_tf32": torch.backends.cuda.matmul.allow_tf32,
        "cudnn_tf32": torch.backends.cudnn.allow_tf32,
        "algorithms": torch.are_deterministic_algorithms_enabled(),
        "algorithms_warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
    }


def _restore(saved: dict[str, Any]) -> None:
    if saved["cublas"] is _UNSET:
        os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
    else:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = saved["cublas"]
    torch.backends.cudnn.benchmark = saved["cudnn_benchmark"]
    torch.backends.cudnn.deterministic = saved["cudnn_deterministic"]
    torch.backends.cuda.matmul.allow_tf32 = saved["matmul_tf32"]
    torch.backends.cudnn.allow_tf32 = saved["cudnn_tf32"]
    torch.use_deterministic_algorithms(saved["algorithms"], warn_only=saved["algorithms_warn_only"])


def enable_full_determinism() -> None:
    """Turns on every switch for the rest of the process.

    ``CUBLAS_WORKSPACE_CONFIG`` is read when CUDA starts: set after that, it has no effect and a
    ``RuntimeWarning`` says so (call this before the first CUDA operation).

    >>> import detnoise, torch
    >>> with detnoise.deterministic():
    ...     torch.are_deterministic_algorithms_enabled()
    True
    """
    if os.environ.get("CUBLAS_WORKSPACE_CONFIG") != CUBLAS_WORKSPACE_CONFIG and torch.cuda.is_initialized():
        warnings.warn(
            "CUDA is already initialised, so CUBLAS_WORKSPACE_CONFIG=:16:8 set now does not reach cuBLAS; "
            "call detnoise.enable_full_determinism() before the first CUDA operation (or export the variable)",
            RuntimeWarning,
            stacklevel=2,
        )
    os.environ["CUBLAS_WORKSPACE_CONFIG"] = CUBLAS_WORKSPACE_CONFIG
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.use_deterministic_algorithms(True)


@contextlib.contextmanager
def deterministic() -> Iterator[None]:
    """``enable_full_determinism()`` for the body of a ``with`` block; restores every switch after."""
    saved = _snapshot()
    try:
        enable_full_determinism()
        yield
    finally:
        _restore(saved)
