"""Layer 1, bits: the Random123 known-answer vectors, for the compiled core and the reference."""

from __future__ import annotations

from pathlib import Path

import pytest

from detnoise import _native, reference


def _kat_rows() -> list[tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
    rows = []
    for line in (Path(__file__).parent / "data" / "kat_vectors.txt").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, rounds, *words = line.split()
        assert (name, rounds) == ("philox4x32", "10")
        values = tuple(int(word, 16) for word in words)
        rows.append((values[0:4], values[4:6], values[6:10]))
    return rows


KATS = _kat_rows()


def test_three_vectors_present() -> None:
    assert len(KATS) == 3


@pytest.mark.parametrize(("counter", "key", "expected"), KATS)
def test_compiled_core_matches_random123(counter, key, expected) -> None:
    assert _native.philox4x32_10(counter, key) == expected


@pytest.mark.parametrize(("counter", "key", "expected"), KATS)
def test_reference_matches_random123(counter, key, expected) -> None:
    assert reference.philox4x32_10(counter, key) == expected


def test_stream_layout_reads_block_and_stream_words() -> None:
    """Block b of stream s under seed k is philox(counter=(b lo, b hi, s lo, s hi), key=(k lo, k hi))."""
    seed, stream, block = 0x0123456789ABCDEF, 0xFEDCBA9876543210, 0x00000001FFFFFFFF
    counter = (block & 0xFFFFFFFF, block >> 32, stream & 0xFFFFFFFF, stream >> 32)
    key = (seed & 0xFFFFFFFF, seed >> 32)
    expected = _native.philox4x32_10(counter, key)
    assert tuple(int(w) for w in reference.blocks(seed, stream, block, 1)[0]) == expected
