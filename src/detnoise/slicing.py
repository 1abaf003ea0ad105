"""Any slice of a global noise tensor, computed in time proportional to the slice.

``randn_slice(global_shape, index)`` equals ``randn(global_shape)[index]`` and advances the generator
exactly as the full draw would, so ranks that each make their own part stay in step without
communicating. The kernels receive the global flat index of every selected element.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Union

import torch

from detnoise import _compile, _layout, _native, _resolve
from detnoise._draw import GeneratorArg, _checked_generator, check_not_capturing
from detnoise._torchargs import DeviceArg, _check_dtype, _numel, _parse_size, _resolve_device
from detnoise.generator import default_generator

Index = Union[int, slice, type(Ellipsis), Sequence[Union[int, slice, type(Ellipsis)]]]


def _plan(global_shape: tuple[int, ...], index: Index, function: str) -> tuple[tuple[int, ...], list[int], list[int], int]:
    """(result shape, sizes, strides, base) of a basic index into a row-major global tensor."""
    items = list(index) if isinstance(index, tuple) else [index]
    if sum(item is Ellipsis for item in items) > 1:
        raise IndexError(f"{function}: an index can only have a single ellipsis")
    if Ellipsis in items:
        at = items.index(Ellipsis)
        fill = len(global_shape) - (len(items) - 1)
        items[at : at + 1] = [slice(None)] * max(fill, 0)
    if len(items) > len(global_shape):
        raise IndexError(f"{function}: too many indices for a tensor of dimension {len(global_shape)}")
    items += [slice(None)] * (len(global_shape) - len(items))
    row_major = [1] * len(global_shape)
    for dim in range(len(global_shape) - 2, -1, -1):
        row_major[dim] = row_major[dim + 1] * global_shape[dim + 1]
    shape: list[int] = []
    strides: list[int] = []
    base = 0
    for dim, (item, size) in enumerate(zip(items, global_shape)):
        if isinstance(item, slice):
            start, stop, step = item.indices(size)
            if step <= 0:
                raise ValueError(f"{function}: step must be greater than zero (as in torch), got {step}")
            length = len(range(start, stop, step))
            base += start * row_major[dim] if length else 0
            shape.append(length)
            strides.append(step * row_major[dim] if length > 1 else 0)  # one element: the step is moot
        elif item is None or isinstance(item, bool):
            raise TypeError(f"{function}: index items must be ints, slices or ..., got {item!r} "
                            "(None and bool indices add dimensions in torch; randn_slice does not)")
        else:
            try:
                position = operator.index(item)
            except TypeError:
                raise TypeError(f"{function}: indices must be ints, slices or ..., got {type(item).__name__}") from None
            if not -size <= position < size:
                raise IndexError(f"{function}: index {position} is out of bounds for dimension {dim} with size {size}")
            base += (position % size) * row_major[dim]
    sizes, merged_strides = _merge_contiguous(shape, strides)
    return tuple(shape), sizes, merged_strides, base


def _merge_contiguous(sizes: list[int], strides: list[int]) -> tuple[list[int], list[int]]:
    """Merges neighbouring dimensions that are contiguous in the global index (same elements, longer
    rows: a whole-tensor slice becomes one run, which the chunked kernels handle fastest)."""
    merged_sizes: list[int] = []
    merged_strides: list[int] = []
    for size, stride in zip(sizes, strides):
        if merged_sizes and merged_strides[-1] == size * stride:
            merged_sizes[-1] *= size
            merged_strides[-1] = stride
        else:
            merged_sizes.append(size)
            merged_strides.append(stride)
    return merged_sizes, merged_strides


def _slice(
    function: str,
    kind: int,
    global_shape: Sequence[int],
    index: Index,
    generator: GeneratorArg,
    dtype: torch.dtype | None,
    device: DeviceArg,
) -> torch.Tensor:
    dims = _parse_size((tuple(global_shape),), function)
    dtype = torch.get_default_dtype() if dtype is None else dtype
    _check_dtype(dtype, kind, function)
    result_shape, sizes, strides, base = _plan(dims, index, function)
    if len(sizes) > 8:
        raise ValueError(f"{function}: slices of more than 8 dimensions are not supported, got {len(sizes)}")
    generator = _checked_generator(function, generator)
    out = torch.empty(result_shape, dtype=dtype, device=_resolve_device(device))
    if out.is_cuda:
        check_not_capturing(out.device, function)
    taken = _resolve.reserve(generator, _layout.blocks_for(_numel(dims), dtype), default=default_generator)
    try:
        if not sizes:  # every dimension indexed by an int: one element
            sizes, strides = [1], [0]
        _native.launch_strided(kind, out, sizes, strides, base, taken.seed, taken.stream, taken.start)
    except BaseException:
        taken.undo()
        raise
    return out


_slice_eagerly = _compile.disable(_slice)


def _run_slice(*args):
    """Stateful, so compiled callers graph-break here (see detnoise.ops); eager calls skip the wrapper."""
    return _slice_eagerly(*args) if torch.compiler.is_compiling() else _slice(*args)


def randn_slice(
    global_shape: Sequence[int],
    index: Index,
    generator: GeneratorArg = None,
    dtype: torch.dtype | None = None,
    device: DeviceArg = None,
) -> torch.Tensor:
    """``randn(global_shape, generator=generator)[index]``, computing only the selected elements.

    ``index`` is a basic index: ints (negative allowed), slices with positive steps, and one
    ``...``. The generator advances by the whole draw's ``ceil(numel / 4)`` blocks (``/ 2`` for
    float64), exactly as ``randn(global_shape)`` would. The cost is proportional to the slice, so a
    1000-element slice of a 2**40-element virtual tensor is cheap.

    Examples
    --------
    >>> import detnoise, torch
    >>> part = detnoise.randn_slice((8, 1000), (slice(2, 4), slice(None, None, 3)), generator=detnoise.Generator(seed=1))
    >>> whole = detnoise.randn(8, 1000, generator=detnoise.Generator(seed=1))
    >>> torch.equal(part, whole[2:4, ::3])
    True
    """
    return _run_slice("randn_slice", _native.KIND_NORMAL, global_shape, index, generator, dtype, device)


def rand_slice(
    global_shape: Sequence[int],
    index: Index,
    generator: GeneratorArg = None,
    dtype: torch.dtype | None = None,
    device: DeviceArg = None,
) -> torch.Tensor:
    """``rand(global_shape, generator=generator)[index]``, computing only the selected elements."""
    return _run_slice("rand_slice", _native.KIND_UNIFORM, global_shape, index, generator, dtype, device)
