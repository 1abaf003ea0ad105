"""Stream layout v1 as the package uses it (Note [Stream layout v1], docs/SPEC.md §2-§3).

The numpy reference (detnoise.reference) restates these rules on its own, on purpose.
"""

from __future__ import annotations

import operator

import torch

from detnoise import _native

UINT64_LIMIT = 1 << 64
SPEC_VERSION = 1

# torch's own default CPU seed (c10::default_rng_seed_val), so an unseeded detnoise generator
# starts where an unseeded torch one does.
DEFAULT_SEED = 67280421310721

# Key tweaks (hex digits of pi after the first six words) that separate derived stream ids from
# noise blocks and from each other: SPEC §3.
_FOLD_IN_KEY_TWEAK = (0xA4093822, 0x299F31D0)
_SPAWN_KEY_TWEAK = (0x082EFA98, 0xEC4E6C89)


def as_int(value: object, what: str) -> int:
    """``operator.index(value)`` with a TypeError that names ``what``; bools are refused."""
    if isinstance(value, bool):
        raise TypeError(f"{what} must be an int, got bool")
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{what} must be an int, got {type(value).__name__}") from None


def normalize_seed(seed: object, what: str = "seed") -> int:
    """A seed (or stream id) in [-2^63, 2^64), taken modulo 2^64 like torch.manual_seed."""
    value = as_int(seed, what)
    if not -(1 << 63) <= value < UINT64_LIMIT:
        raise ValueError(f"{what} must be in [-2**63, 2**64), got {value}")
    return value % UINT64_LIMIT


def normalize_offset(offset: object) -> int:
    value = as_int(offset, "offset")
    if not 0 <= value < UINT64_LIMIT:
        raise ValueError(f"offset must be in [0, 2**64) blocks, got {value}")
    return value


def elements_per_block(dtype: torch.dtype) -> int:
    """4 for 32- and 16-bit elements, 2 for float64."""
    return 2 if dtype == torch.float64 else 4


def blocks_for(numel: int, dtype: torch.dtype) -> int:
    """Blocks a draw of ``numel`` elements consumes: ceil(numel / elements_per_block)."""
    per_block = elements_per_block(dtype)
    return (numel + per_block - 1) // per_block


def check_room(offset: int, blocks: int) -> None:
    """Raises if blocks [offset, offset + blocks) would pass the 2^64-block end of the stream."""
    if offset + blocks > UINT64_LIMIT:
        raise ValueError(
            f"this draw needs {blocks} blocks from offset {offset}, past the end of the stream "
            "(2**64 blocks); use another stream (fold_in/spawn) or a smaller offset"
        )


def check_generator_room(offset: int, blocks: int) -> None:
    """Raises unless a generator-driven draw of ``blocks`` from ``offset`` leaves the offset below
    2^64: a generator's offset is a u64 (SPEC §3), so its last block, 2^64 - 1, is reachable only
    through the functional core (explicit offset)."""
    if offset + blocks >= UINT64_LIMIT and blocks:
        raise ValueError(
            f"this draw needs {blocks} blocks from offset {offset}, past the end of the stream for a generator "
            "(its offset must stay below 2**64); use another stream (fold_in/spawn) or a smaller offset"
        )


def _derive_stream(seed: int, stream: int, data: int, tweak: tuple[int, int]) -> int:
    counter = (data & 0xFFFFFFFF, data >> 32, stream & 0xFFFFFFFF, stream >> 32)
    key = ((seed & 0xFFFFFFFF) ^ tweak[0], (seed >> 32) ^ tweak[1])
    words = _native.philox4x32_10(counter, key)
    return words[0] | (words[1] << 32)


def fold_in_stream(seed: int, stream: int, data: int) -> int:
    """Stream id of ``fold_in(data)`` applied to (seed, stream): SPEC §3."""
    return _derive_stream(seed, stream, data, _FOLD_IN_KEY_TWEAK)


def spawn_stream(seed: int, stream: int, block: int) -> int:
    """Stream id of the child that ``spawn`` makes from parent block ``block``: SPEC §3."""
    return _derive_stream(seed, stream, block, _SPAWN_KEY_TWEAK)
