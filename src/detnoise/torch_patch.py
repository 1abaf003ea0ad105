"""detnoise behind torch's samplers: ``patch_torch()`` / ``unpatch_torch()``.

While the patch is active, ``torch.randn``, ``rand``, ``randint``, ``randperm``, ``normal``,
``bernoulli``, ``multinomial``, the ``*_like`` forms and ``Tensor.normal_``, ``uniform_``,
``random_``, ``bernoulli_``, ``exponential_`` give detnoise values (docs/SPEC.md §4-§6 and §10),
with torch's signatures and generator/device/dtype/out semantics. Generators go through the
resolver (``detnoise._resolve``); ``generator=None`` means ``torch.default_generator``, so
``torch.manual_seed(s)`` makes a script reproducible on every device.

Mechanism: the few functions are rebound (module attributes of ``torch`` and methods of
``torch.Tensor``), which costs nothing for any other op; a ``TorchFunctionMode`` would cost Python
time on every torch op (benchmarks/NOTES.md, "patch_torch mechanism"). Code that bound a function
before patching (``from torch import randn``) keeps torch's.

Coverage levels (one set of rebindings serves both):

- ``patch_torch()``: every call is a detnoise draw;
- ``patch_diffusers()`` (its generator part): calls that pass a ``generator`` are detnoise draws
  wherever they are made (user code and diffusers share generator objects), and calls without one
  only when made directly by diffusers code (a pipeline's ``__call__``, a scheduler's ``step``, any
  function of a ``diffusers.*`` module except weight initialisers) or inside
  :func:`diffusers_scope`; code outside diffusers keeps torch's global RNG.

Argument errors are torch's own: when detnoise's checks refuse a call, the original function is
run on a copy of the generator (and of ``out`` or ``self``) so that torch raises its exact error;
the caller's generator never moves on a failed call.
"""

from __future__ import annotations

import contextlib
import functools
import math
import re
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch

from detnoise import _compile, _draw, _native
from detnoise._torchargs import _check_writable

__all__ = ["TorchPatch", "patch_torch", "unpatch_torch", "is_torch_patched", "diffusers_scope", "PATCHED"]

KIND_BITS, KIND_UNIFORM, KIND_NORMAL = _native.KIND_BITS, _native.KIND_UNIFORM, _native.KIND_NORMAL
_FLOATS = frozenset(_native.FLOAT_DTYPES)
_HALF = frozenset((torch.float16, torch.bfloat16))
# sqrt(1/2) rounded to nearest (SPEC §10.2): scales complex normals so E|z|^2 = 1, as torch does.
_SQRT_HALF = {torch.float32: float.fromhex("0x1.6a09e6p-1"), torch.float64: float.fromhex("0x1.6a09e667f3bcdp-1")}
_INT64_MIN = -(1 << 63)
_ARGUMENT_ERRORS = (TypeError, ValueError, RuntimeError, IndexError, NotImplementedError, OverflowError)


# ---- the values: one reservation per call, then ops that are exact on every device --------------


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """16-bit results are computed in float32 and rounded once at the end (SPEC §10.1)."""
    return torch.float32 if dtype in _HALF else dtype


# SPEC §10.11: the one NaN of each dtype (positive, quiet, zero payload), as the signed integer of
# its bits, and the float32 rounding threshold past which a number becomes +-inf.
_CANONICAL_NAN = {torch.float32: (torch.int32, 0x7FC00000), torch.float64: (torch.int64, 0x7FF8000000000000),
                  torch.float16: (torch.int16, 0x7E00), torch.bfloat16: (torch.int16, 0x7FC0)}
_F32_OVERFLOW = float.fromhex("0x1.ffffffp+127")


def _finite_in(value: float, compute: torch.dtype) -> bool:
    """Whether a Python number stays finite when rounded to ``compute`` (float32 or float64)."""
    value = float(value)
    return math.isfinite(value) and (compute == torch.float64 or abs(value) < _F32_OVERFLOW)


def _narrow(values: torch.Tensor, dtype: torch.dtype, may_be_nan: bool) -> torch.Tensor:
    """``values`` (compute type) as ``dtype``; with ``may_be_nan``, every NaN is the canonical NaN
    of ``dtype`` (SPEC §10.11, §6). NaN bits from arithmetic and from torch's narrowing differ by
    device and CPU capability (x86 0*inf is 0xFFC00000, CUDA's 0x7FFFFFFF; torch's CPU bfloat16
    narrowing gives 0xFFFF or 0x7FC0), so they are replaced by a bit copy, not converted. Callers
    pass ``may_be_nan`` only where the parameters allow a NaN, so finite draws pay nothing."""
    result = values.to(dtype)
    if not may_be_nan:
        return result
    integer, bits = _CANONICAL_NAN[dtype]
    canonical = torch.tensor(bits, dtype=integer, device=result.device)
    return torch.where(torch.isnan(values), canonical, result.view(integer)).view(dtype)


def _native_draw(kind: int, shape: tuple[int, ...], dtype: torch.dtype, device: Optional[torch.device],
                 generator: Any, function: str) -> torch.Tensor:
    """A new contiguous tensor holding the next draw of ``kind`` from ``generator`` (``device``
    None: torch's default device; devices other than CPU and CUDA get CPU values moved there)."""
    target = torch.empty(shape, dtype=dtype, device=device)
    if target.device.type not in ("cpu", "cuda"):
        return _native_draw(kind, shape, dtype, torch.device("cpu"), generator, function).to(target.device)
    _draw._draw_with_generator(kind, target, generator, function, default=torch.default_generator)
    return target


def _scalar(value: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A Python number rounded to ``dtype`` (round to nearest even), as a 0-dim operand."""
    return torch.tensor(value, dtype=dtype, device=device)


def normal_values(shape, dtype, device, generator, function, mean: Any = 0.0, std: Any = 1.0) -> torch.Tensor:
    """SPEC §10.1/§10.2: standard normals (§5/§6), then ``* std`` and ``+ mean`` as two separate
    IEEE operations in the compute type (skipped for Python-number std 1 / mean 0)."""
    if dtype.is_complex:
        real = {torch.complex64: torch.float32, torch.complex128: torch.float64}.get(dtype)
        if real is None:
            raise TypeError(f"{function}: detnoise defines complex normals for complex64 and complex128, not {dtype}")
        if not (_is_number(mean) and _is_number(std) and mean == 0 and std == 1):
            raise TypeError(f"{function}: complex normals with a mean or std are not defined by detnoise")
        pairs = _native_draw(KIND_NORMAL, (*shape, 2), real, device, generator, function)
        return torch.view_as_complex(pairs * _scalar(_SQRT_HALF[real], real, device))
    compute = _compute_dtype(dtype)
    values = _native_draw(KIND_NORMAL, shape, compute, device, generator, function)
    # NaN needs an infinite std (0 * inf) or a non-finite mean (SPEC §10.11); tensors may hold either.
    may_be_nan = False
    if isinstance(std, torch.Tensor) or std != 1:
        values = values * (std.to(compute) if isinstance(std, torch.Tensor) else _scalar(std, compute, device))
        may_be_nan = isinstance(std, torch.Tensor) or not _finite_in(std, compute)
    if isinstance(mean, torch.Tensor) or mean != 0:
        values = values + (mean.to(compute) if isinstance(mean, torch.Tensor) else _scalar(mean, compute, device))
        may_be_nan = may_be_nan or isinstance(mean, torch.Tensor) or not _finite_in(mean, compute)
    return _narrow(values, dtype, may_be_nan)


def uniform_values(shape, dtype, device, generator, function, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
    """SPEC §10.3: the uniform of §4 in ``dtype``; for bounds other than [0, 1), ``u * (high - low)``
    (the width computed in binary64, rounded to the compute type) ``+ low``, two IEEE operations."""
    values = _native_draw(KIND_UNIFORM, shape, dtype, device, generator, function)
    if (low, high) == (0.0, 1.0):
        return values
    compute = _compute_dtype(dtype)
    values = values.to(compute) * _scalar(float(high) - float(low), compute, device)
    return (values + _scalar(low, compute, device)).to(dtype)


def exponential_values(shape, dtype, device, generator, function, lambd: float = 1.0) -> torch.Tensor:
    """SPEC §10.4: ``E = (z0*z0 + z1*z1) * 0.5`` from the two normals of one Box-Muller pair
    (``-log u`` without a logarithm), then ``* (1/lambd)``."""
    compute = _compute_dtype(dtype)
    pairs = _native_draw(KIND_NORMAL, (*shape, 2), compute, device, generator, function)
    z0, z1 = pairs[..., 0], pairs[..., 1]
    values = ((z0 * z0) + (z1 * z1)) * _scalar(0.5, compute, device)
    may_be_nan = False  # NaN only from E = +0 times r = 1/lambd rounded to +inf (SPEC §10.11)
    if lambd != 1:
        values = values * _scalar(1.0 / float(lambd), compute, device)
        may_be_nan = not _finite_in(1.0 / float(lambd), compute)
    return _narrow(values, dtype, may_be_nan)


def bernoulli_values(shape, dtype, device, generator, function, p: Any) -> torch.Tensor:
    """SPEC §10.5: 1 where the float64 uniform (§4) is below p (compared exactly in binary64)."""
    u = _native_draw(KIND_UNIFORM, shape, torch.float64, device, generator, function)
    threshold = p.to(device=device, dtype=torch.float64) if isinstance(p, torch.Tensor) else float(p)
    return (u < threshold).to(dtype)


def _words64(shape, device, generator, function) -> tuple[torch.Tensor, torch.Tensor]:
    """(hi, lo) 32-bit halves, as int64, of one 64-bit word per element: W = (w1 << 32) | w0 and
    (w3 << 32) | w2 of each block, two elements per block (the float64 layout of §2)."""
    words = _native_draw(KIND_BITS, (*shape, 2), torch.uint32, device, generator, function)
    joined = words.view(torch.int64).squeeze(-1)  # little-endian: element k = w[2k] | w[2k+1] << 32
    return (joined >> 32) & 0xFFFFFFFF, joined & 0xFFFFFFFF


def _product_halves(x: torch.Tensor, y: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(floor(x*y / 2^32), (x*y) mod 2^32) for 32-bit x (int64 tensor) and y < 2^32, in int64
    operations that cannot overflow: x*y = (x*y_hi)*2^16 + x*y_lo, each product below 2^48."""
    a = x * (y >> 16)
    t = ((a & 0xFFFF) << 16) + x * (y & 0xFFFF)  # < 2^32 + 2^48
    return (a >> 16) + (t >> 32), t & 0xFFFFFFFF


def scaled_words(hi: torch.Tensor, lo: torch.Tensor, span: int) -> torch.Tensor:
    """floor(W * span / 2^64) for W = hi*2^32 + lo and 1 <= span <= 2^63, exactly, in int64."""
    if span < 1 << 31:  # every product and sum below 2^63
        return (hi * span + ((lo * span) >> 32)) >> 32
    span_hi, span_lo = span >> 32, span & 0xFFFFFFFF  # span_hi <= 2^31
    carry = _product_halves(lo, span_lo)[0]  # floor(lo*span_lo / 2^32)
    p1_hi, p1_lo = _product_halves(hi, span_lo)
    p2_hi, p2_lo = _product_halves(lo, span_hi)
    middle = p1_hi + p2_hi + ((p1_lo + p2_lo + carry) >> 32)
    return hi * span_hi + middle  # hi*span_hi < 2^63


def integer_values(shape, dtype, device, generator, function, low: int, span: int) -> torch.Tensor:
    """SPEC §10.6: ``low + floor(W * span / 2^64)`` from one 64-bit word per element."""
    if not 1 <= span <= 1 << 63:
        raise RuntimeError(f"{function}: detnoise draws integer ranges of 1 to 2**63 values, got {span}")
    hi, lo = _words64(shape, device, generator, function)
    values = scaled_words(hi, lo, span)
    if low:
        values = values + low
    return values.to(dtype)


def permutation_values(n: int, dtype, device, generator, function) -> torch.Tensor:
    """SPEC §10.7: indices of the 64-bit keys in ascending unsigned order, ties by index."""
    hi, lo = _words64((n,), device, generator, function)
    keys = ((hi << 32) | lo) ^ _INT64_MIN  # flipping the sign bit orders int64 like uint64
    return torch.sort(keys, stable=True).indices.to(dtype)


def multinomial_values(probs: torch.Tensor, samples: int, replacement: bool, generator, function) -> torch.Tensor:
    """SPEC §10.8: exponential races. Each category i of a row gets ``E_i / p_i`` (binary64, E from
    §10.4's float64 form); without replacement the first ``samples`` indices in ascending key order
    (stable), with replacement ``samples`` independent races, each the first index of the least key."""
    rows = probs.reshape(-1, probs.shape[-1]).to(torch.float64)
    count, categories = rows.shape
    rounds = samples if replacement else 1
    pairs = _native_draw(KIND_NORMAL, (count, rounds, categories, 2), torch.float64, probs.device, generator, function)
    z0, z1 = pairs[..., 0], pairs[..., 1]
    keys = (((z0 * z0) + (z1 * z1)) * 0.5) / rows[:, None, :]
    if replacement:
        result = torch.argmin(keys, dim=-1)
    else:
        result = torch.sort(keys[:, 0, :], dim=-1, stable=True).indices[:, :samples]
    return result.reshape(*probs.shape[:-1], samples)


# ---- argument handling -------------------------------------------------------------------------


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_generator(generator: object) -> None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")


def _raise_like_torch(original: Callable[..., Any], args: tuple, kwargs: dict, error: BaseException,
                      self: Optional[torch.Tensor] = None) -> None:
    """Re-runs the refused call through torch on copies, so the caller gets torch's own exception
    (type and message); if torch accepts it after all, detnoise's error stands. Nothing the caller
    holds changes: the generator, ``out`` and ``self`` are copies, the global RNG is forked."""
    probe = dict(kwargs)
    generator = probe.get("generator")
    if isinstance(generator, torch.Generator):
        probe["generator"] = generator.clone_state()
    if isinstance(probe.get("out"), torch.Tensor):
        probe["out"] = probe["out"].detach().clone()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        try:
            if self is not None:
                original(self.detach().clone(), *args, **probe)
            else:
                original(*args, **probe)
        except _ARGUMENT_ERRORS as torch_error:
            raise torch_error.with_traceback(None) from None
    raise error


@dataclass
class _Factory:
    shape: tuple[int, ...]
    dtype: torch.dtype
    device: torch.device
    out: Optional[torch.Tensor]
    requires_grad: bool
    pin_memory: bool
    generator: Any


def _plan_factory(original: Callable[..., Any], args: tuple, kwargs: dict) -> _Factory:
    """torch's own argument rules for a factory call, read from the same call on the meta device."""
    probe = dict(kwargs)
    out = probe.pop("out", None)
    device = probe.pop("device", None)
    requires_grad = bool(probe.pop("requires_grad", False))
    pin_memory = bool(probe.pop("pin_memory", False))
    generator = probe.pop("generator", None)
    _check_generator(generator)
    if out is not None:
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"out must be a Tensor, got {type(out).__name__}")
        if probe.get("dtype") is None:
            probe["dtype"] = out.dtype
        elif probe["dtype"] != out.dtype:
            raise RuntimeError(f"dtype {probe['dtype']} does not match dtype of out parameter ({out.dtype})")
    meta = original(*args, **probe, device="meta")
    if device is not None:
        target = torch.device(device)
    elif out is not None:
        target = out.device
    else:
        target = torch.get_default_device()
    if out is not None and device is not None and _device_key(target) != _device_key(out.device):
        raise RuntimeError(f"Expected out tensor to have device {target}, but got {out.device} instead")
    return _Factory(tuple(meta.shape), meta.dtype, target, out, requires_grad, pin_memory, generator)


def _device_key(device: torch.device) -> tuple[str, int]:
    if device.type == "cuda" and device.index is None:
        return ("cuda", torch.cuda.current_device())
    return (device.type, device.index or 0)


def _draw_device(device: Optional[torch.device]) -> Optional[torch.device]:
    """detnoise computes on CPU and CUDA; other devices get CPU values moved to them."""
    return device if device is None or device.type in ("cpu", "cuda") else torch.device("cpu")


def _finish(plan: _Factory, values: torch.Tensor) -> torch.Tensor:
    if plan.device is not None and values.device != plan.device and plan.device.type not in ("cpu", "cuda"):
        values = values.to(plan.device)
    if plan.out is not None:
        if plan.requires_grad:
            raise RuntimeError("out= arguments don't support automatic differentiation")
        if tuple(plan.out.shape) != plan.shape:
            plan.out.resize_(plan.shape)
        plan.out.copy_(values)
        return plan.out
    if plan.pin_memory:
        values = values.pin_memory()
    if plan.requires_grad:
        values.requires_grad_(True)
    return values


def _check_float_dtype(dtype: torch.dtype, function: str, complex_ok: bool = False) -> None:
    if dtype in _FLOATS or (complex_ok and dtype.is_complex):
        return
    raise RuntimeError(f"{function}: dtype {dtype} is not a floating-point dtype detnoise draws")


# ---- the patched functions ----------------------------------------------------------------------

_ORIGINAL: dict[str, Any] = {}


_FAST_KEYS = frozenset(("generator", "dtype", "device", "requires_grad"))
_DEVICE_TYPES = (str, torch.device, int)


def _fast_plan(args: tuple, kwargs: dict) -> Optional[_Factory]:
    """The common ``randn``/``rand`` calls (int sizes, varargs or one sequence; generator, dtype,
    device, requires_grad) without asking torch's parser on the meta device (about 20 us); None
    sends the call to :func:`_plan_factory`, which handles every form and error."""
    if kwargs and not _FAST_KEYS.issuperset(kwargs):
        return None
    dims = tuple(args[0]) if len(args) == 1 and type(args[0]) in (tuple, list, torch.Size) else args
    for dim in dims:
        if type(dim) is not int or dim < 0:
            return None
    dtype = kwargs.get("dtype")
    if dtype is None:
        dtype = torch.get_default_dtype()
    elif type(dtype) is not torch.dtype:
        return None
    device = kwargs.get("device")
    if device is not None:
        if type(device) not in _DEVICE_TYPES:
            return None
        device = torch.device(device)
    generator = kwargs.get("generator")
    if generator is not None and not isinstance(generator, torch.Generator):
        return None
    return _Factory(dims, dtype, device, None, bool(kwargs.get("requires_grad", False)), False, generator)


def _factory_call(name: str, args: tuple, kwargs: dict, make: Callable[[_Factory, torch.device], torch.Tensor]) -> torch.Tensor:
    original = _ORIGINAL[name]
    try:
        plan = (_fast_plan(args, kwargs) if name in ("randn", "rand") else None) or _plan_factory(original, args, kwargs)
        return _finish(plan, make(plan, _draw_device(plan.device)))
    except _ARGUMENT_ERRORS as error:
        _raise_like_torch(original, args, kwargs, error)
        raise  # unreachable: _raise_like_torch always raises


def randn(*args: Any, **kwargs: Any) -> torch.Tensor:
    if not _covers(kwargs.get("generator")):
        return _ORIGINAL["randn"](*args, **kwargs)

    def make(plan: _Factory, device: torch.device) -> torch.Tensor:
        _check_float_dtype(plan.dtype, "randn", complex_ok=True)
        return normal_values(plan.shape, plan.dtype, device, plan.generator, "randn")

    return _factory_call("randn", args, kwargs, make)


def rand(*args: Any, **kwargs: Any) -> torch.Tensor:
    if not _covers(kwargs.get("generator")):
        return _ORIGINAL["rand"](*args, **kwargs)

    def make(plan: _Factory, device: torch.device) -> torch.Tensor:
        _check_float_dtype(plan.dtype, "rand")
        return uniform_values(plan.shape, plan.dtype, device, plan.generator, "rand")

    return _factory_call("rand", args, kwargs, make)


def _randint_bounds(args: tuple, kwargs: dict) -> tuple[int, int]:
    named = {key: kwargs[key] for key in ("low", "high") if key in kwargs}
    numbers = [arg for arg in args if not isinstance(arg, (tuple, list, torch.Size))]
    if "high" in named:
        return int(named.get("low", numbers[0] if numbers else 0)), int(named["high"])
    if len(numbers) >= 2:
        return int(numbers[0]), int(numbers[1])
    return int(named.get("low", 0)), int(numbers[0])


def _check_integer_range(dtype: torch.dtype, low: int, high: int, function: str) -> None:
    if low >= high:
        raise RuntimeError(f"random_ expects 'from' to be less than 'to', but got from={low} >= to={high}")
    if dtype == torch.bool:
        lowest, highest = 0, 1
    elif dtype.is_floating_point:
        digits = {torch.float32: 24, torch.float64: 53, torch.float16: 11, torch.bfloat16: 8}[dtype]
        lowest, highest = -(1 << digits), 1 << digits
    else:
        info = torch.iinfo(dtype)
        lowest, highest = info.min, info.max
    if low < lowest or high - 1 > highest:
        raise RuntimeError(f"{function}: [{low}, {high}) is out of bounds for {dtype}")


def randint(*args: Any, **kwargs: Any) -> torch.Tensor:
    if not _covers(kwargs.get("generator")):
        return _ORIGINAL["randint"](*args, **kwargs)

    def make(plan: _Factory, device: torch.device) -> torch.Tensor:
        low, high = _randint_bounds(args, kwargs)
        if plan.dtype.is_complex:
            raise RuntimeError(f"randint: dtype {plan.dtype} is not supported")
        _check_integer_range(plan.dtype, low, high, "randint")
        return integer_values(plan.shape, plan.dtype, device, plan.generator, "randint", low, high - low)

    return _factory_call("randint", args, kwargs, make)


def randperm(*args: Any, **kwargs: Any) -> torch.Tensor:
    if not _covers(kwargs.get("generator")):
        return _ORIGINAL["randperm"](*args, **kwargs)

    def make(plan: _Factory, device: torch.device) -> torch.Tensor:
        n = plan.shape[0]
        if plan.dtype.is_floating_point and n > 0:
            _check_integer_range(plan.dtype, 0, n, "randperm")
        return permutation_values(n, plan.dtype, device, plan.generator, "randperm")

    return _factory_call("randperm", args, kwargs, make)


def normal(*args: Any, **kwargs: Any) -> torch.Tensor:
    if not _covers(kwargs.get("generator")):
        return _ORIGINAL["normal"](*args, **kwargs)
    original = _ORIGINAL["normal"]
    names = ("mean", "std", "size")
    given = dict(zip(names, args))
    given.update({key: kwargs[key] for key in names if key in kwargs})
    mean, std = given.get("mean", 0.0), given.get("std", 1.0)
    try:
        if isinstance(mean, torch.Tensor) or isinstance(std, torch.Tensor):
            return _normal_tensors(original, args, kwargs, mean, std)

        def make(plan: _Factory, device: torch.device) -> torch.Tensor:
            if std < 0:
                raise RuntimeError(f"normal expects std >= 0.0, but found std {std}")
            _check_float_dtype(plan.dtype, "normal")
            return normal_values(plan.shape, plan.dtype, device, plan.generator, "normal", mean, std)

        plan = _plan_factory(original, args, kwargs)
        return _finish(plan, make(plan, _draw_device(plan.device)))
    except _ARGUMENT_ERRORS as error:
        _raise_like_torch(original, args, kwargs, error)
        raise


def _normal_tensors(original, args, kwargs, mean, std) -> torch.Tensor:
    generator, out = kwargs.get("generator"), kwargs.get("out")
    _check_generator(generator)
    meta_args = tuple(arg.to("meta") if isinstance(arg, torch.Tensor) else arg for arg in args)
    meta_kwargs = {key: (value.to("meta") if isinstance(value, torch.Tensor) else value)
                   for key, value in kwargs.items() if key not in ("generator", "out")}
    meta = original(*meta_args, **meta_kwargs)
    if isinstance(std, torch.Tensor) and bool((std < 0).any()):
        raise RuntimeError("normal expects all elements of std >= 0.0")
    device = (mean if isinstance(mean, torch.Tensor) else std).device
    _check_float_dtype(meta.dtype, "normal")
    values = normal_values(tuple(meta.shape), meta.dtype, _draw_device(device), generator, "normal", mean, std)
    plan = _Factory(tuple(meta.shape), meta.dtype, device, out, False, False, generator)
    return _finish(plan, values)


def bernoulli(*args: Any, **kwargs: Any) -> torch.Tensor:
    if not _covers(kwargs.get("generator")):
        return _ORIGINAL["bernoulli"](*args, **kwargs)
    original = _ORIGINAL["bernoulli"]
    try:
        source = args[0] if args else kwargs["input"]
        p = args[1] if len(args) > 1 else kwargs.get("p", source)
        generator, out = kwargs.get("generator"), kwargs.get("out")
        _check_generator(generator)
        _check_float_dtype(source.dtype, "bernoulli")
        _check_probability(p)
        values = bernoulli_values(tuple(source.shape), source.dtype, _draw_device(source.device), generator, "bernoulli", p)
        return _finish(_Factory(tuple(source.shape), source.dtype, source.device, out, False, False, generator), values)
    except _ARGUMENT_ERRORS as error:
        _raise_like_torch(original, args, kwargs, error)
        raise


def _check_probability(p: Any) -> None:
    if isinstance(p, torch.Tensor):
        if not (p.dtype.is_floating_point and bool(((p >= 0) & (p <= 1)).all())):
            raise RuntimeError("bernoulli: p must be floating point values in [0, 1]")
    elif not (_is_number(p) and 0 <= p <= 1):
        raise RuntimeError(f"bernoulli_ expects p to be in [0, 1], but got p={p}")


def multinomial(*args: Any, **kwargs: Any) -> torch.Tensor:
    if not _covers(kwargs.get("generator")):
        return _ORIGINAL["multinomial"](*args, **kwargs)
    original = _ORIGINAL["multinomial"]
    try:
        names = ("input", "num_samples", "replacement")
        given = dict(zip(names, args))
        given.update({key: kwargs[key] for key in names if key in kwargs})
        probs, samples, replacement = given["input"], given["num_samples"], bool(given.get("replacement", False))
        generator, out = kwargs.get("generator"), kwargs.get("out")
        _check_generator(generator)
        _check_multinomial(probs, samples, replacement)
        values = multinomial_values(probs, samples, replacement, generator, "multinomial")
        shape = tuple(values.shape)
        return _finish(_Factory(shape, torch.int64, probs.device, out, False, False, generator), values)
    except _ARGUMENT_ERRORS as error:
        _raise_like_torch(original, args, kwargs, error)
        raise


def _check_multinomial(probs: Any, samples: Any, replacement: bool) -> None:
    if not isinstance(probs, torch.Tensor) or not probs.dtype.is_floating_point:
        raise RuntimeError("multinomial only supports floating-point dtypes for input")
    if probs.dim() not in (1, 2):
        raise RuntimeError("prob_dist must be 1 or 2 dim")
    if isinstance(samples, bool) or not isinstance(samples, int) or samples <= 0:
        raise RuntimeError(f"cannot sample n_sample <= 0 samples (got {samples})")
    categories = probs.shape[-1]
    if categories > 1 << 24:
        raise RuntimeError("number of categories cannot exceed 2^24")
    if not replacement and samples > categories:
        raise RuntimeError("cannot sample n_sample > prob_dist.size(-1) samples without replacement")
    rows = probs.reshape(-1, categories).to(torch.float64)
    if not bool(torch.isfinite(rows).all()) or bool((rows < 0).any()):
        raise RuntimeError("probability tensor contains either `inf`, `nan` or element < 0")
    if bool((rows.sum(-1) <= 0).any()):
        raise RuntimeError("invalid multinomial distribution (sum of probabilities <= 0)")
    if not replacement and bool(((rows > 0).sum(-1) < samples).any()):
        raise RuntimeError("invalid multinomial distribution (with replacement=False, not enough non-negative category to sample)")


def _like_call(name: str, args: tuple, kwargs: dict, make: Callable[[torch.Tensor, torch.device], torch.Tensor]) -> torch.Tensor:
    original = _ORIGINAL[name]
    try:
        source = args[0] if args else kwargs["input"]
        probe = {key: value for key, value in kwargs.items() if key not in ("generator", "device", "input", "requires_grad")}
        _check_generator(kwargs.get("generator"))
        meta = original(source.to("meta"), *args[1:], **probe)
        device = torch.device(kwargs["device"]) if kwargs.get("device") is not None else source.device
        target = torch.empty_like(meta, device=device)  # torch's memory_format rule, on the real device
        values = make(meta, _draw_device(device))
        with torch.no_grad():
            target.copy_(values)
        if kwargs.get("requires_grad"):
            target.requires_grad_(True)
        return target
    except _ARGUMENT_ERRORS as error:
        _raise_like_torch(original, args, kwargs, error)
        raise


def randn_like(*args: Any, **kwargs: Any) -> torch.Tensor:
    if not _covers(kwargs.get("generator")):
        return _ORIGINAL["randn_like"](*args, **kwargs)

    def make(meta: torch.Tensor, device: torch.device) -> torch.Tensor:
        _check_float_dtype(meta.dtype, "randn_like", complex_ok=True)
        return normal_values(tuple(meta.shape), meta.dtype, device, kwargs.get("generator"), "randn_like")

    return _like_call("randn_like", args, kwargs, make)


def rand_like(*args: Any, **kwargs: Any) -> torch.Tensor:
    if not _covers(kwargs.get("generator")):
        return _ORIGINAL["rand_like"](*args, **kwargs)

    def make(meta: torch.Tensor, device: torch.device) -> torch.Tensor:
        _check_float_dtype(meta.dtype, "rand_like")
        return uniform_values(tuple(meta.shape), meta.dtype, device, kwargs.get("generator"), "rand_like")

    return _like_call("rand_like", args, kwargs, make)


def randint_like(*args: Any, **kwargs: Any) -> torch.Tensor:
    if not _covers(kwargs.get("generator")):
        return _ORIGINAL["randint_like"](*args, **kwargs)

    def make(meta: torch.Tensor, device: torch.device) -> torch.Tensor:
        numbers = list(args[1:])
        if "high" in kwargs:
            low, high = int(kwargs.get("low", numbers[0] if numbers else 0)), int(kwargs["high"])
        elif len(numbers) >= 2:
            low, high = int(numbers[0]), int(numbers[1])
        else:
            low, high = int(kwargs.get("low", 0)), int(numbers[0])
        _check_integer_range(meta.dtype, low, high, "randint_like")
        return integer_values(tuple(meta.shape), meta.dtype, device, kwargs.get("generator"), "randint_like", low, high - low)

    return _like_call("randint_like", args, kwargs, make)


# ---- Tensor methods (in place) -------------------------------------------------------------------


def _in_place(name: str, self: torch.Tensor, args: tuple, kwargs: dict,
              make: Callable[[torch.device], torch.Tensor]) -> torch.Tensor:
    original = _ORIGINAL[name]
    if self.device.type == "meta":
        return original(self, *args, **kwargs)
    try:
        _check_generator(kwargs.get("generator"))
        # torch's in-place rules, checked before any blocks are taken.
        if self.requires_grad and self.is_leaf and torch.is_grad_enabled():
            raise RuntimeError("a leaf Variable that requires grad is being used in an in-place operation.")
        _check_writable(self, name)
        values = make(_draw_device(self.device))
        self.copy_(values)
        return self
    except _ARGUMENT_ERRORS as error:
        _raise_like_torch(original, args, kwargs, error, self=self)
        raise


def _named(args: tuple, kwargs: dict, names: tuple[str, ...], defaults: tuple[Any, ...]) -> list[Any]:
    values = list(defaults)
    for index, value in enumerate(args):
        values[index] = value
    for index, key in enumerate(names):
        if key in kwargs:
            values[index] = kwargs[key]
    return values


def tensor_normal_(self: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    if not _covers(kwargs.get("generator")):
        return _ORIGINAL["Tensor.normal_"](self, *args, **kwargs)
    mean, std = _named(args, kwargs, ("mean", "std"), (0.0, 1.0))

    def make(device: torch.device) -> torch.Tensor:
        if not (_is_number(mean) and _is_number(std)):
            raise TypeError("normal_: mean and std must be numbers")
        if std < 0:
            raise RuntimeError(f"normal expects std >= 0.0, but found std {std}")
        _check_float_dtype(self.dtype, "normal_", complex_ok=True)
        return normal_values(tuple(self.shape), self.dtype, device, kwargs.get("generator"), "normal_", mean, std)

    return _in_place("Tensor.normal_", self, args, kwargs, make)


def tensor_uniform_(self: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    if not _covers(kwargs.get("generator")):
        return _ORIGINAL["Tensor.uniform_"](self, *args, **kwargs)
    low, high = _named(args, kwargs, ("from", "to"), (0.0, 1.0))

    def make(device: torch.device) -> torch.Tensor:
        if not (_is_number(low) and _is_number(high)):
            raise TypeError("uniform_: from and to must be numbers")
        if low > high:
            raise RuntimeError(f"uniform_ expects to return a [from, to) range, but found from={low} > to={high}")
        _check_float_dtype(self.dtype, "uniform_")
        return uniform_values(tuple(self.shape), self.dtype, device, kwargs.get("generator"), "uniform_", low, high)

    return _in_place("Tensor.uniform_", self, args, kwargs, make)


def tensor_exponential_(self: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    if not _covers(kwargs.get("generator")):
        return _ORIGINAL["Tensor.exponential_"](self, *args, **kwargs)
    (lambd,) = _named(args, kwargs, ("lambd",), (1.0,))

    def make(device: torch.device) -> torch.Tensor:
        if not _is_number(lambd):
            raise TypeError("exponential_: lambd must be a number")
        if not lambd > 0:
            raise RuntimeError(f"exponential_ expects lambda > 0.0, but found lambda={lambd}")
        _check_float_dtype(self.dtype, "exponential_")
        return exponential_values(tuple(self.shape), self.dtype, device, kwargs.get("generator"), "exponential_", lambd)

    return _in_place("Tensor.exponential_", self, args, kwargs, make)


def tensor_bernoulli_(self: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    if not _covers(kwargs.get("generator")):
        return _ORIGINAL["Tensor.bernoulli_"](self, *args, **kwargs)
    (p,) = _named(args, kwargs, ("p",), (0.5,))

    def make(device: torch.device) -> torch.Tensor:
        _check_probability(p)
        if self.dtype.is_complex:
            raise RuntimeError(f"bernoulli_: dtype {self.dtype} is not supported")
        return bernoulli_values(tuple(self.shape), self.dtype, device, kwargs.get("generator"), "bernoulli_", p)

    return _in_place("Tensor.bernoulli_", self, args, kwargs, make)


def _default_integer_range(dtype: torch.dtype) -> tuple[int, int]:
    """random_()'s range [low, high): [0, 2^digits] for floats, [0, max] for integers (as torch)."""
    if dtype == torch.bool:
        return 0, 2
    if dtype.is_floating_point:
        return 0, (1 << {torch.float32: 24, torch.float64: 53, torch.float16: 11, torch.bfloat16: 8}[dtype]) + 1
    return 0, torch.iinfo(dtype).max + 1


def tensor_random_(self: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    if not _covers(kwargs.get("generator")):
        return _ORIGINAL["Tensor.random_"](self, *args, **kwargs)
    numbers = [arg for arg in args]

    def make(device: torch.device) -> torch.Tensor:
        if self.dtype.is_complex:
            raise RuntimeError(f"random_: dtype {self.dtype} is not supported")
        default_low, default_high = _default_integer_range(self.dtype)
        if "from" in kwargs or len(numbers) >= 2:
            low = kwargs["from"] if "from" in kwargs else numbers[0]
            high = kwargs["to"] if "to" in kwargs else (numbers[1] if len(numbers) >= 2 else None)
            if high is None:
                high = default_high if self.dtype.is_floating_point or self.dtype == torch.bool else torch.iinfo(self.dtype).max + 1
        elif "to" in kwargs or numbers:
            low, high = 0, kwargs["to"] if "to" in kwargs else numbers[0]
        else:
            low, high = default_low, default_high
        if not (_is_number(low) and _is_number(high)):
            raise TypeError("random_: from and to must be ints")
        low, high = int(low), int(high)
        if (low, high) != (default_low, default_high):
            _check_integer_range(self.dtype, low, high, "random_")
        return integer_values(tuple(self.shape), self.dtype, device, kwargs.get("generator"), "random_", low, high - low)

    return _in_place("Tensor.random_", self, args, kwargs, make)


# ---- patching ------------------------------------------------------------------------------------

def _graph_breaking(function: Callable[..., Any]) -> Callable[..., Any]:
    """Under torch.compile a patched draw runs eagerly (a graph break): taking blocks is a Python
    state update that dynamo cannot trace (the custom op of detnoise.ops serves the functional
    core only)."""
    # Made here, not while dynamo traces: torch 2.4's dynamo fails on the first compiled call otherwise.
    eager = _compile.disable(function)

    @functools.wraps(function)
    def patched(*args: Any, **kwargs: Any) -> Any:
        if torch.compiler.is_compiling():
            return eager(*args, **kwargs)
        return function(*args, **kwargs)

    return patched


PATCHED: dict[str, Callable[..., Any]] = {
    "randn": randn,
    "rand": rand,
    "randint": randint,
    "randperm": randperm,
    "normal": normal,
    "bernoulli": bernoulli,
    "multinomial": multinomial,
    "randn_like": randn_like,
    "rand_like": rand_like,
    "randint_like": randint_like,
    "Tensor.normal_": tensor_normal_,
    "Tensor.uniform_": tensor_uniform_,
    "Tensor.random_": tensor_random_,
    "Tensor.bernoulli_": tensor_bernoulli_,
    "Tensor.exponential_": tensor_exponential_,
}
PATCHED = {name: _graph_breaking(function) for name, function in PATCHED.items()}
"""What the patch rebinds: names in ``torch`` and, with the ``Tensor.`` prefix, in ``torch.Tensor``."""
_MODULE_GLOBALS = globals()

_lock = threading.Lock()
_full_holders = 0  # patch_torch() handles not yet released
_generator_holders = 0  # patch_diffusers() handles not yet released
_inherited: set[str] = set()  # Tensor methods that torch.Tensor inherits (unpatch deletes ours)
_scope = threading.local()


def _covers(generator: Any) -> bool:
    """Whether this call is a detnoise draw (see the module docstring's coverage levels)."""
    if _full_holders:
        return True
    if not _generator_holders:
        return False
    return generator is not None or getattr(_scope, "depth", 0) > 0 or _called_from_diffusers(_caller())


def _caller() -> Any:
    """The frame that called the patched torch function: the first one outside this module and
    torch itself (torch.compiler.disable's wrappers)."""
    frame = sys._getframe(2)
    while frame is not None and (frame.f_globals is _MODULE_GLOBALS or frame.f_globals.get("__name__", "").startswith("torch")):
        frame = frame.f_back
    return frame


# Functions whose draws initialise weights (loaded weights replace them): not noise, left alone.
_INITIALISER = re.compile(r"__init__|init_weights|initiali[sz]e|reset_parameters|_init\b|^init")


def is_initialiser(function_name: str) -> bool:
    """Whether a function of this name initialises weights (its draws are left to torch's RNG)."""
    return bool(_INITIALISER.search(function_name))


def _called_from_diffusers(frame: Any) -> bool:
    """A global-RNG draw made directly by diffusers code (a pipeline, a scheduler step), outside
    weight initialisers. Code outside diffusers keeps torch's global RNG."""
    if frame is None:
        return False
    module = frame.f_globals.get("__name__", "")
    return module.startswith("diffusers.") and not is_initialiser(frame.f_code.co_name)


@contextlib.contextmanager
def diffusers_scope() -> Iterator[None]:
    """Marks a diffusers pipeline call or scheduler step: global-RNG draws made inside are covered
    while ``patch_diffusers()`` is active (per thread)."""
    _scope.depth = getattr(_scope, "depth", 0) + 1
    try:
        yield
    finally:
        _scope.depth -= 1


def _owner_and_attribute(name: str) -> tuple[Any, str]:
    if name.startswith("Tensor."):
        return torch.Tensor, name[len("Tensor."):]
    return torch, name


def _install_locked() -> None:
    if _ORIGINAL:
        return
    for name, replacement in PATCHED.items():
        owner, attribute = _owner_and_attribute(name)
        if owner is torch.Tensor and attribute not in vars(torch.Tensor):
            _inherited.add(name)
        _ORIGINAL[name] = getattr(owner, attribute)
        setattr(owner, attribute, replacement)


def _uninstall_locked() -> None:
    for name, original in _ORIGINAL.items():
        owner, attribute = _owner_and_attribute(name)
        if getattr(owner, attribute, None) is not PATCHED[name]:
            continue  # someone rebound it after us: leave theirs
        if name in _inherited:
            delattr(owner, attribute)
        else:
            setattr(owner, attribute, original)
    _ORIGINAL.clear()
    _inherited.clear()


@dataclass
class TorchPatch:
    """The handle ``patch_torch()`` returns; a context manager that releases it on exit."""

    active: bool = True
    patched: list[str] = field(default_factory=lambda: sorted(PATCHED))

    def __enter__(self) -> TorchPatch:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def release(self) -> None:
        """Releases this handle; the patch goes when no handle (and no diffusers patch) holds it."""
        global _full_holders
        with _lock:
            if not self.active:
                return
            self.active = False
            _full_holders -= 1
            if not _full_holders and not _generator_holders:
                _uninstall_locked()


def patch_torch() -> TorchPatch:
    """Makes torch's samplers draw detnoise values; returns a handle that is also a context manager.

    Covered: ``torch.randn``, ``rand``, ``randint``, ``randperm``, ``normal``, ``bernoulli``,
    ``multinomial``, ``randn_like``, ``rand_like``, ``randint_like`` and ``Tensor.normal_``,
    ``uniform_``, ``random_``, ``bernoulli_``, ``exponential_`` (values: docs/SPEC.md §10). Each
    handle must be released (``with`` block end, ``handle.release()``) or all at once with
    :func:`unpatch_torch`.

    >>> import torch, detnoise
    >>> with detnoise.patch_torch():
    ...     a = torch.randn(4, generator=torch.Generator().manual_seed(0))
    >>> torch.equal(a, detnoise.normal((4,), seed=0))
    True
    """
    global _full_holders
    with _lock:
        _install_locked()
        _full_holders += 1
        return TorchPatch()


def unpatch_torch() -> None:
    """Releases every ``patch_torch()`` handle and restores torch's functions (unless
    ``patch_diffusers()`` still needs them for generator-passing draws); idempotent."""
    global _full_holders
    with _lock:
        _full_holders = 0
        if not _generator_holders:
            _uninstall_locked()


def is_torch_patched() -> bool:
    """Whether every torch draw is a detnoise draw now (``patch_torch()`` active)."""
    return _full_holders > 0


def acquire_generator_patch() -> None:
    """patch_diffusers(): cover generator-passing draws everywhere, global-RNG draws in scopes."""
    global _generator_holders
    with _lock:
        _install_locked()
        _generator_holders += 1


def release_generator_patch() -> None:
    global _generator_holders
    with _lock:
        if _generator_holders:
            _generator_holders -= 1
        if not _full_holders and not _generator_holders:
            _uninstall_locked()
