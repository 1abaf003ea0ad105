"""Writes golden_v1.json: SHA-256 digests of stream-v1 draws, computed by detnoise.reference.

Run from the repository root: `python tests/data/make_golden.py`. The file is committed; once
stream v1 shipped, a changed digest means the stream changed, which v1 promises never to do.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from detnoise import reference

# (kind, dtype, seed, stream, offset, n)
TABLE = [
    ("normal", "float32", 0, 0, 0, 16),
    ("normal", "float32", 42, 0, 0, 1 * 4 * 128 * 128),
    ("normal", "float32", 2**64 - 1, 0, 2**32 - 1, 1001),
    ("normal", "float32", 1234, 7, 2**63, 4099),
    ("normal", "float64", 0, 0, 0, 16),
    ("normal", "float64", 42, 0, 0, 65537),
    ("normal", "float64", 2**63, 2**64 - 1, 2**32, 333),
    ("normal", "float16", 42, 0, 0, 1 * 4 * 64 * 64),
    ("normal", "bfloat16", 42, 0, 0, 1 * 4 * 128 * 128),
    ("normal", "bfloat16", 7, 3, 5, 1023),
    ("uniform", "float32", 0, 0, 0, 16),
    ("uniform", "float32", 99, 1, 2**32, 10007),
    ("uniform", "float64", 99, 0, 0, 10007),
    ("uniform", "float16", 5, 0, 1, 999),
    ("uniform", "bfloat16", 5, 0, 1, 999),
    ("bits", "uint32", 0, 0, 0, 16),
    ("bits", "uint32", 2**32, 2**32, 2**32, 4097),
]


def draw(kind: str, dtype: str, seed: int, stream: int, offset: int, n: int) -> np.ndarray:
    if kind == "bits":
        return reference.bits(n, seed, stream, offset)
    return getattr(reference, kind)(n, dtype, seed, stream, offset)


def digest(values: np.ndarray) -> str:
    """SHA-256 of the values' little-endian bytes."""
    little = values.astype(values.dtype.newbyteorder("<"), copy=False)
    return hashlib.sha256(np.ascontiguousarray(little).tobytes()).hexdigest()


def main() -> None:
    rows = []
    for kind, dtype, seed, stream, offset, n in TABLE:
        values = draw(kind, dtype, seed, stream, offset, n)
        head = values[:4].view({2: np.uint16, 4: np.uint32, 8: np.uint64}[values.dtype.itemsize])
        rows.append({
            "kind": kind, "dtype": dtype, "seed": seed, "stream": stream, "offset": offset, "n": n,
            "sha256": digest(values), "first_bits": [f"{int(v):0{2 * values.dtype.itemsize}x}" for v in head],
        })
    path = Path(__file__).with_name("golden_v1.json")
    path.write_text(json.dumps({"spec_version": 1, "made_by": "tests/data/make_golden.py", "draws": rows}, indent=1) + "\n")
    print(f"wrote {len(rows)} digests to {path}")


if __name__ == "__main__":
    main()
