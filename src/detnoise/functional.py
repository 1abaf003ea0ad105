"""Draws with torch's signatures: ``randn``, ``rand``, ``random_bits``, ``*_like``, in-place fills;
and the functional core.

The core is functional: :func:`normal`, :func:`uniform` and :func:`bits` map an explicit
(seed, stream, offset) to a tensor. The torch-style functions take those from a generator (a
:class:`detnoise.Generator`, a plain ``torch.Generator`` or ``detnoise.default_generator``) and
advance it. Values never depend on the device, the thread count, or whether the output is
contiguous. The layers: torch's argument rules in ``detnoise._torchargs``, the stateful draw path in
``detnoise._draw`` (generators through ``detnoise._resolve``), the functional core here.
"""

from __future__ import annotations

import torch

from detnoise import _kinds, _layout, _native
from detnoise.generator import default_generator
from detnoise._draw import GeneratorArg, _draw_fast, _draw_with_generator, _fill, _generate
from detnoise._torchargs import (  # noqa: F401  (re-exported: slicing, cuda_graphs use these names)
    DeviceArg,
    LayoutError,
    SizeArg,
    _check_dtype,
    _check_fill_target,
    _check_out,
    _check_scalar,
    _numel,
    _parse_size,
    _prepare_output,
    _resolve_device,
    _resolve_dtype,
)

# ---- torch-style draws ---------------------------------------------------------------------------


def randn(
    *size: SizeArg,
    generator: GeneratorArg = None,
    out: torch.Tensor | None = None,
    dtype: torch.dtype | None = None,
    layout: torch.layout = torch.strided,
    device: DeviceArg = None,
    requires_grad: bool = False,
) -> torch.Tensor:
    """Standard normal noise, like ``torch.randn``, identical on every device (stream v1).

    Element i of a float32/float16/bfloat16 draw comes from block ``offset + i // 4`` of the
    generator's stream; float16 and bfloat16 values are the float32 values rounded to nearest
    even. The generator advances by ``ceil(n / 4)`` blocks (``ceil(n / 2)`` for float64).

    Examples
    --------
    >>> import detnoise, torch
    >>> g = detnoise.Generator(seed=0)
    >>> detnoise.randn(2, 2, generator=g).shape
    torch.Size([2, 2])
    >>> a = detnoise.randn(8, generator=detnoise.Generator(seed=0), dtype=torch.bfloat16)
    >>> b = detnoise.randn(8, generator=detnoise.Generator(seed=0)).to(torch.bfloat16)
    >>> torch.equal(a, b)
    True
    """
    if layout is torch.strided and not requires_grad:
        target = _draw_fast(_native.KIND_NORMAL, size, generator, dtype, device, out)
        if target is not None:
            return target
    return _generate("randn", _native.KIND_NORMAL, size, generator, out, dtype, layout, device, requires_grad)


def rand(
    *size: SizeArg,
    generator: GeneratorArg = None,
    out: torch.Tensor | None = None,
    dtype: torch.dtype | None = None,
    layout: torch.layout = torch.strided,
    device: DeviceArg = None,
    requires_grad: bool = False,
) -> torch.Tensor:
    """Uniform noise on [0, 1), like ``torch.rand``, identical on every device (stream v1).

    float32: ``(x >> 8) * 2**-24``; float64: ``(((hi << 32) | lo) >> 11) * 2**-53``; float16:
    ``(x >> 21) * 2**-11``; bfloat16: ``(x >> 24) * 2**-8`` (docs/SPEC.md §4).

    Examples
    --------
    >>> import detnoise
    >>> u = detnoise.rand(1000, generator=detnoise.Generator(seed=1))
    >>> bool((u >= 0).all() and (u < 1).all())
    True
    """
    if layout is torch.strided and not requires_grad:
        target = _draw_fast(_native.KIND_UNIFORM, size, generator, dtype, device, out)
        if target is not None:
            return target
    return _generate("rand", _native.KIND_UNIFORM, size, generator, out, dtype, layout, device, requires_grad)


def random_bits(
    *size: SizeArg,
    generator: GeneratorArg = None,
    out: torch.Tensor | None = None,
    device: DeviceArg = None,
) -> torch.Tensor:
    """The raw Philox words of the stream as a ``torch.uint32`` tensor, advancing like float32.

    Examples
    --------
    >>> import detnoise
    >>> detnoise.random_bits(4, generator=detnoise.Generator(seed=0)).dtype
    torch.uint32
    """
    target = _draw_fast(_native.KIND_BITS, size, generator, None, device, out)
    if target is not None:
        return target
    return _generate("random_bits", _native.KIND_BITS, size, generator, out, None, torch.strided, device, False)


def _like(
    function: str,
    kind: int,
    input: torch.Tensor,
    generator: GeneratorArg,
    dtype: torch.dtype | None,
    layout: torch.layout | None,
    device: DeviceArg,
    requires_grad: bool,
    memory_format: torch.memory_format,
) -> torch.Tensor:
    if not isinstance(input, torch.Tensor):
        raise TypeError(f"{function}: input must be a torch.Tensor, got {type(input).__name__}")
    if layout is not None and layout != torch.strided:
        raise LayoutError(f"{function}: only layout=torch.strided is supported, got {layout}")
    dtype = input.dtype if dtype is None else dtype
    _check_dtype(dtype, kind, function)
    target_device = input.device if device is None else _resolve_device(device)
    _resolve_device(target_device)
    target = torch.empty_like(input, dtype=dtype, device=target_device, memory_format=memory_format)
    _draw_with_generator(kind, target, generator, function)
    if requires_grad:
        target.requires_grad_(True)
    return target


def randn_like(
    input: torch.Tensor,
    *,
    generator: GeneratorArg = None,
    dtype: torch.dtype | None = None,
    layout: torch.layout | None = None,
    device: DeviceArg = None,
    requires_grad: bool = False,
    memory_format: torch.memory_format = torch.preserve_format,
) -> torch.Tensor:
    """``randn`` with the shape (and by default dtype, device, strides) of ``input``.

    Values follow the logical element order, so they equal ``randn(input.shape)`` whatever the
    strides of the result.
    """
    return _like("randn_like", _native.KIND_NORMAL, input, generator, dtype, layout, device, requires_grad, memory_format)


def rand_like(
    input: torch.Tensor,
    *,
    generator: GeneratorArg = None,
    dtype: torch.dtype | None = None,
    layout: torch.layout | None = None,
    device: DeviceArg = None,
    requires_grad: bool = False,
    memory_format: torch.memory_format = torch.preserve_format,
) -> torch.Tensor:
    """``rand`` with the shape (and by default dtype, device, strides) of ``input``."""
    return _like("rand_like", _native.KIND_UNIFORM, input, generator, dtype, layout, device, requires_grad, memory_format)


def normal_(
    tensor: torch.Tensor, mean: float = 0.0, std: float = 1.0, generator: GeneratorArg = None
) -> torch.Tensor:
    """Fills ``tensor`` in place with N(mean, std**2) noise, like ``torch.nn.init.normal_``.

    The standard normals are exactly ``randn(tensor.shape, dtype=tensor.dtype)`` in logical element
    order (also for non-contiguous tensors); a mean or std other than 0 and 1 is then applied as
    docs/SPEC.md §10.1 defines it (``z * std + mean``, two IEEE operations in float32 for 16-bit
    tensors, rounded once), the same values as ``Tensor.normal_`` under ``patch_torch()``. A std
    torch refuses (negative or NaN) raises torch's RuntimeError before the generator moves.
    """
    target = _check_fill_target(tensor, "normal_")
    mean_value = _check_scalar(mean, "mean", "normal_")
    std_value = _check_scalar(std, "std", "normal_")
    with torch.no_grad():
        if (mean_value, std_value) == (0.0, 1.0):
            _draw_with_generator(_native.KIND_NORMAL, target, generator, "normal_")
        else:
            _kinds.normal_values(tuple(target.shape), target.dtype, target.device, generator, "normal_",
                                 mean_value, std_value, out=target, default=default_generator)
    return tensor


def uniform_(tensor: torch.Tensor, a: float = 0.0, b: float = 1.0, generator: GeneratorArg = None) -> torch.Tensor:
    """Fills ``tensor`` in place with U(a, b) noise, like ``torch.nn.init.uniform_``.

    The [0, 1) values are exactly ``rand(tensor.shape, dtype=tensor.dtype)`` in logical order; other
    bounds are applied as ``u * (b - a) + a`` as docs/SPEC.md §10.3 defines it (as ``Tensor.uniform_``
    under ``patch_torch()``). Bounds torch refuses (outside the dtype's finite range, ``a > b``, or
    ``b - a`` past the dtype's largest value) raise torch's RuntimeError before the generator moves.
    """
    target = _check_fill_target(tensor, "uniform_")
    low = _check_scalar(a, "a", "uniform_")
    high = _check_scalar(b, "b", "uniform_")
    with torch.no_grad():
        if (low, high) == (0.0, 1.0):
            _draw_with_generator(_native.KIND_UNIFORM, target, generator, "uniform_")
        else:
            _kinds.uniform_values(tuple(target.shape), target.dtype, target.device, generator, "uniform_",
                                  low, high, out=target, default=default_generator)
    return tensor


# ---- the functional core: explicit (seed, stream, offset) ---------------------------------------


def _functional(
    function: str,
    kind: int,
    size: SizeArg,
    seed: int,
    stream: int,
    offset: int,
    dtype: torch.dtype | None,
    device: DeviceArg,
    out: torch.Tensor | None,
) -> torch.Tensor:
    dims = _parse_size((size,), function)
    seed_value = _layout.normalize_seed(seed)
    stream_value = _layout.normalize_seed(stream, "stream")
    offset_value = _layout.normalize_offset(offset)
    dtype = _resolve_dtype(kind, dtype, out, function)
    _layout.check_room(offset_value, _layout.blocks_for(_numel(dims), dtype))
    if torch.compiler.is_compiling():
        return _traced(function, kind, dims, seed_value, stream_value, offset_value, dtype, device, out)
    target = _prepare_output(function, kind, dims, dtype, device, out)
    _fill(kind, target, seed_value, stream_value, offset_value)
    return target


def _traced(
    function: str,
    kind: int,
    dims: tuple[int, ...],
    seed: int,
    stream: int,
    offset: int,
    dtype: torch.dtype,
    device: DeviceArg,
    out: torch.Tensor | None,
) -> torch.Tensor:
    """The draw as the custom op detnoise::draw, for torch.compile (see detnoise.ops); the same
    checks and out= behaviour as eager mode (dtype and room were checked by the caller)."""
    from detnoise import ops

    if device is not None:
        target_device = torch.device(device)
    elif out is not None:
        target_device = out.device
    else:
        target_device = torch.empty(0).device  # the default device; get_default_device() is not traceable
    if out is not None:
        _check_out(function, out, device, traced=True)
    result = ops.draw(kind, list(dims), ops.as_int64(seed), ops.as_int64(stream), ops.as_int64(offset), dtype, target_device)
    if out is not None:
        if tuple(out.shape) != dims:  # dynamo cannot resize a graph input: say so rather than broadcast
            raise ValueError(
                f"{function}: under torch.compile, out must already have the drawn shape {list(dims)}, "
                f"got {list(out.shape)} (eager mode resizes it)"
            )
        out.copy_(result)
        return out
    return result


def normal(
    size: SizeArg,
    *,
    seed: int,
    stream: int = 0,
    offset: int = 0,
    dtype: torch.dtype | None = None,
    device: DeviceArg = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Standard normals of stream (seed, stream) starting at block ``offset``; no state involved.

    ``normal(shape, seed=s)`` equals ``randn(shape, generator=Generator(seed=s))``.
    """
    return _functional("normal", _native.KIND_NORMAL, size, seed, stream, offset, dtype, device, out)


def uniform(
    size: SizeArg,
    *,
    seed: int,
    stream: int = 0,
    offset: int = 0,
    dtype: torch.dtype | None = None,
    device: DeviceArg = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Uniform [0, 1) values of stream (seed, stream) starting at block ``offset``."""
    return _functional("uniform", _native.KIND_UNIFORM, size, seed, stream, offset, dtype, device, out)


def bits(
    size: SizeArg,
    *,
    seed: int,
    stream: int = 0,
    offset: int = 0,
    device: DeviceArg = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Raw uint32 Philox words of stream (seed, stream) starting at block ``offset``."""
    return _functional("bits", _native.KIND_BITS, size, seed, stream, offset, None, device, out)
