"""torch's argument rules for draws, in one layer: sizes, dtypes, devices, ``out=``, writability.

detnoise's own torch-style functions (``detnoise.functional``), ``randn_slice`` and the torch-level
patch (``detnoise.patch_torch``) all check their arguments here, so a rule lives in one place.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union

import torch

from detnoise import _layout, _native

# Errors of torch's type that stay instances of the type detnoise raised before issue 17, so both
# torch's ``except`` clauses and older detnoise callers catch them.


class SizeError(ValueError, RuntimeError):
    """A negative or too large size (torch: RuntimeError)."""


class DtypeError(TypeError, NotImplementedError):
    """A dtype detnoise does not draw in (torch: NotImplementedError, "not implemented for 'Long'")."""


class LayoutError(ValueError, NotImplementedError):
    """A layout other than torch.strided (torch: NotImplementedError)."""


class MismatchError(TypeError, ValueError, RuntimeError):
    """An ``out`` whose dtype or device contradicts the call, or a device string torch cannot
    parse (torch: RuntimeError)."""


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
            raise SizeError(f"{function}: negative dimension {dim} in size {list(dims)}")
        if dim > _MAX_NUMEL:
            raise SizeError(f"{function}: dimension {dim} in size {list(dims)} is larger than a tensor can hold (2**63 - 1)")
    numel = _numel(dims)
    if numel > _MAX_NUMEL:
        raise SizeError(f"{function}: size {list(dims)} has {numel} elements, more than a tensor can hold (2**63 - 1)")
    return dims


def _check_dtype(dtype: torch.dtype, kind: int, function: str) -> None:
    if kind == _native.KIND_BITS:
        if dtype != torch.uint32:
            raise DtypeError(f"{function}: random bits are torch.uint32, got dtype {dtype}")
    elif dtype not in _native.FLOAT_DTYPES:
        raise DtypeError(
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
        raise MismatchError(f"invalid device {device!r}: {error}") from None
    if resolved.type not in ("cpu", "cuda"):
        raise RuntimeError(f"detnoise draws on 'cpu' and 'cuda' devices only, got '{resolved}'")
    if resolved.type == "cuda":
        if _native.cuda_unavailable_reason() is not None or not torch.cuda.is_available():
            from detnoise import cuda_diagnosis  # the error path only

            raise RuntimeError(f"detnoise: cannot draw on {resolved}: {cuda_diagnosis.cuda_draw_problem()}")
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
            raise MismatchError(f"{function}: dtype {dtype} does not match the dtype of out ({out.dtype})")
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
        raise MismatchError(f"{function}: device {device} does not match the device of out ({out.device})")
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



# Devices already checked by _resolve_device, keyed by the argument as given ("cuda", 0, ...).
_checked_devices: dict[object, torch.device] = {}


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



# ---- the values torch refuses (checked before any block is taken) ---------------------------------


def _check_std(std: float, function: str) -> None:
    """torch's normal: ``std >= 0`` (so NaN is refused too), a RuntimeError."""
    if not std >= 0:
        raise RuntimeError(f"{function}: normal expects std >= 0.0, but found std {std}")


def _check_uniform_bounds(low: float, high: float, dtype: torch.dtype, function: str) -> None:
    """torch's uniform_ for a floating dtype, in its order: ``from`` and ``to`` within the dtype's
    finite range (so NaN and infinities are refused), ``from <= to``, and ``to - from`` (binary64)
    at most the dtype's largest value. RuntimeErrors, as torch's."""
    info = torch.finfo(dtype)
    low, high = float(low), float(high)
    for value, name in ((low, "from"), (high, "to")):
        if not info.min <= value <= info.max:
            raise RuntimeError(f"{function}: {name}={value} is out of bounds for {dtype}")
    if not low <= high:
        raise RuntimeError(f"{function} expects to return a [from, to) range, but found from={low} > to={high}")
    if not high - low <= info.max:
        raise RuntimeError(f"{function} expects to-from <= the largest {dtype}, but found to={high} and from={low} "
                           "which result in to-from to exceed the limit")
