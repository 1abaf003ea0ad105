"""SHA-256 fingerprints of noise tensors, comparable between machines."""

from __future__ import annotations

import hashlib
import sys

import torch


def fingerprint(values: torch.Tensor) -> str:
    """SHA-256 (hex) of the tensor's elements in logical order, as little-endian bytes.

    Two machines that print the same fingerprint for the same draw hold the same bits.

    >>> import detnoise
    >>> len(fingerprint(detnoise.normal(8, seed=0)))
    64
    """
    flat = values.detach().contiguous().cpu().reshape(-1)
    data = flat.view(torch.uint8).numpy() if flat.numel() else b""
    if sys.byteorder != "little" and flat.element_size() > 1:  # pragma: no cover - big-endian hosts
        data = flat.numpy().byteswap().view("u1")
    return hashlib.sha256(bytes(data)).hexdigest()
