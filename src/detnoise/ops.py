"""detnoise draws as torch.library custom ops, so torch.compile traces them without graph breaks.

``torch.ops.detnoise.draw(kind, size, seed, stream, offset, dtype, device)`` is the functional core
(explicit seed, stream and offset; no state) with a fake implementation for tracing. The functional
API (``detnoise.normal``, ``detnoise.uniform``, ``detnoise.bits``) calls it when torch.compile is
tracing, so ``torch.compile(fullgraph=True)`` of code that uses them compiles and gives the eager
values. 64-bit unsigned seeds, streams and offsets travel as two's-complement int64 (the only
integer type an op schema has) and are read back modulo 2**64.

A stateful :class:`detnoise.Generator` is not traceable (taking blocks is a locked Python update):
a draw with ``generator=`` inside a compiled region graph-breaks, and under ``fullgraph=True``
compilation fails. Inside compiled code, pass ``seed=g.initial_seed(), stream=g.stream,
offset=g.offset`` to the functional form and advance ``g.offset`` outside.
"""

from __future__ import annotations

import torch

from detnoise import _layout, _native

_U64 = 1 << 64


def as_int64(value: int) -> int:
    """A uint64 as the int64 with the same bits."""
    return value - _U64 if value >= 1 << 63 else value


def as_uint64(value: int) -> int:
    return value % _U64


# The schema is spelled out, not inferred: torch < 2.5 cannot infer one from string annotations
# (``from __future__ import annotations``) nor from ``list[int]``. It is the one torch 2.13 infers.
_DRAW_SCHEMA = "(SymInt kind, SymInt[] size, SymInt seed, SymInt stream, SymInt offset, ScalarType dtype, Device device) -> Tensor"


@torch.library.custom_op("detnoise::draw", mutates_args=(), schema=_DRAW_SCHEMA)
def draw(kind: int, size: list[int], seed: int, stream: int, offset: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    out = torch.empty(size, dtype=dtype, device=device)
    _layout.check_room(as_uint64(offset), _layout.blocks_for(out.numel(), dtype))  # never wrap past block 2**64
    _native.launch(kind, out, as_uint64(seed), as_uint64(stream), as_uint64(offset))
    return out


@draw.register_fake
def _draw_fake(kind: int, size: list[int], seed: int, stream: int, offset: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return torch.empty(size, dtype=dtype, device=device)
