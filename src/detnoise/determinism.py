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
