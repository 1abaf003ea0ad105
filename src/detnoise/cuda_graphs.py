"""CUDA-graph-safe draws: the offset lives in a device tensor that the captured work advances.

A CUDA graph replays kernels with the arguments they were captured with, so a host-side offset
would make every replay draw the same noise. :class:`GraphSafeDraws` keeps (seed, stream) on the
host and the offset in a one-element CUDA tensor: each draw's kernel reads it and a following
kernel adds the draw's block count, so replaying a captured graph N times gives the same N draws,
in order, as N eager calls (the idea of PyTorch's philox_cuda_state offset pointer).

>>> draws = GraphSafeDraws(detnoise.Generator("cuda", seed=0))          # doctest: +SKIP
>>> static = torch.empty(1, 4, 64, 64, device="cuda")                      # doctest: +SKIP
>>> graph = torch.cuda.CUDAGraph()                                         # doctest: +SKIP
>>> with torch.cuda.graph(graph):                                          # doctest: +SKIP
...     draws.randn(static.shape, out=static)
>>> graph.replay()  # static now holds the next draw of the stream         # doctest: +SKIP
"""

from __future__ import annotations

import torch

from detnoise import _layout, _native
from detnoise.functional import _check_dtype, _parse_size
from detnoise.generator import Generator
from detnoise.ops import as_int64, as_uint64


class GraphSafeDraws:
    """Draws of (seed, stream) whose offset is read and advanced on the GPU (capturable).

    Made from a generator's current state; the generator itself is not advanced (call
    :meth:`sync_generator` to copy the device offset back). The stream must not pass block 2**64:
    the device cannot raise, so that is checked only for eager calls.
    """

    def __init__(self, generator: Generator, device: str | torch.device = "cuda") -> None:
        if not isinstance(generator, Generator):
            raise TypeError(f"GraphSafeDraws needs a detnoise.Generator, got {type(generator).__name__}")
        self.device = torch.device(device)
        if self.device.type != "cuda":
            raise ValueError(f"GraphSafeDraws is for CUDA devices, got {self.device}")
        reason = _native.cuda_unavailable_reason()
        if reason is None and not torch.cuda.is_available():
            reason = "torch sees no CUDA device"
        if reason is not None:
            raise RuntimeError(f"detnoise: GraphSafeDraws needs CUDA: {reason}")
        self.seed, self.stream, offset = generator._snapshot()
        self.offset_tensor = torch.tensor([as_int64(offset)], dtype=torch.int64, device=self.device)

    @property
    def offset(self) -> int:
        """The device offset (synchronises with the GPU)."""
        return as_uint64(int(self.offset_tensor.item()))

    def sync_generator(self, generator: Generator) -> None:
        """Sets ``generator.offset`` to the device offset."""
        generator.offset = self.offset

    def _draw(self, kind: int, size: tuple[object, ...], dtype: torch.dtype | None, out: torch.Tensor | None) -> torch.Tensor:
        dims = _parse_size(size, "GraphSafeDraws")
        if out is None:
            dtype = dtype or (torch.uint32 if kind == _native.KIND_BITS else torch.get_default_dtype())
            _check_dtype(dtype, kind, "GraphSafeDraws")
            out = torch.empty(dims, dtype=dtype, device=self.device)
        elif tuple(out.shape) != dims or not out.is_contiguous() or out.device != self.offset_tensor.device:
            raise ValueError("GraphSafeDraws: out must be a contiguous tensor of the drawn shape on the draws' device")
        else:
            _check_dtype(out.dtype, kind, "GraphSafeDraws")
        blocks = _layout.blocks_for(out.numel(), out.dtype)
        if not torch.cuda.is_current_stream_capturing():
            _layout.check_room(self.offset, blocks)
        index = out.device.index if out.device.index is not None else torch.cuda.current_device()
        _native._core.fill_cuda_device_offset(
            kind, _native.dtype_code(out.dtype), out.data_ptr(), out.numel(), self.seed, self.stream,
            self.offset_tensor.data_ptr(), blocks, index, torch.cuda.current_stream(index).cuda_stream,
        )
        return out

    def randn(self, *size: object, dtype: torch.dtype | None = None, out: torch.Tensor | None = None) -> torch.Tensor:
        """Standard normals: the next draw of the stream, as ``detnoise.randn`` would give it."""
        return self._draw(_native.KIND_NORMAL, size, dtype, out)

    def rand(self, *size: object, dtype: torch.dtype | None = None, out: torch.Tensor | None = None) -> torch.Tensor:
        """Uniform [0, 1) values: the next draw of the stream."""
        return self._draw(_native.KIND_UNIFORM, size, dtype, out)
