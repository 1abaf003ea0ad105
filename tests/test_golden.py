"""Golden digests (tests/data/golden_v1.json, made by tests/data/make_golden.py from the reference)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import detnoise
from detnoise import reference

from conftest import DTYPES, raw_bits

GOLDEN = json.loads((Path(__file__).parent / "data" / "golden_v1.json").read_text())["draws"]
IDS = [f"{r['kind']}-{r['dtype']}-s{r['seed']}-st{r['stream']}-o{r['offset']}-n{r['n']}" for r in GOLDEN]


def sha256(values: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(values).tobytes()).hexdigest()  # x86/arm: little-endian


def kernel_values(row: dict) -> torch.Tensor:
    common = {"seed": row["seed"], "stream": row["stream"], "offset": row["offset"]}
    if row["kind"] == "bits":
        return detnoise.bits(row["n"], **common)
    function = detnoise.normal if row["kind"] == "normal" else detnoise.uniform
    return function(row["n"], dtype=DTYPES[row["dtype"]], **common)


@pytest.mark.parametrize("row", GOLDEN, ids=IDS)
def test_kernel_matches_golden(row: dict) -> None:
    assert sha256(raw_bits(kernel_values(row))) == row["sha256"]


@pytest.mark.parametrize("row", GOLDEN, ids=IDS)
def test_reference_matches_golden(row: dict) -> None:
    if row["kind"] == "bits":
        values = reference.bits(row["n"], row["seed"], row["stream"], row["offset"])
    else:
        values = getattr(reference, row["kind"])(row["n"], row["dtype"], row["seed"], row["stream"], row["offset"])
    assert sha256(raw_bits(values)) == row["sha256"]
    width = 2 * values.dtype.itemsize
    assert [f"{int(v):0{width}x}" for v in raw_bits(values)[:4]] == row["first_bits"]


def test_table_is_not_empty() -> None:
    assert len(GOLDEN) >= 15
