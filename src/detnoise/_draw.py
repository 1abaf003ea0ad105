"""The draw path: argument rules (``_torchargs``) -> generator reservation (``_resolve``) -> kernel.

Shared by detnoise's torch-style functions (``detnoise.functional``) and the torch-level patch
(``detnoise.patch_torch``). The generator may be a ``detnoise.Generator``, a plain
``torch.Generator`` (its position follows its torch state: Note [Torch generator positions] in
``detnoise._resolve``) or None (``detnoise.default_generator``).
"""

from __future__ import annotations

from typing import Optional

import torch

from detnoise import _compile, _layout, _native, _resolve
from detnoise._torchargs import (
    DeviceArg,
    LayoutError,
    _checked_devices,
    _numel,
    _parse_size,
    _prepare_output,
    _resolve_dtype,
)
from detnoise.generator import default_generator

GeneratorArg = Optional[torch.Generator]


def _checked_generator(function: str, generator: GeneratorArg) -> GeneratorArg:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(
            f"{function}: generator must be a detnoise.Generator or torch.Generator, got {type(generator).__name__}; "
            "make one with detnoise.Generator(device).manual_seed(seed)"
        )
    return generator


def _fill(kind: int, target: torch.Tensor, seed: int, stream: int, offset: int) -> None:
    """Writes the draw into ``target`` in its logical element order (any strides)."""
    if target.is_contiguous():
        _native.launch(kind, target, seed, stream, offset)
        # The kernel wrote through data_ptr(): tell autograd, as any in-place op does, so a saved
        # tensor overwritten here fails backward() instead of giving wrong gradients.
        torch.autograd.graph.increment_version(target)
        return
    # Strided or overlapping views: fill a contiguous copy in logical order, then scatter it.
    dense = torch.empty(target.shape, dtype=target.dtype, device=target.device)
    _native.launch(kind, dense, seed, stream, offset)
    with torch.no_grad():
        target.copy_(dense)


def _draw_with_generator(
    kind: int, target: torch.Tensor, generator: GeneratorArg, function: str, default: torch.Generator = default_generator
) -> None:
    """Fills ``target`` with the next draw of ``generator`` (``default`` for None)."""
    if torch.compiler.is_compiling():  # a stateful draw is not traceable: graph-break (detnoise.ops)
        _draw_outside_compile(kind, target, generator, function, default)
    else:
        _draw_eagerly(kind, target, generator, function, default)


def check_not_capturing(device: torch.device, function: str) -> None:
    """Refuses a generator-driven CUDA draw while the current stream is being captured into a CUDA
    graph: the captured kernel would keep this call's offset, so every replay would repeat the same
    noise while the generator advanced once. Explicit (seed, stream, offset) draws are not checked
    (their values are meant to be fixed)."""
    if device.type == "cuda" and torch.cuda.is_current_stream_capturing():
        raise RuntimeError(
            f"{function}: a generator-driven draw cannot be captured into a CUDA graph (every replay would "
            "repeat this call's noise); use detnoise.GraphSafeDraws(generator), whose offset lives on the "
            "GPU, or the functional form detnoise.normal(..., seed=, stream=, offset=) for fixed values"
        )


def _draw_eagerly(
    kind: int, target: torch.Tensor, generator: GeneratorArg, function: str, default: torch.Generator = default_generator
) -> None:
    if target.is_cuda:
        check_not_capturing(target.device, function)
    taken = _reserve(function, generator, _layout.blocks_for(target.numel(), target.dtype), default)
    try:
        _fill(kind, target, taken.seed, taken.stream, taken.start)
    except BaseException:
        taken.undo()
        raise


def _reserve(
    function: str, generator: GeneratorArg, blocks: int, default: torch.Generator = default_generator
) -> _resolve.Reservation:
    """The resolver with a TypeError that names the function."""
    return _resolve.reserve(_checked_generator(function, generator), blocks, default=default)


_draw_outside_compile = _compile.disable(_draw_eagerly)  # dynamo runs it eagerly (graph break)


_FLOAT_DTYPE_SET = frozenset(_native.FLOAT_DTYPES)
_DEVICE_KEY_TYPES = (str, torch.device, int)
_is_compiling = torch.compiler.is_compiling
_FUNCTION_NAMES = {_native.KIND_NORMAL: "randn", _native.KIND_UNIFORM: "rand", _native.KIND_BITS: "random_bits"}


def _draw_fast(
    kind: int,
    size: tuple[object, ...],
    generator: GeneratorArg,
    dtype: torch.dtype | None,
    device: DeviceArg,
    out: torch.Tensor | None,
    default: torch.Generator = default_generator,
) -> torch.Tensor | None:
    """The common calls without the general path's layers, so a small latent's draw costs little
    more than torch.empty and the kernel: int dims, a detnoise generator or none, eager mode, and
    either a new output on a device seen before or an ``out`` that already has the shape and dtype,
    is contiguous, and needs no autograd or inference-mode decision. None sends the call to the
    general path, which does everything else and raises the errors. ``default`` is what
    ``generator=None`` draws from (the torch patch passes ``torch.default_generator``)."""
    if _is_compiling():
        return None
    size = _parse_size(size, _FUNCTION_NAMES[kind])  # raises what the general path would, first
    if generator is not None and not isinstance(generator, torch.Generator):
        return None
    if out is not None:
        if type(out) is not torch.Tensor or device is not None:
            return None
        if dtype is None:
            dtype = out.dtype
        elif dtype is not out.dtype:
            return None
    if kind == _native.KIND_BITS:
        if dtype is not None and dtype is not torch.uint32:
            return None
        dtype = torch.uint32
    elif dtype is None:
        dtype = torch.get_default_dtype()
    elif type(dtype) is not torch.dtype or dtype not in _FLOAT_DTYPE_SET:
        return None
    if not size:
        return None
    if out is not None:
        if (
            out.shape != size
            or not out.is_contiguous()
            or out.requires_grad
            or out.is_inference()
            or not (out.is_cpu or out.is_cuda)
        ):
            return None
        target = out
    # torch.empty(*dims) parses faster than torch.empty(dims) (about 1 us less per call).
    elif device is None:
        target = torch.empty(*size, dtype=dtype)
        if not target.is_cpu:  # a default device set with torch.set_default_device: full checks
            return None
    else:
        resolved = _checked_devices.get(device) if type(device) in _DEVICE_KEY_TYPES else None
        if resolved is None:
            return None
        target = torch.empty(*size, dtype=dtype, device=resolved)
    if target.is_cuda:
        check_not_capturing(target.device, _FUNCTION_NAMES[kind])
    taken = _resolve.reserve(generator, _layout.blocks_for(target.numel(), dtype), default=default)
    try:
        _native.launch(kind, target, taken.seed, taken.stream, taken.start)
    except BaseException:
        taken.undo()
        raise
    if out is not None:
        # Written through data_ptr(): bump the version as any in-place op does, so a saved tensor
        # overwritten here fails backward() instead of giving wrong gradients. (A tensor made
        # here cannot have been saved.)
        torch.autograd.graph.increment_version(out)
    return target


def _generate(
    function: str,
    kind: int,
    size: tuple[object, ...],
    generator: GeneratorArg,
    out: torch.Tensor | None,
    dtype: torch.dtype | None,
    layout: torch.layout,
    device: DeviceArg,
    requires_grad: bool,
) -> torch.Tensor:
    if layout != torch.strided:
        raise LayoutError(f"{function}: only layout=torch.strided is supported, got {layout}")
    dims = _parse_size(size, function)
    dtype = _resolve_dtype(kind, dtype, out, function)
    if out is not None and not torch.compiler.is_compiling():
        # Fail before resizing the caller's out; the reservation checks again (atomically).
        start = _resolve.position(_checked_generator(function, generator), default=default_generator)[2]
        _layout.check_generator_room(start, _layout.blocks_for(_numel(dims), dtype))
    target = _prepare_output(function, kind, dims, dtype, device, out)
    _draw_with_generator(kind, target, generator, function)
    if requires_grad:
        target.requires_grad_(True)
    return target


# ---- torch-style draws ---------------------------------------------------------------------------
