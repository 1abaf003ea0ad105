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

Device: everything lives on one GPU, fixed when the object is made (the current device if none is
named): the offset tensor, the outputs it allocates, the kernels and the stream it launches on.

Streams: the draws of one object form one sequence. An eager draw on a stream other than the
previous draw's first makes its stream wait (on the GPU, no host synchronisation) for that stream's
work so far, so two streams cannot read the same offset and duplicate noise. Inside a capture
nothing is inserted: draw from one object on the capturing stream, and replay graphs that draw from
it on one stream (or order the replays yourself), as with any torch work in graphs.

Room: the stream must not pass block 2**64, and the GPU cannot raise. Eager draws are checked
against a host-side mirror of the offset, without synchronising. Once a draw has been captured,
replays move the device offset where the host cannot follow, so each later eager draw (and
:attr:`GraphSafeDraws.offset`) reads the device value, which synchronises.
"""

from __future__ import annotations

import torch

from detnoise import _layout, _native
from detnoise.functional import _check_dtype, _parse_size
from detnoise.generator import Generator
from detnoise.ops import as_int64, as_uint64


def _pinned_device(device: str | torch.device) -> torch.device:
    """``device`` with its index: a bare "cuda" means the device current now, once and for all."""
    device = torch.device(device)
    if device.type != "cuda":
        raise ValueError(f"GraphSafeDraws is for CUDA devices, got {device}")
    return device if device.index is not None else torch.device("cuda", torch.cuda.current_device())


class GraphSafeDraws:
    """Draws of (seed, stream) whose offset is read and advanced on the GPU (capturable).

    Made from a generator's current state; the generator itself is not advanced (call
    :meth:`sync_generator` to copy the offset back). See the module docstring for the device,
    stream and room rules.
    """

    def __init__(self, generator: Generator, device: str | torch.device = "cuda") -> None:
        if not isinstance(generator, Generator):
            raise TypeError(f"GraphSafeDraws needs a detnoise.Generator, got {type(generator).__name__}")
        torch.device(device)  # a bad device string raises torch's own error first
        if torch.device(device).type != "cuda":
            raise ValueError(f"GraphSafeDraws is for CUDA devices, got {torch.device(device)}")
        if _native.cuda_unavailable_reason() is not None or not torch.cuda.is_available():
            from detnoise import cuda_diagnosis  # the error path only

            raise RuntimeError(f"detnoise: GraphSafeDraws needs CUDA: {cuda_diagnosis.cuda_draw_problem()}")
        self.device = _pinned_device(device)
        self.seed, self.stream, offset = generator._snapshot()
        self.offset_tensor = torch.tensor([as_int64(offset)], dtype=torch.int64, device=self.device)
        # Host mirror of the device offset after every draw enqueued so far; None once a draw was
        # captured (replays then advance the device offset unseen).
        self._host_offset: int | None = offset
        self._last_stream: torch.cuda.Stream | None = None

    @property
    def offset(self) -> int:
        """The offset after every draw enqueued so far (reads the GPU, synchronising, only once a
        draw has been captured)."""
        if self._host_offset is not None:
            return self._host_offset
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
        elif tuple(out.shape) != dims or not out.is_contiguous() or out.device != self.device:
            raise ValueError(
                f"GraphSafeDraws: out must be a contiguous tensor of the drawn shape on the draws' device "
                f"{self.device}, got shape {tuple(out.shape)} on {out.device}"
            )
        else:
            _check_dtype(out.dtype, kind, "GraphSafeDraws")
        blocks = _layout.blocks_for(out.numel(), out.dtype)
        stream = torch.cuda.current_stream(self.device)
        capturing = torch.cuda.is_current_stream_capturing()
        if not capturing:
            _layout.check_room(self.offset, blocks)
            if self._last_stream is not None and self._last_stream != stream:
                stream.wait_stream(self._last_stream)  # the previous draw's advance comes first
        _native._core.fill_cuda_device_offset(
            kind, _native.dtype_code(out.dtype), out.data_ptr(), out.numel(), self.seed, self.stream,
            self.offset_tensor.data_ptr(), blocks, self.device.index, stream.cuda_stream,
        )
        if capturing:
            self._host_offset = None
        elif self._host_offset is not None:
            self._host_offset += blocks
        self._last_stream = stream
        return out

    def randn(self, *size: object, dtype: torch.dtype | None = None, out: torch.Tensor | None = None) -> torch.Tensor:
        """Standard normals: the next draw of the stream, as ``detnoise.randn`` would give it."""
        return self._draw(_native.KIND_NORMAL, size, dtype, out)

    def rand(self, *size: object, dtype: torch.dtype | None = None, out: torch.Tensor | None = None) -> torch.Tensor:
        """Uniform [0, 1) values: the next draw of the stream."""
        return self._draw(_native.KIND_UNIFORM, size, dtype, out)
