"""Draws with torch's signatures: ``randn``, ``rand``, ``random_bits``, ``*_like``, in-place fills.

The core is functional: :func:`normal`, :func:`uniform` and :func:`bits` map an explicit
(seed, stream, offset) to a tensor. The torch-style functions take those from a
:class:`detnoise.Generator` and advance it. Values never depend on the device, the thread count,
or whether the output is contiguous.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union

import torch

from detnoise import _layout, _native
from detnoise import _compile  # lazy torch.compiler.disable: keeps torch._dynamo out of import
from detnoise.generator import Generator, default_generator

SizeArg = Union[int, Sequence[int], torch.Size]
DeviceArg = Union[str, torch.device, int, None]

# A tensor of 2**63 or more elements cannot exist; refuse before asking torch to allocate it.
_MAX_NUMEL = (1 << 63) - 1
_SIZE_TYPES = (tuple, list, torch.Size)


def _parse_size(size: tuple[object, ...], function: str) -> tuple[int, ...]:
    if len(size) == 1 and isinstance(size[0], _SIZE_TYPES):
        size = tuple(size[0])
    # The common case in one pass: plain ints in range (every draw's call runs this).
    numel = 1
    for dim in size:
        if type(dim) is not int or not 0 <= dim <= _MAX_NUMEL:
            break
        numel *= dim
    else:
        if numel <= _MAX_NUMEL:
            return tuple(size)
    dims = tuple(_layout.as_int(dim, f"{function}: size") for dim in size)
    for dim in dims:
        if dim < 0:
            raise ValueError(f"{function}: negative dimension {dim} in size {list(dims)}")
        if dim > _MAX_NUMEL:
            raise ValueError(f"{function}: dimension {dim} in size {list(dims)} is larger than a tensor can hold (2**63 - 1)")
    numel = _numel(dims)
    if numel > _MAX_NUMEL:
        raise ValueError(f"{function}: size {list(dims)} has {numel} elements, more than a tensor can hold (2**63 - 1)")
    return dims


def _check_dtype(dtype: torch.dtype, kind: int, function: str) -> None:
    if kind == _native.KIND_BITS:
        if dtype != torch.uint32:
            raise TypeError(f"{function}: random bits are torch.uint32, got dtype {dtype}")
    elif dtype not in _native.FLOAT_DTYPES:
        raise TypeError(
            f"{function}: dtype {dtype} is not supported; use torch.float32, torch.float64, "
            "torch.float16 or torch.bfloat16"
        )


def _resolve_device(device: DeviceArg) -> torch.device:
    if device is None:
        return torch.get_default_device()
    if isinstance(device, bool):
        raise TypeError("device must be a str, torch.device or int")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise TypeError(f"invalid device {device!r}: {error}") from None
    if resolved.type not in ("cpu", "cuda"):
        raise RuntimeError(f"detnoise draws on 'cpu' and 'cuda' devices only, got '{resolved}'")
    if resolved.type == "cuda":
        reason = _native.cuda_unavailable_reason()
        if reason is not None:
            raise RuntimeError(f"detnoise: cannot draw on {resolved}: {reason}")
        if not torch.cuda.is_available():
            raise RuntimeError(f"detnoise: cannot draw on {resolved}: torch sees no CUDA device")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise RuntimeError(f"detnoise: {resolved} does not exist; torch sees {torch.cuda.device_count()} CUDA device(s)")
    if type(device) in (str, torch.device, int) and len(_checked_devices) < 64:
        _checked_devices[device] = resolved
    return resolved


def _same_device(a: torch.device, b: torch.device) -> bool:
    if a.type != b.type:
        return False
    if a.type == "cuda":
        current = torch.cuda.current_device()
        return (a.index if a.index is not None else current) == (b.index if b.index is not None else current)
    return True


def _resolve_dtype(kind: int, dtype: torch.dtype | None, out: torch.Tensor | None, function: str) -> torch.dtype:
    """The draw's dtype: ``dtype``, else out's, else uint32 for bits or torch's default float."""
    if out is not None:
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"{function}: out must be a torch.Tensor, got {type(out).__name__}")
        if dtype is not None and dtype != out.dtype:
            raise TypeError(f"{function}: dtype {dtype} does not match the dtype of out ({out.dtype})")
        dtype = out.dtype
    elif dtype is None:
        dtype = torch.uint32 if kind == _native.KIND_BITS else torch.get_default_dtype()
    _check_dtype(dtype, kind, function)
    return dtype


def _check_out(function: str, out: torch.Tensor, device: DeviceArg, traced: bool = False) -> None:
    """What torch refuses for an out= tensor, and a device that does not match. (Under tracing,
    inference-tensor checks are torch.compile's own business: is_inference() is not traceable.)"""
    _resolve_device(out.device)
    if device is not None and not _same_device(_resolve_device(device), out.device):
        raise ValueError(f"{function}: device {device} does not match the device of out ({out.device})")
    if out.requires_grad and torch.is_grad_enabled():
        raise RuntimeError(f"{function}: out= arguments don't support automatic differentiation, but out requires grad")
    if not traced:
        _check_writable(out, function)


def _check_writable(tensor: torch.Tensor, function: str) -> None:
    if tensor.is_inference() and not torch.is_inference_mode_enabled():
        raise RuntimeError(f"{function}: inplace update to inference tensor outside InferenceMode is not allowed")


def _prepare_output(
    function: str,
    kind: int,
    size: tuple[int, ...],
    dtype: torch.dtype,
    device: DeviceArg,
    out: torch.Tensor | None,
) -> torch.Tensor:
    """The tensor to fill: ``out`` (checked and resized), or a new one. ``dtype`` is resolved."""
    if out is None:
        if device is None:  # torch's default device, without the cost of torch.get_default_device()
            target = torch.empty(size, dtype=dtype)
            if target.device.type != "cpu":
                _resolve_device(target.device)
            return target
        return torch.empty(size, dtype=dtype, device=_resolve_device(device))
    _check_out(function, out, device)
    if tuple(out.shape) != size:
        out.resize_(size)
    return out


def _numel(dims: tuple[int, ...]) -> int:
    numel = 1
    for dim in dims:
        numel *= dim
    return numel


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


def _draw_with_generator(kind: int, target: torch.Tensor, generator: Generator | None, function: str) -> None:
    if torch.compiler.is_compiling():  # a stateful draw is not traceable: graph-break (detnoise.ops)
        _draw_outside_compile(kind, target, generator, function)
    else:
        _draw_eagerly(kind, target, generator, function)


def _draw_eagerly(kind: int, target: torch.Tensor, generator: Generator | None, function: str) -> None:
    if generator is None:
        generator = default_generator
    elif not isinstance(generator, Generator):
        raise TypeError(
            f"{function}: generator must be a detnoise.Generator, got {type(generator).__name__}; "
            "make one with detnoise.Generator(device).manual_seed(seed)"
        )
    taken = generator._reserve(_layout.blocks_for(target.numel(), target.dtype))
    try:
        _fill(kind, target, taken.seed, taken.stream, taken.start)
    except BaseException:
        generator._unreserve(taken)
        raise


_draw_outside_compile = _compile.disable(_draw_eagerly)  # dynamo runs it eagerly (graph break)


# Devices already checked by _resolve_device, keyed by the argument as given ("cuda", 0, ...).
_checked_devices: dict[object, torch.device] = {}


_FLOAT_DTYPE_SET = frozenset(_native.FLOAT_DTYPES)
_DEVICE_KEY_TYPES = (str, torch.device, int)
_is_compiling = torch.compiler.is_compiling
_FUNCTION_NAMES = {_native.KIND_NORMAL: "randn", _native.KIND_UNIFORM: "rand", _native.KIND_BITS: "random_bits"}


def _draw_fast(
    kind: int,
    size: tuple[object, ...],
    generator: Generator | None,
    dtype: torch.dtype | None,
    device: DeviceArg,
    out: torch.Tensor | None,
) -> torch.Tensor | None:
    """The common calls without the general path's layers, so a small latent's draw costs little
    more than torch.empty and the kernel: int dims, a detnoise generator or none, eager mode, and
    either a new output on a device seen before or an ``out`` that already has the shape and dtype,
    is contiguous, and needs no autograd or inference-mode decision. None sends the call to the
    general path, which does everything else and raises the errors."""
    if _is_compiling():
        return None
    size = _parse_size(size, _FUNCTION_NAMES[kind])  # raises what the general path would, first
    if generator is None:
        generator = default_generator
    elif not isinstance(generator, Generator):
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
    taken = generator._reserve(_layout.blocks_for(target.numel(), dtype))
    try:
        _native.launch(kind, target, taken[0], taken[1], taken[2])
    except BaseException:
        generator._unreserve(taken)
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
    generator: Generator | None,
    out: torch.Tensor | None,
    dtype: torch.dtype | None,
    layout: torch.layout,
    device: DeviceArg,
    requires_grad: bool,
) -> torch.Tensor:
    if layout != torch.strided:
        raise ValueError(f"{function}: only layout=torch.strided is supported, got {layout}")
    dims = _parse_size(size, function)
    dtype = _resolve_dtype(kind, dtype, out, function)
    if out is not None and isinstance(generator, Generator) and not torch.compiler.is_compiling():
        # Fail before resizing the caller's out; the reservation checks again (atomically).
        _layout.check_room(generator.offset, _layout.blocks_for(_numel(dims), dtype))
    target = _prepare_output(function, kind, dims, dtype, device, out)
    _draw_with_generator(kind, target, generator, function)
    if requires_grad:
        target.requires_grad_(True)
    return target


# ---- torch-style draws ---------------------------------------------------------------------------


def randn(
    *size: SizeArg,
    generator: Generator | None = None,
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
    generator: Generator | None = None,
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
    generator: Generator | None = None,
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
    generator: Generator | None,
    dtype: torch.dtype | None,
    layout: torch.layout | None,
    device: DeviceArg,
    requires_grad: bool,
    memory_format: torch.memory_format,
) -> torch.Tensor:
    if not isinstance(input, torch.Tensor):
        raise TypeError(f"{function}: input must be a torch.Tensor, got {type(input).__name__}")
    if layout is not None and layout != torch.strided:
        raise ValueError(f"{function}: only layout=torch.strided is supported, got {layout}")
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
    generator: Generator | None = None,
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
    generator: Generator | None = None,
    dtype: torch.dtype | None = None,
    layout: torch.layout | None = None,
    device: DeviceArg = None,
    requires_grad: bool = False,
    memory_format: torch.memory_format = torch.preserve_format,
) -> torch.Tensor:
    """``rand`` with the shape (and by default dtype, device, strides) of ``input``."""
    return _like("rand_like", _native.KIND_UNIFORM, input, generator, dtype, layout, device, requires_grad, memory_format)


def _check_fill_target(tensor: object, function: str) -> torch.Tensor:
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{function}: tensor must be a torch.Tensor, got {type(tensor).__name__}")
    _check_dtype(tensor.dtype, _native.KIND_NORMAL, function)
    _resolve_device(tensor.device)
    _check_writable(tensor, function)
    return tensor


def _check_scalar(value: object, name: str, function: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{function}: {name} must be a real number, got {type(value).__name__}")
    return float(value)


def normal_(
    tensor: torch.Tensor, mean: float = 0.0, std: float = 1.0, generator: Generator | None = None
) -> torch.Tensor:
    """Fills ``tensor`` in place with N(mean, std**2) noise, like ``torch.nn.init.normal_``.

    The standard normals are exactly ``randn(tensor.shape, dtype=tensor.dtype)`` in logical element
    order (also for non-contiguous tensors); a mean or std other than 0 and 1 is then applied with
    torch's ``mul_`` and ``add_`` in the tensor's dtype.
    """
    target = _check_fill_target(tensor, "normal_")
    mean_value = _check_scalar(mean, "mean", "normal_")
    std_value = _check_scalar(std, "std", "normal_")
    if std_value < 0:
        raise ValueError(f"normal_: std must be >= 0, got {std_value}")
    with torch.no_grad():
        _draw_with_generator(_native.KIND_NORMAL, target, generator, "normal_")
        if std_value != 1.0:
            target.mul_(std_value)
        if mean_value != 0.0:
            target.add_(mean_value)
    return tensor


def uniform_(tensor: torch.Tensor, a: float = 0.0, b: float = 1.0, generator: Generator | None = None) -> torch.Tensor:
    """Fills ``tensor`` in place with U(a, b) noise, like ``torch.nn.init.uniform_``.

    The [0, 1) values are exactly ``rand(tensor.shape, dtype=tensor.dtype)`` in logical order; other
    bounds are applied as ``u * (b - a) + a`` with torch's ``mul_`` and ``add_``.
    """
    target = _check_fill_target(tensor, "uniform_")
    low = _check_scalar(a, "a", "uniform_")
    high = _check_scalar(b, "b", "uniform_")
    if not low <= high:
        raise ValueError(f"uniform_: expects a <= b, got a={low}, b={high}")
    with torch.no_grad():
        _draw_with_generator(_native.KIND_UNIFORM, target, generator, "uniform_")
        if (low, high) != (0.0, 1.0):
            target.mul_(high - low)
            target.add_(low)
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
