"""Layer 1 of the torch patch: the kinds of docs/SPEC.md §10 as functions of a generator's blocks.

Each function first refuses the parameters torch refuses (NaN or negative std, p outside [0, 1],
bad multinomial weights, uniform bounds; before any block is taken), then takes one reservation
of blocks from a generator (through ``detnoise._draw``) and turns it into values with operations that are exact on every device: normal with mean/std
(§10.1), complex normal (§10.2), uniform on [low, high) (§10.3), exponential (§10.4), bernoulli
(§10.5), integers (§10.6), permutation (§10.7), multinomial (§10.8). This is the distributions
layer (as numpy's ``src/distributions``): no torch signatures here (those are
``detnoise._samplers``), no rebinding (``detnoise.torch_patch``). ``detnoise.normal_`` and
``uniform_`` use it too.

``default`` is the generator a ``generator=None`` call draws from: ``torch.default_generator``
under the torch patch, ``detnoise.default_generator`` for detnoise's own functions.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import torch

from detnoise import _draw, _native
from detnoise._torchargs import _check_std, _check_uniform_bounds, _checked_devices, _resolve_device

__all__ = [
    "normal_values",
    "uniform_values",
    "exponential_values",
    "bernoulli_values",
    "integer_values",
    "permutation_values",
    "multinomial_values",
    "scaled_words",
]

KIND_BITS, KIND_UNIFORM, KIND_NORMAL = _native.KIND_BITS, _native.KIND_UNIFORM, _native.KIND_NORMAL
_HALF = frozenset((torch.float16, torch.bfloat16))
_DIRECT = frozenset((torch.float32, torch.float64))  # computed in their own type (SPEC §10.1)
# sqrt(1/2) rounded to nearest (SPEC §10.2): scales complex normals so E|z|^2 = 1, as torch does.
_SQRT_HALF = {torch.float32: float.fromhex("0x1.6a09e6p-1"), torch.float64: float.fromhex("0x1.6a09e667f3bcdp-1")}
_COMPLEX_PARTS = {torch.complex64: torch.float32, torch.complex128: torch.float64}
_INT64_MIN = -(1 << 63)


# SPEC §10.11: the one NaN of each dtype (positive, quiet, zero payload), as the signed integer of
# its bits, and the float32 rounding threshold past which a number becomes +-inf.
_CANONICAL_NAN = {torch.float32: (torch.int32, 0x7FC00000), torch.float64: (torch.int64, 0x7FF8000000000000),
                  torch.float16: (torch.int16, 0x7E00), torch.bfloat16: (torch.int16, 0x7FC0)}
_F32_OVERFLOW = float.fromhex("0x1.ffffffp+127")


def _finite_in(value: float, compute: torch.dtype) -> bool:
    """Whether a Python number stays finite when rounded to ``compute`` (float32 or float64)."""
    value = float(value)
    return math.isfinite(value) and (compute == torch.float64 or abs(value) < _F32_OVERFLOW)


def _may_be_nan(operand: Any, compute: torch.dtype) -> bool:
    """Whether a std or mean operand allows a NaN result (SPEC §10.11): a tensor may hold any value,
    a number only if it is not finite in the compute type."""
    return isinstance(operand, torch.Tensor) or not _finite_in(operand, compute)


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


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """16-bit results are computed in float32 and rounded once at the end (SPEC §10.1)."""
    return torch.float32 if dtype in _HALF else dtype


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _native_draw(kind: int, shape: tuple[int, ...], dtype: torch.dtype, device: Optional[torch.device],
                 generator: Any, function: str, default: Any) -> torch.Tensor:
    """A new contiguous tensor holding the next draw of ``kind`` from ``generator`` (``device``
    None: torch's default device; devices other than CPU and CUDA get CPU values moved there)."""
    fast = _draw._draw_fast(kind, shape, generator, dtype, device, None, default)  # the common case's short path
    if fast is not None:
        return fast
    if device is not None and device.type in ("cpu", "cuda") and device not in _checked_devices:
        _resolve_device(device)  # checks it once and lets the short path take it from now on
    target = torch.empty(shape, dtype=dtype, device=device)
    if not (target.is_cpu or target.is_cuda):
        return _native_draw(kind, shape, dtype, torch.device("cpu"), generator, function, default).to(target.device)
    _draw._draw_with_generator(kind, target, generator, function, default=default)
    return target


def _fill_into(kind: int, out: torch.Tensor, generator: Any, function: str, default: Any) -> bool:
    """Draws straight into ``out`` (any strides; logical order) when nothing stands in the way:
    a CPU/CUDA tensor that autograd does not track here. False: the caller computes a new tensor and copies it."""
    if (out.requires_grad and torch.is_grad_enabled()) or not (out.is_cpu or out.is_cuda):
        return False
    _draw._draw_with_generator(kind, out, generator, function, default=default)
    return True


def _scalar(value: float, dtype: torch.dtype, device: Optional[torch.device]) -> torch.Tensor:
    """A Python number rounded to ``dtype`` (round to nearest even), as a 0-dim operand."""
    return torch.tensor(value, dtype=dtype, device=device)


def _operand(value: Any, dtype: torch.dtype, device: Optional[torch.device]) -> torch.Tensor:
    return value.to(dtype) if isinstance(value, torch.Tensor) else _scalar(value, dtype, device)


# ---- the kinds' domains (torch's refusals; checked before any block is taken) -----------------------


def _check_normal_std(std: Any, function: str) -> None:
    """std >= 0, so NaN is refused too (for a tensor std, every element), as torch's normal."""
    if not isinstance(std, torch.Tensor):
        _check_std(std, function)
    elif std.numel() and not std.min().item() >= 0:  # min propagates NaN
        raise RuntimeError("normal expects all elements of std >= 0.0")


def _check_probability(p: Any, function: str) -> None:
    """p in [0, 1] (NaN refused), as torch's bernoulli: a number, or every element of a float tensor."""
    if isinstance(p, torch.Tensor):
        if not p.dtype.is_floating_point:
            raise RuntimeError(f"{function}: p must be a floating-point tensor, got {p.dtype}")
        if p.numel():
            low, high = torch.aminmax(p)  # NaN propagates into both
            if not (low.item() >= 0 and high.item() <= 1):
                raise RuntimeError(f"{function}: Expected p_in >= 0 && p_in <= 1 to be true, but got false.")
    elif isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
        raise RuntimeError(f"{function} expects p to be in [0, 1], but got p={p}")


def _check_weights(probs: Any, samples: Any, replacement: bool) -> None:
    """torch's multinomial: a 1-D or 2-D float tensor of finite, non-negative weights with a
    positive sum in every row, and 1 to K samples (any number with replacement)."""
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
    if probs.numel():
        rows = probs.reshape(-1, categories)
        low, high = torch.aminmax(rows)  # NaN propagates into both
        least_sum = rows.sum(-1, dtype=torch.float64).min()
        low, high, least_sum = torch.stack((low.double(), high.double(), least_sum)).tolist()  # one sync
        if not (low >= 0 and high < float("inf")):
            raise RuntimeError("probability tensor contains either `inf`, `nan` or element < 0")
        if not least_sum > 0:
            raise RuntimeError("invalid multinomial distribution (sum of probabilities <= 0)")


def normal_values(shape: tuple[int, ...], dtype: torch.dtype, device: Optional[torch.device], generator: Any,
                  function: str, mean: Any = 0.0, std: Any = 1.0, *, out: Optional[torch.Tensor] = None,
                  default: Any = torch.default_generator) -> torch.Tensor:
    """SPEC §10.1/§10.2: standard normals (§5/§6), then ``* std`` and ``+ mean`` as two separate
    IEEE operations in the compute type (skipped for Python-number std 1 / mean 0).

    ``out`` (shape ``shape``, dtype ``dtype``): written and returned instead of a new tensor.
    """
    if isinstance(std, torch.Tensor) or std != 1:  # torch's refusals, before any block is taken
        _check_normal_std(std, function)
    if dtype.is_complex:
        real = _COMPLEX_PARTS.get(dtype)
        if real is None:
            raise TypeError(f"{function}: detnoise defines complex normals for complex64 and complex128, not {dtype}")
        if not (_is_number(mean) and _is_number(std) and mean == 0 and std == 1):
            raise TypeError(f"{function}: complex normals with a mean or std are not defined by detnoise")
        pairs = _native_draw(KIND_NORMAL, (*shape, 2), real, device, generator, function, default)
        values = torch.view_as_complex(pairs * _scalar(_SQRT_HALF[real], real, pairs.device))
        return values if out is None else out.copy_(values)
    compute = _compute_dtype(dtype)
    where = device  # the device the values are computed on (``out``'s, for CPU/CUDA)
    # The operands are made before any blocks are taken: a value torch cannot hold fails here.
    std_operand = _operand(std, compute, where) if isinstance(std, torch.Tensor) or std != 1 else None
    mean_operand = _operand(mean, compute, where) if isinstance(mean, torch.Tensor) or mean != 0 else None
    plain_operands = not (isinstance(std, torch.Tensor) or isinstance(mean, torch.Tensor))
    # NaN needs an infinite std (0 * inf) or a non-finite mean (SPEC §10.11); tensors may hold either.
    may_be_nan = ((std_operand is not None and _may_be_nan(std, compute))
                  or (mean_operand is not None and _may_be_nan(mean, compute)))
    if (out is not None and dtype in _DIRECT and plain_operands and not may_be_nan
            and _fill_into(KIND_NORMAL, out, generator, function, default)):
        # In place: the same two IEEE operations, on the drawn values themselves.
        if std_operand is not None:
            out.mul_(std_operand)
        if mean_operand is not None:
            out.add_(mean_operand)
        return out
    values = _native_draw(KIND_NORMAL, shape, compute, device, generator, function, default)
    if std_operand is not None:
        values = values * std_operand
    if mean_operand is not None:
        values = values + mean_operand
    values = _narrow(values, dtype, may_be_nan)
    return values if out is None else out.copy_(values)


def uniform_values(shape: tuple[int, ...], dtype: torch.dtype, device: Optional[torch.device], generator: Any,
                   function: str, low: float = 0.0, high: float = 1.0, *, out: Optional[torch.Tensor] = None,
                   default: Any = torch.default_generator) -> torch.Tensor:
    """SPEC §10.3: the uniform of §4 in ``dtype``; for bounds other than [0, 1), ``u * (high - low)``
    (the width computed in binary64, rounded to the compute type) ``+ low``, two IEEE operations."""
    standard = (low, high) == (0.0, 1.0)
    if not standard:
        _check_uniform_bounds(low, high, dtype, function)
    compute = _compute_dtype(dtype)
    where = device  # the device the values are computed on (``out``'s, for CPU/CUDA)
    if not standard:  # operands first: a value torch cannot hold fails before any blocks are taken
        width = _scalar(float(high) - float(low), compute, where)
        start = _scalar(low, compute, where)
    if out is not None and (standard or dtype in _DIRECT) and _fill_into(KIND_UNIFORM, out, generator, function, default):
        if not standard:
            out.mul_(width).add_(start)
        return out
    values = _native_draw(KIND_UNIFORM, shape, dtype, device, generator, function, default)
    if not standard:
        values = ((values.to(compute) * width.to(values.device)) + start.to(values.device)).to(dtype)
    return values if out is None else out.copy_(values)


def _standard_exponentials(pairs: torch.Tensor) -> torch.Tensor:
    """SPEC §10.4's ``E = (z0*z0 + z1*z1) * 0.5`` over the last dimension (z0, z1) of ``pairs``,
    as four separately rounded operations; ``pairs`` is scratch (its z1 half is overwritten). The
    result is a new contiguous tensor: computing it in ``pairs``' strided z0 half would save that
    allocation but costs more (strided loops are not vectorised: +40 us at an SDXL latent)."""
    z0, z1 = pairs[..., 0], pairs[..., 1]
    values = z0 * z0
    values.add_(z1.mul_(z1))
    return values.mul_(0.5)


def exponential_values(shape: tuple[int, ...], dtype: torch.dtype, device: Optional[torch.device], generator: Any,
                       function: str, lambd: float = 1.0, *, default: Any = torch.default_generator) -> torch.Tensor:
    """SPEC §10.4: ``E = (z0*z0 + z1*z1) * 0.5`` from the two normals of one Box-Muller pair
    (``-log u`` without a logarithm), then ``* (1/lambd)``."""
    compute = _compute_dtype(dtype)
    pairs = _native_draw(KIND_NORMAL, (*shape, 2), compute, device, generator, function, default)
    values = _standard_exponentials(pairs)
    may_be_nan = False  # NaN only from E = +0 times r = 1/lambd rounded to +inf (SPEC §10.11)
    if lambd != 1:
        values.mul_(_scalar(1.0 / float(lambd), compute, pairs.device))
        may_be_nan = not _finite_in(1.0 / float(lambd), compute)
    return _narrow(values, dtype, may_be_nan)


def bernoulli_values(shape: tuple[int, ...], dtype: torch.dtype, device: Optional[torch.device], generator: Any,
                     function: str, p: Any, *, default: Any = torch.default_generator) -> torch.Tensor:
    """SPEC §10.5: 1 where the float64 uniform (§4) is below p (compared exactly in binary64)."""
    _check_probability(p, function)
    u = _native_draw(KIND_UNIFORM, shape, torch.float64, device, generator, function, default)
    threshold = p.to(device=u.device, dtype=torch.float64) if isinstance(p, torch.Tensor) else float(p)
    return (u < threshold).to(dtype)


def _joined_words(shape: tuple[int, ...], device: Optional[torch.device], generator: Any, function: str,
                  default: Any) -> torch.Tensor:
    """One 64-bit word per element as int64 bits: W = (w1 << 32) | w0 and (w3 << 32) | w2 of each
    block, two elements per block (the float64 layout of §2). A new tensor: callers may overwrite it."""
    words = _native_draw(KIND_BITS, (*shape, 2), torch.uint32, device, generator, function, default)
    return words.view(torch.int64).squeeze(-1)  # little-endian: element k = w[2k] | w[2k+1] << 32


def _split_words(joined: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(hi, lo): the 32-bit halves, as int64, of drawn words (:func:`_joined_words`); hi is computed
    in the words' own memory (fewer temporaries)."""
    lo = joined & 0xFFFFFFFF
    return joined.bitwise_right_shift_(32).bitwise_and_(0xFFFFFFFF), lo


def _product_halves(x: torch.Tensor, y: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(floor(x*y / 2^32), (x*y) mod 2^32) for 32-bit x (int64 tensor) and y < 2^32, in int64
    operations that cannot overflow: x*y = (x*y_hi)*2^16 + x*y_lo, each product below 2^48."""
    a = x * (y >> 16)
    t = ((a & 0xFFFF) << 16) + x * (y & 0xFFFF)  # < 2^32 + 2^48
    return (a >> 16) + (t >> 32), t & 0xFFFFFFFF


def scaled_words(hi: torch.Tensor, lo: torch.Tensor, span: int) -> torch.Tensor:
    """floor(W * span / 2^64) for W = hi*2^32 + lo and 1 <= span <= 2^63, exactly, in int64.
    Below 2^31 (the common span) it works in place: ``hi`` and ``lo`` are overwritten, and the
    result is ``hi``'s memory."""
    if span < 1 << 31:  # every product and sum below 2^63: (hi*span + ((lo*span) >> 32)) >> 32
        lo.mul_(span).bitwise_right_shift_(32)
        return hi.mul_(span).add_(lo).bitwise_right_shift_(32)
    span_hi, span_lo = span >> 32, span & 0xFFFFFFFF  # span_hi <= 2^31
    carry = _product_halves(lo, span_lo)[0]  # floor(lo*span_lo / 2^32)
    p1_hi, p1_lo = _product_halves(hi, span_lo)
    p2_hi, p2_lo = _product_halves(lo, span_hi)
    middle = p1_hi + p2_hi + ((p1_lo + p2_lo + carry) >> 32)
    return hi * span_hi + middle  # hi*span_hi < 2^63


def integer_values(shape: tuple[int, ...], dtype: torch.dtype, device: Optional[torch.device], generator: Any,
                   function: str, low: int, span: int, *, default: Any = torch.default_generator) -> torch.Tensor:
    """SPEC §10.6: ``low + floor(W * span / 2^64)`` from one 64-bit word per element."""
    if not 1 <= span <= 1 << 63:
        raise RuntimeError(f"{function}: detnoise draws integer ranges of 1 to 2**63 values, got {span}")
    values = _joined_words(shape, device, generator, function, default)
    if values.is_cpu:  # in place, in C++: one pass over the words, no temporaries
        _native.scale_words(values, span, low)
    else:  # the same arithmetic in torch int64 operations (CUDA and other devices)
        values = scaled_words(*_split_words(values), span)
        if low:
            values.add_(low)  # within [low, low + span): no overflow
    return values.to(dtype)


def permutation_values(n: int, dtype: torch.dtype, device: Optional[torch.device], generator: Any, function: str,
                       *, default: Any = torch.default_generator) -> torch.Tensor:
    """SPEC §10.7: indices of the 64-bit keys in ascending unsigned order, ties by index."""
    keys = _joined_words((n,), device, generator, function, default)
    if keys.is_cpu:  # a bucket sort of the words in C++ (detnoise/orders.h): 875 against 1965 us at 2^16 keys
        order = torch.empty_like(keys)
        _native.order_keys(keys, order)
        return order.to(dtype)
    keys.bitwise_xor_(_INT64_MIN)  # flipping the sign bit orders int64 like uint64
    return torch.sort(keys, stable=True).indices.to(dtype)


def multinomial_values(probs: torch.Tensor, samples: int, replacement: bool, generator: Any, function: str,
                       *, default: Any = torch.default_generator) -> torch.Tensor:
    """SPEC §10.8: exponential races. Each category i of a row gets ``E_i / p_i`` (binary64, E from
    §10.4's float64 form); without replacement the first ``samples`` indices in ascending key order
    (stable), with replacement ``samples`` independent races, each the first index of the least key."""
    _check_weights(probs, samples, replacement)
    rows = probs.reshape(-1, probs.shape[-1])  # divided into binary64 keys: float32 weights convert exactly
    count, categories = rows.shape
    rounds = samples if replacement else 1
    pairs = _native_draw(KIND_NORMAL, (count, rounds, categories, 2), torch.float64, probs.device, generator,
                         function, default)
    if pairs.is_cpu and categories and (replacement or samples == 1):  # the races in C++, no temporaries
        weights = rows if rows.dtype in _native.RACE_WEIGHT_DTYPES else rows.double()  # 16-bit: widened, exactly
        result = pairs.new_empty((count, rounds), dtype=torch.int64)
        _native.race_winners(pairs, weights.contiguous(), result)
        return result.reshape(*probs.shape[:-1], samples)
    keys = _standard_exponentials(pairs).div_(rows[:, None, :])  # binary64 division, in place
    if replacement or samples == 1:  # each sample the first index of the least key (no sort for one)
        result = torch.argmin(keys, dim=-1)
    else:
        result = torch.sort(keys[:, 0, :], dim=-1, stable=True).indices[:, :samples]
    return result.reshape(*probs.shape[:-1], samples).contiguous()  # torch's result is contiguous
