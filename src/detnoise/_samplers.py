"""Layer 2 of the torch patch: torch's sampler signatures over the kinds of ``detnoise._kinds``.

Each function here takes torch's original function first, then the positional arguments (a tuple)
and keyword arguments (a dict) of ``torch.randn``, ``rand``, ``randint``, ``randperm``, ``normal``,
``bernoulli``, ``multinomial``, ``randn_like``, ``rand_like``, ``randint_like``, or ``self`` and
those of the ``Tensor.normal_``, ``uniform_``, ``random_``, ``bernoulli_``, ``exponential_``
methods (passed on as the objects the patched call received, not unpacked and packed again), and
applies torch's rules for sizes, dtypes,
devices, ``out=``, ``requires_grad`` and memory formats itself (no meta-device dispatch: that cost
about 1 ms per call and pulled in ``torch._refs`` and ``torch._dynamo``). ``*_like`` outputs are
``torch.empty_like`` with the call's options, which is how torch's own ``*_like`` samplers make
them. The rebinding that puts these behind torch's names is ``detnoise.torch_patch``.

Refusals: every check runs before a block is taken. When detnoise refuses a call, the original
function is run on copies (of the generator, ``out``, ``self``; the global RNG forked) so that the
caller gets torch's exact exception; if torch accepts it after all, detnoise's error stands.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch

from detnoise import _draw, _native
from detnoise._kinds import (
    _is_number,
    bernoulli_values,
    exponential_values,
    integer_values,
    multinomial_values,
    normal_values,
    permutation_values,
    uniform_values,
)
from detnoise._torchargs import _SIZE_TYPES, _check_writable, _parse_size

__all__ = [
    "randn", "rand", "randint", "randperm", "normal", "bernoulli", "multinomial", "randn_like", "rand_like",
    "randint_like", "tensor_normal_", "tensor_uniform_", "tensor_random_", "tensor_bernoulli_",
    "tensor_exponential_",
]

_FLOATS = frozenset(_native.FLOAT_DTYPES)
# Fast paths: each sampler first tries its common call (positional arguments of exact Python types,
# ``generator=`` the only keyword, a CPU/CUDA tensor that needs none of torch's in-place checks)
# with no argument handling beyond what that form needs; anything else, errors included, takes the
# general path below it, which applies all of torch's rules. "generator= the only keyword" is
# written ``len(kwargs) <= (_GENERATOR in kwargs)`` (no keyword, or that one): a dict length and a
# membership test, where ``kwargs.keys() <= {"generator"}`` builds a view and compares it as a set,
# about 1 us more once an SDXL-sized draw has left the interpreter's data out of the caches.
_GENERATOR = "generator"  # a global, not a literal, so that tests can turn the fast paths off
_NUMBER_TYPES = (int, float)  # exact types: bool, numpy and tensor scalars take the general path
_INT64_MIN, _INT64_END = -(1 << 63), 1 << 63
_ARGUMENT_ERRORS = (TypeError, ValueError, RuntimeError, IndexError, NotImplementedError, OverflowError)
_SIZE_TYPE_SET = frozenset(_SIZE_TYPES)  # the fast paths' exact-type test
_CPU = torch.device("cpu")
_DEFAULT = torch.default_generator  # what generator=None draws from under the patch
# Significand digits: the integers a float dtype holds exactly are those up to 2**digits.
_DIGITS = {torch.float32: 24, torch.float64: 53, torch.float16: 11, torch.bfloat16: 8}


# ---- torch's errors ---------------------------------------------------------------------------------


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


def _check_generator(generator: object) -> None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")


def _check_float_dtype(dtype: torch.dtype, function: str, complex_ok: bool = False) -> None:
    if dtype in _FLOATS or (complex_ok and dtype.is_complex):
        return
    raise RuntimeError(f"{function}: dtype {dtype} is not a floating-point dtype detnoise draws")


def _check_grad_dtype(requires_grad: bool, dtype: torch.dtype) -> None:
    if requires_grad and not (dtype.is_floating_point or dtype.is_complex):
        raise RuntimeError("Only Tensors of floating point and complex dtype can require gradients")


_VALUE_RANGES: dict[torch.dtype, tuple[float, float]] = {}


def _value_range(dtype: torch.dtype) -> tuple[float, float]:
    """The least and greatest values of ``dtype`` (finite ones for floats), cached per dtype."""
    known = _VALUE_RANGES.get(dtype)
    if known is None:
        if dtype == torch.bool:
            known = (0, 1)
        else:
            info = torch.finfo(dtype) if dtype.is_floating_point else torch.iinfo(dtype)
            known = (info.min, info.max)
        _VALUE_RANGES[dtype] = known
    return known


def _exact_integer_ranges() -> dict[torch.dtype, tuple[int, int]]:
    """dtype -> [least, greatest + 1] of the integers it holds exactly, for the integer kinds' fast
    paths: a range inside it needs neither torch's refusal nor its precision warning."""
    ranges = {dtype: (-(1 << digits), (1 << digits) + 1) for dtype, digits in _DIGITS.items()}
    ranges[torch.bool] = (0, 2)
    for dtype in (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64):
        info = torch.iinfo(dtype)
        ranges[dtype] = (info.min, info.max + 1)
    return ranges


_EXACT_INTEGERS = _exact_integer_ranges()
_REAL_DTYPES = frozenset(_EXACT_INTEGERS)  # every dtype but the complex ones (bernoulli_'s)


def _int64(value: Any) -> int:
    """An integer bound as torch parses it: an int64 (torch refuses 2**63 and beyond)."""
    value = int(value)
    if not _INT64_MIN <= value < _INT64_END:
        raise OverflowError(f"integer bound {value} does not fit in int64")
    return value


def _check_integer_range(dtype: torch.dtype, low: int, high: int, function: str) -> None:
    """torch's random_/randint: ``from < to``, and ``from`` and ``to - 1`` within the dtype's range
    (for floats its finite range: torch only warns beyond the exactly representable integers)."""
    if low >= high:
        raise RuntimeError(f"random_ expects 'from' to be less than 'to', but got from={low} >= to={high}")
    lowest, highest = _value_range(dtype)
    if low < lowest or high - 1 > highest:
        raise RuntimeError(f"{function}: [{low}, {high}) is out of bounds for {dtype}")
    if dtype.is_floating_point:
        digits = _DIGITS[dtype]
        if low < -(1 << digits) or high - 1 > 1 << digits:  # torch warns, and so do we
            name = "from" if low < -(1 << digits) else "to - 1"
            warnings.warn(f"{name} is out of bounds [-(2^{digits}), 2^{digits}]. Due to precision limitations "
                          f"{dtype} can support discrete uniform distribution only within this range.",
                          UserWarning, stacklevel=4)


# ---- factories: randn, rand, randint, randperm, normal(number, number, size) -------------------------


@dataclass
class _Factory:
    shape: tuple[int, ...]
    dtype: torch.dtype
    device: Optional[torch.device]  # None: torch's default device
    out: Optional[torch.Tensor]
    requires_grad: bool
    pin_memory: bool
    generator: Any


_FACTORY_OPTIONS = frozenset(("generator", "out", "dtype", "layout", "device", "requires_grad", "pin_memory"))


def _plan_factory(function: str, size: tuple, kwargs: dict, default_dtype: Optional[torch.dtype],
                  consumed: frozenset = frozenset()) -> _Factory:
    """torch's rules for a factory call's options, applied here (torch's parser is not asked:
    a refusal sends the call to torch on copies, which raises torch's own error)."""
    if not kwargs.keys() <= _FACTORY_OPTIONS:
        for key in kwargs.keys() - _FACTORY_OPTIONS - consumed:
            raise TypeError(f"{function}: detnoise does not support the argument {key}= under patch_torch()")
    generator = kwargs.get("generator")
    _check_generator(generator)
    layout = kwargs.get("layout")
    if layout is not None and layout != torch.strided:
        raise RuntimeError(f"{function}: detnoise draws strided tensors only, got layout={layout}")
    out = kwargs.get("out")
    dtype = kwargs.get("dtype")
    if out is not None:
        _check_out_tensor(out)
        if dtype is None:
            dtype = out.dtype
        elif dtype != out.dtype:
            raise RuntimeError(f"dtype {dtype} does not match dtype of out parameter ({out.dtype})")
    if dtype is None:
        dtype = torch.get_default_dtype() if default_dtype is None else default_dtype
    elif type(dtype) is not torch.dtype:
        raise TypeError(f"dtype must be a torch.dtype, got {type(dtype).__name__}")
    device = kwargs.get("device")
    if device is not None:
        device = torch.device(device)
        if out is not None and _device_key(device) != _device_key(out.device):
            raise RuntimeError(f"Expected out tensor to have device {device}, but got {out.device} instead")
    elif out is not None:
        device = out.device
    requires_grad = bool(kwargs.get("requires_grad", False))
    _check_grad_dtype(requires_grad, dtype)
    if out is not None and requires_grad:
        raise RuntimeError("out= arguments don't support automatic differentiation")
    shape = _parse_size(size, function)
    return _Factory(shape, dtype, device, out, requires_grad, bool(kwargs.get("pin_memory", False)), generator)


def _check_out_tensor(out: Any) -> None:
    """What torch refuses of an ``out=`` tensor before writing it (checked before the draw)."""
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"out must be a Tensor, got {type(out).__name__}")
    if out.requires_grad and torch.is_grad_enabled():
        raise RuntimeError("out= arguments don't support automatic differentiation, but one of the arguments requires grad")
    _check_writable(out, "out=")


def _device_key(device: torch.device) -> tuple[str, int]:
    if device.type == "cuda" and device.index is None:
        return ("cuda", torch.cuda.current_device())
    return (device.type, device.index or 0)


def _draw_device(device: Optional[torch.device]) -> Optional[torch.device]:
    """detnoise computes on CPU and CUDA; other devices get CPU values moved to them."""
    return device if device is None or device.type in ("cpu", "cuda") else _CPU


def _finish(plan: _Factory, values: torch.Tensor) -> torch.Tensor:
    if plan.device is not None and values.device != plan.device and plan.device.type not in ("cpu", "cuda"):
        values = values.to(plan.device)
    if plan.out is not None:
        if tuple(plan.out.shape) != plan.shape:
            plan.out.resize_(plan.shape)
        plan.out.copy_(values)
        return plan.out
    if plan.pin_memory:
        values = values.pin_memory()
    if plan.requires_grad:
        values.requires_grad_(True)
    return values


def _size_of(args: tuple, kwargs: dict) -> tuple:
    """randn/rand's size: ``*size`` or ``size=``."""
    if "size" in kwargs:
        if args:
            raise TypeError("size given both positionally and as size=")
        return (kwargs["size"],)
    if not args:  # torch.randn() is refused; torch.randn(()) is a 0-dim draw
        raise TypeError("a size is needed")
    return args


_FAST_KEYS = frozenset(("generator", "dtype", "device"))
_STANDARD_DTYPES = frozenset((None, *_FLOATS))


def _standard_draw(kind: int, args: tuple, kwargs: dict) -> Optional[torch.Tensor]:
    """The common ``randn``/``rand`` call (sizes, generator, a real float dtype, a device seen
    before) by detnoise's own short path, as ``detnoise.randn`` takes it; None: the general path."""
    if kwargs.keys() <= _FAST_KEYS and kwargs.get("dtype") in _STANDARD_DTYPES:
        return _draw._draw_fast(kind, args, kwargs.get("generator"), kwargs.get("dtype"), kwargs.get("device"), None,
                                _DEFAULT)
    return None


def randn(original: Callable[..., Any], args: tuple, kwargs: dict) -> torch.Tensor:
    try:
        fast = _standard_draw(_native.KIND_NORMAL, args, kwargs)
        if fast is not None:
            return fast
        plan = _plan_factory("randn", _size_of(args, kwargs), kwargs, None, frozenset(("size",)))
        _check_float_dtype(plan.dtype, "randn", complex_ok=True)
        return _finish(plan, normal_values(plan.shape, plan.dtype, _draw_device(plan.device), plan.generator, "randn"))
    except _ARGUMENT_ERRORS as error:
        _raise_like_torch(original, args, kwargs, error)
        raise  # unreachable: _raise_like_torch always raises


def rand(original: Callable[..., Any], args: tuple, kwargs: dict) -> torch.Tensor:
    try:
        fast = _standard_draw(_native.KIND_UNIFORM, args, kwargs)
        if fast is not None:
            return fast
        plan = _plan_factory("rand", _size_of(args, kwargs), kwargs, None, frozenset(("size",)))
        _check_float_dtype(plan.dtype, "rand")
        return _finish(plan, uniform_values(plan.shape, plan.dtype, _draw_device(plan.device), plan.generator, "rand"))
    except _ARGUMENT_ERRORS as error:
        _raise_like_torch(original, args, kwargs, error)
        raise


def _randint_arguments(args: tuple, kwargs: dict) -> tuple[int, int, Any]:
    """randint(high, size) / randint(low, high, size), with any of them by name."""
    numbers = [arg for arg in args if not isinstance(arg, _SIZE_TYPES)]
    sizes = [arg for arg in args if isinstance(arg, _SIZE_TYPES)]
    if "size" in kwargs:
        sizes.append(kwargs["size"])
    if len(sizes) != 1 or len(numbers) > 2:
        raise TypeError("randint() received an invalid combination of arguments")
    if "high" in kwargs:
        low, high = kwargs.get("low", numbers[0] if numbers else 0), kwargs["high"]
    elif len(numbers) >= 2:
        low, high = numbers[0], numbers[1]
    else:
        low, high = kwargs.get("low", 0), numbers[0]
    for value in (low, high):
        if isinstance(value, bool):
            raise TypeError("randint(): low and high must be ints, got bool")
    return _int64(low), _int64(high), sizes[0]


def randint(original: Callable[..., Any], args: tuple, kwargs: dict) -> torch.Tensor:
    try:
        if len(kwargs) <= (_GENERATOR in kwargs) and 2 <= len(args) <= 3:  # randint([low,] high, size)
            low, high, size = args if len(args) == 3 else (0, *args)
            if (type(low) is int and type(high) is int and type(size) in _SIZE_TYPE_SET
                    and _INT64_MIN <= low < high < _INT64_END):
                return integer_values(tuple(size), torch.int64, None, kwargs.get("generator"), "randint", low,
                                      high - low)
        low, high, size = _randint_arguments(args, kwargs)
        plan = _plan_factory("randint", (size,), kwargs, torch.int64, frozenset(("low", "high", "size")))
        if plan.dtype.is_complex:
            raise RuntimeError(f"randint: dtype {plan.dtype} is not supported")
        _check_integer_range(plan.dtype, low, high, "randint")
        values = integer_values(plan.shape, plan.dtype, _draw_device(plan.device), plan.generator, "randint", low, high - low)
        return _finish(plan, values)
    except _ARGUMENT_ERRORS as error:
        _raise_like_torch(original, args, kwargs, error)
        raise


def randperm(original: Callable[..., Any], args: tuple, kwargs: dict) -> torch.Tensor:
    try:
        if len(kwargs) <= (_GENERATOR in kwargs) and len(args) == 1 and type(args[0]) is int:  # a negative n: SizeError
            return permutation_values(args[0], torch.int64, None, kwargs.get("generator"), "randperm")
        if len(args) + ("n" in kwargs) != 1:
            raise TypeError("randperm() takes one size n")
        n = args[0] if args else kwargs["n"]
        if isinstance(n, bool) or isinstance(n, _SIZE_TYPES):
            raise TypeError(f"randperm(): n must be an int, got {type(n).__name__}")
        plan = _plan_factory("randperm", (n,), kwargs, torch.int64, frozenset(("n",)))
        count = plan.shape[0]
        if plan.dtype.is_complex or plan.dtype == torch.bool:
            raise RuntimeError(f"randperm: dtype {plan.dtype} is not supported")
        if plan.dtype.is_floating_point and count > (1 << _DIGITS[plan.dtype]) + 1:
            raise RuntimeError(f"n cannot be greater than {(1 << _DIGITS[plan.dtype]) + 1} for {plan.dtype}")
        if count > 0:
            _check_integer_range(plan.dtype, 0, count, "randperm")
        return _finish(plan, permutation_values(count, plan.dtype, _draw_device(plan.device), plan.generator, "randperm"))
    except _ARGUMENT_ERRORS as error:
        _raise_like_torch(original, args, kwargs, error)
        raise


_NORMAL_NAMES = ("mean", "std", "size")
_NORMAL_NAME_SET = frozenset(_NORMAL_NAMES)


def _normal_fast(args: tuple, generator: Any) -> Optional[torch.Tensor]:
    """normal(mean, std, size) with numbers, and normal(Tensor, Tensor) of one shape and dtype on
    one CPU/CUDA device; None: the general path."""
    mean, std = args[0], args[1]
    if len(args) == 3:
        if type(mean) in _NUMBER_TYPES and type(std) in _NUMBER_TYPES and type(args[2]) in _SIZE_TYPE_SET:
            dtype = torch.get_default_dtype()
            if dtype in _FLOATS:
                return normal_values(tuple(args[2]), dtype, None, generator, "normal", mean, std)
    elif type(mean) is torch.Tensor and type(std) is torch.Tensor and (mean.is_cpu or mean.is_cuda):
        dtype, shape, device = mean.dtype, mean.shape, mean.device
        if dtype in _FLOATS and dtype is std.dtype and shape == std.shape and device == std.device:
            return normal_values(tuple(shape), dtype, device, generator, "normal", mean, std)
    return None


def normal(original: Callable[..., Any], args: tuple, kwargs: dict) -> torch.Tensor:
    if len(kwargs) <= (_GENERATOR in kwargs) and 2 <= len(args) <= 3:
        try:
            fast = _normal_fast(args, kwargs.get("generator"))
        except _ARGUMENT_ERRORS as error:
            _raise_like_torch(original, args, kwargs, error)
            raise
        if fast is not None:
            return fast
    given = dict(zip(_NORMAL_NAMES, args))
    if kwargs:
        given.update({key: kwargs[key] for key in _NORMAL_NAMES if key in kwargs})
    mean, std = given.get("mean", 0.0), given.get("std", 1.0)
    try:
        if len(args) > 3:
            raise TypeError("normal() takes at most mean, std and size positionally")
        if isinstance(mean, torch.Tensor) or isinstance(std, torch.Tensor):
            return _normal_tensors(mean, std, given, kwargs)
        if not (_is_number(mean) and _is_number(std)):
            raise TypeError("normal(): mean and std must be numbers or tensors")
        if "size" not in given:
            raise TypeError("normal(): a size is needed when mean and std are numbers")
        plan = _plan_factory("normal", (given["size"],), kwargs, None, _NORMAL_NAME_SET)
        _check_float_dtype(plan.dtype, "normal")
        return _finish(plan, normal_values(plan.shape, plan.dtype, _draw_device(plan.device), plan.generator, "normal",
                                           mean, std))
    except _ARGUMENT_ERRORS as error:
        _raise_like_torch(original, args, kwargs, error)
        raise


_NORMAL_TENSOR_KEYS = frozenset(("mean", "std", "generator", "out"))


def _normal_tensors(mean: Any, std: Any, given: dict, kwargs: dict) -> torch.Tensor:
    """normal(Tensor, Tensor | number): torch's result is contiguous, of the broadcast shape, in
    mean's dtype (std's when mean is a number), on that tensor's device."""
    generator, out = kwargs.get("generator"), kwargs.get("out")
    if generator is not None:
        _check_generator(generator)
    if out is not None:
        _check_out_tensor(out)
    if "size" in given or not kwargs.keys() <= _NORMAL_TENSOR_KEYS:
        raise TypeError("normal(): size, dtype and device are not arguments of the tensor forms")
    mean_is_tensor, std_is_tensor = isinstance(mean, torch.Tensor), isinstance(std, torch.Tensor)
    if not (mean_is_tensor or _is_number(mean)) or not (std_is_tensor or _is_number(std)):
        raise TypeError("normal(): mean and std must be tensors or numbers")
    leading = mean if mean_is_tensor else std
    shape = leading.shape
    if mean_is_tensor and std_is_tensor:
        if mean.shape != std.shape:
            shape = torch.broadcast_shapes(mean.shape, std.shape)
        if mean.get_device() != std.get_device():  # ints: cheaper than device objects
            raise RuntimeError(f"normal(): mean and std are on different devices ({mean.device}, {std.device})")
    dtype, device = leading.dtype, leading.device
    _check_float_dtype(dtype, "normal")
    if mean_is_tensor and not mean.dtype.is_floating_point:
        raise RuntimeError(f"normal: mean of dtype {mean.dtype} is not supported")
    return _result(normal_values(tuple(shape), dtype, _draw_device(device), generator, "normal", mean, std),
                   device, out, generator)


def _result(values: torch.Tensor, device: torch.device, out: Optional[torch.Tensor], generator: Any) -> torch.Tensor:
    """A tensor-input sampler's result: ``values`` as they are (the common case), else moved to
    ``device`` or written into ``out`` as :func:`_finish` does."""
    if out is None and _draw_device(device) is device:
        return values
    return _finish(_Factory(tuple(values.shape), values.dtype, device, out, False, False, generator), values)


def bernoulli(original: Callable[..., Any], args: tuple, kwargs: dict) -> torch.Tensor:
    try:
        if len(kwargs) <= (_GENERATOR in kwargs) and 1 <= len(args) <= 2:  # bernoulli(input[, p])
            source = args[0]
            if type(source) is torch.Tensor and source.dtype in _FLOATS and (source.is_cpu or source.is_cuda):
                return bernoulli_values(tuple(source.shape), source.dtype, source.device, kwargs.get("generator"),
                                        "bernoulli", args[-1])
        source = args[0] if args else kwargs["input"]
        p = args[1] if len(args) > 1 else kwargs.get("p", source)
        generator, out = kwargs.get("generator"), kwargs.get("out")
        _check_generator(generator)
        if out is not None:
            _check_out_tensor(out)
        if not isinstance(source, torch.Tensor):
            raise TypeError(f"bernoulli(): input must be a Tensor, got {type(source).__name__}")
        _check_float_dtype(source.dtype, "bernoulli")
        device = source.device
        values = bernoulli_values(tuple(source.shape), source.dtype, _draw_device(device), generator, "bernoulli", p)
        return _result(values, device, out, generator)
    except _ARGUMENT_ERRORS as error:
        _raise_like_torch(original, args, kwargs, error)
        raise


def multinomial(original: Callable[..., Any], args: tuple, kwargs: dict) -> torch.Tensor:
    try:
        if len(kwargs) <= (_GENERATOR in kwargs) and 2 <= len(args) <= 3:  # multinomial(input, n[, replacement])
            # multinomial_values checks input and n itself, and its result is on input's device.
            replacement = bool(args[2]) if len(args) == 3 else False
            return multinomial_values(args[0], args[1], replacement, kwargs.get("generator"), "multinomial")
        names = ("input", "num_samples", "replacement")
        given = dict(zip(names, args))
        given.update({key: kwargs[key] for key in names if key in kwargs})
        probs, samples, replacement = given["input"], given["num_samples"], bool(given.get("replacement", False))
        generator, out = kwargs.get("generator"), kwargs.get("out")
        _check_generator(generator)
        if out is not None:
            _check_out_tensor(out)
        values = multinomial_values(probs, samples, replacement, generator, "multinomial")
        return _result(values, probs.device, out, generator)
    except _ARGUMENT_ERRORS as error:
        _raise_like_torch(original, args, kwargs, error)
        raise


# ---- *_like: torch.empty_like with the call's options, then the draw in logical order -----------------

_LIKE_OPTIONS = ("dtype", "layout", "device", "pin_memory", "memory_format")
_LIKE_OPTION_SET = frozenset((*_LIKE_OPTIONS, "requires_grad"))
_LIKE_KEYS = frozenset(("input", "generator", "low", "high", *_LIKE_OPTION_SET))


def _like_target(function: str, args: tuple, kwargs: dict, numbers: int) -> tuple[torch.Tensor, list[Any]]:
    """The output of ``function(input, *numbers, **kwargs)`` before its values: torch's own
    ``*_like`` samplers are ``empty_like(input, options)`` filled in place, so this is too (shape,
    strides under every memory_format, dtype, device exactly as torch's)."""
    if kwargs and not kwargs.keys() <= _LIKE_KEYS:
        raise TypeError(f"{function}() got an unexpected keyword argument among {sorted(kwargs)}")
    if args:
        source, rest = args[0], list(args[1:])
    else:
        source, rest = kwargs["input"], []
    if len(rest) > numbers:
        raise TypeError(f"{function}() takes at most {numbers + 1} positional arguments")
    if not isinstance(source, torch.Tensor):
        raise TypeError(f"{function}(): input must be a Tensor, got {type(source).__name__}")
    if source.layout != torch.strided:
        raise RuntimeError(f"{function}: detnoise draws strided tensors only, got an input of layout {source.layout}")
    if not kwargs.keys() & _LIKE_OPTION_SET:  # the common call: torch.randn_like(x[, generator=g])
        _check_generator(kwargs.get("generator"))
        return torch.empty_like(source), rest
    _check_generator(kwargs.get("generator"))
    layout = kwargs.get("layout")
    if layout is not None and layout != torch.strided:
        raise RuntimeError(f"{function}: detnoise draws strided tensors only, got layout={layout}")
    options = {key: kwargs[key] for key in _LIKE_OPTIONS if key in kwargs}
    target = torch.empty_like(source, **options)
    _check_grad_dtype(bool(kwargs.get("requires_grad", False)), target.dtype)
    return target, rest


def _like_result(target: torch.Tensor, kwargs: dict) -> torch.Tensor:
    if kwargs.get("requires_grad"):
        target.requires_grad_(True)
    return target


def randn_like(original: Callable[..., Any], args: tuple, kwargs: dict) -> torch.Tensor:
    try:
        target, _ = _like_target("randn_like", args, kwargs, 0)
        _check_float_dtype(target.dtype, "randn_like", complex_ok=True)
        normal_values(tuple(target.shape), target.dtype, _draw_device(target.device), kwargs.get("generator"),
                      "randn_like", out=target)
        return _like_result(target, kwargs)
    except _ARGUMENT_ERRORS as error:
        _raise_like_torch(original, args, kwargs, error)
        raise


def rand_like(original: Callable[..., Any], args: tuple, kwargs: dict) -> torch.Tensor:
    try:
        target, _ = _like_target("rand_like", args, kwargs, 0)
        _check_float_dtype(target.dtype, "rand_like")
        uniform_values(tuple(target.shape), target.dtype, _draw_device(target.device), kwargs.get("generator"),
                       "rand_like", out=target)
        return _like_result(target, kwargs)
    except _ARGUMENT_ERRORS as error:
        _raise_like_torch(original, args, kwargs, error)
        raise


def randint_like(original: Callable[..., Any], args: tuple, kwargs: dict) -> torch.Tensor:
    try:
        if len(kwargs) <= (_GENERATOR in kwargs) and 2 <= len(args) <= 3:  # randint_like(input, [low,] high)
            source, low, high = args if len(args) == 3 else (args[0], 0, args[1])
            exact = _EXACT_INTEGERS.get(source.dtype) if type(source) is torch.Tensor else None
            if (exact is not None and type(low) is int and type(high) is int and exact[0] <= low < high <= exact[1]
                    and high < _INT64_END and source.layout == torch.strided and (source.is_cpu or source.is_cuda)):
                values = integer_values(tuple(source.shape), source.dtype, source.device, kwargs.get("generator"),
                                        "randint_like", low, high - low)
                if values.stride() == source.stride():  # empty_like(source) has these strides too
                    return values
                return torch.empty_like(source).copy_(values)
        target, numbers = _like_target("randint_like", args, kwargs, 2)
        if "high" in kwargs:
            low, high = kwargs.get("low", numbers[0] if numbers else 0), kwargs["high"]
        elif len(numbers) >= 2:
            low, high = numbers[0], numbers[1]
        elif numbers:
            low, high = kwargs.get("low", 0), numbers[0]
        else:
            raise TypeError("randint_like() missing its high bound")
        low, high = _int64(low), _int64(high)
        if target.dtype.is_complex:
            raise RuntimeError(f"randint_like: dtype {target.dtype} is not supported")
        _check_integer_range(target.dtype, low, high, "randint_like")
        device = target.device
        values = integer_values(tuple(target.shape), target.dtype, _draw_device(device),
                                kwargs.get("generator"), "randint_like", low, high - low)
        if _draw_device(device) is device and target.stride() == values.stride():
            return _like_result(values, kwargs)  # already the layout torch gives: no copy
        target.copy_(values)
        return _like_result(target, kwargs)
    except _ARGUMENT_ERRORS as error:
        _raise_like_torch(original, args, kwargs, error)
        raise


# ---- Tensor methods (in place) ------------------------------------------------------------------------


def _in_place(original: Callable[..., Any], function: str, self: torch.Tensor, args: tuple, kwargs: dict,
              fill: Callable[[Optional[torch.device]], None]) -> torch.Tensor:
    """torch's in-place rules, checked before any blocks are taken; ``fill(draw device)`` writes
    ``self``."""
    device = self.device
    if device.type == "meta":
        return original(self, *args, **kwargs)
    try:
        if not kwargs.keys() <= _IN_PLACE_KEYS[function]:
            raise TypeError(f"{function}() got an unexpected keyword argument among {sorted(kwargs)}")
        if kwargs:
            _check_generator(kwargs.get("generator"))
        if self.requires_grad and self.is_leaf and torch.is_grad_enabled():
            raise RuntimeError("a leaf Variable that requires grad is being used in an in-place operation.")
        _check_writable(self, function)
        fill(device if device.type in ("cpu", "cuda") else _CPU)
        return self
    except _ARGUMENT_ERRORS as error:
        _raise_like_torch(original, args, kwargs, error, self=self)
        raise


_IN_PLACE_KEYS = {
    "normal_": frozenset(("mean", "std", "generator")),
    "uniform_": frozenset(("from", "to", "generator")),
    "exponential_": frozenset(("lambd", "generator")),
    "bernoulli_": frozenset(("p", "generator")),
    "random_": frozenset(("from", "to", "generator")),
}


def _named(args: tuple, kwargs: dict, names: tuple[str, ...], defaults: tuple[Any, ...]) -> list[Any]:
    if len(args) > len(names):
        raise TypeError(f"takes at most {len(names)} positional arguments, got {len(args)}")
    values = list(defaults)
    for index, value in enumerate(args):
        values[index] = value
    for index, key in enumerate(names):
        if key in kwargs:
            values[index] = kwargs[key]
    return values


def tensor_normal_(original: Callable[..., Any], self: torch.Tensor, args: tuple, kwargs: dict) -> torch.Tensor:
    def fill(device: Optional[torch.device]) -> None:
        mean, std = _named(args, kwargs, ("mean", "std"), (0.0, 1.0))
        if not (_is_number(mean) and _is_number(std)):
            raise TypeError("normal_: mean and std must be numbers")
        _check_float_dtype(self.dtype, "normal_", complex_ok=True)
        normal_values(tuple(self.shape), self.dtype, device, kwargs.get("generator"), "normal_",
                      mean, std, out=self)

    return _in_place(original, "normal_", self, args, kwargs, fill)


def tensor_uniform_(original: Callable[..., Any], self: torch.Tensor, args: tuple, kwargs: dict) -> torch.Tensor:
    def fill(device: Optional[torch.device]) -> None:
        low, high = _named(args, kwargs, ("from", "to"), (0.0, 1.0))
        if not (_is_number(low) and _is_number(high)):
            raise TypeError("uniform_: from and to must be numbers")
        _check_float_dtype(self.dtype, "uniform_")
        uniform_values(tuple(self.shape), self.dtype, device, kwargs.get("generator"), "uniform_",
                       low, high, out=self)

    return _in_place(original, "uniform_", self, args, kwargs, fill)


def tensor_exponential_(original: Callable[..., Any], self: torch.Tensor, args: tuple, kwargs: dict) -> torch.Tensor:
    if (len(args) <= 1 and len(kwargs) <= (_GENERATOR in kwargs) and type(self) is torch.Tensor  # x.exponential_([lambd])
            and not self.requires_grad and (self.is_cpu or self.is_cuda) and not self.is_inference()):
        lambd = args[0] if args else 1.0
        if type(lambd) in _NUMBER_TYPES and lambd > 0 and self.dtype in _FLOATS:
            try:
                return self.copy_(exponential_values(tuple(self.shape), self.dtype, self.device,
                                                     kwargs.get("generator"), "exponential_", lambd))
            except _ARGUMENT_ERRORS as error:
                _raise_like_torch(original, args, kwargs, error, self=self)
                raise

    def fill(device: Optional[torch.device]) -> None:
        (lambd,) = _named(args, kwargs, ("lambd",), (1.0,))
        if not _is_number(lambd):
            raise TypeError("exponential_: lambd must be a number")
        if not lambd > 0:
            raise RuntimeError(f"exponential_ expects lambda > 0.0, but found lambda={lambd}")
        _check_float_dtype(self.dtype, "exponential_")
        self.copy_(exponential_values(tuple(self.shape), self.dtype, device,
                                            kwargs.get("generator"), "exponential_", lambd))

    return _in_place(original, "exponential_", self, args, kwargs, fill)


def tensor_bernoulli_(original: Callable[..., Any], self: torch.Tensor, args: tuple, kwargs: dict) -> torch.Tensor:
    if (len(args) <= 1 and len(kwargs) <= (_GENERATOR in kwargs) and type(self) is torch.Tensor  # x.bernoulli_([p])
            and not self.requires_grad and (self.is_cpu or self.is_cuda) and not self.is_inference()
            and self.dtype in _REAL_DTYPES):
        try:
            return self.copy_(bernoulli_values(tuple(self.shape), self.dtype, self.device, kwargs.get("generator"),
                                               "bernoulli_", args[0] if args else 0.5))
        except _ARGUMENT_ERRORS as error:
            _raise_like_torch(original, args, kwargs, error, self=self)
            raise

    def fill(device: Optional[torch.device]) -> None:
        (p,) = _named(args, kwargs, ("p",), (0.5,))
        if self.dtype.is_complex:
            raise RuntimeError(f"bernoulli_: dtype {self.dtype} is not supported")
        self.copy_(bernoulli_values(tuple(self.shape), self.dtype, device,
                                          kwargs.get("generator"), "bernoulli_", p))

    return _in_place(original, "bernoulli_", self, args, kwargs, fill)


def _default_integer_range(dtype: torch.dtype) -> tuple[int, int]:
    """random_()'s range [low, high): [0, 2^digits] for floats, [0, max] for integers (as torch)."""
    if dtype == torch.bool:
        return 0, 2
    if dtype.is_floating_point:
        return 0, (1 << _DIGITS[dtype]) + 1
    return 0, int(_value_range(dtype)[1]) + 1


_DEFAULT_INTEGER_RANGES = {dtype: _default_integer_range(dtype) for dtype in _EXACT_INTEGERS}


def tensor_random_(original: Callable[..., Any], self: torch.Tensor, args: tuple, kwargs: dict) -> torch.Tensor:
    if (len(args) <= 2 and len(kwargs) <= (_GENERATOR in kwargs) and type(self) is torch.Tensor  # x.random_([[from,] to])
            and not self.requires_grad and (self.is_cpu or self.is_cuda) and not self.is_inference()):
        dtype = self.dtype
        exact = _EXACT_INTEGERS.get(dtype)
        if exact is not None:
            low, high = args if len(args) == 2 else (0, *args) if args else _DEFAULT_INTEGER_RANGES[dtype]
            if (type(low) is int and type(high) is int and exact[0] <= low < high <= exact[1]
                    and (not args or high < _INT64_END)):
                try:
                    return self.copy_(integer_values(tuple(self.shape), dtype, self.device, kwargs.get("generator"),
                                                     "random_", low, high - low))
                except _ARGUMENT_ERRORS as error:
                    _raise_like_torch(original, args, kwargs, error, self=self)
                    raise

    def fill(device: Optional[torch.device]) -> None:
        dtype = self.dtype
        if dtype.is_complex:
            raise RuntimeError(f"random_: dtype {dtype} is not supported")
        if len(args) > 2:
            raise TypeError("random_() takes at most from and to")
        low = kwargs["from"] if "from" in kwargs else (args[0] if len(args) >= 2 else None)
        high = kwargs["to"] if "to" in kwargs else (args[-1] if args else None)
        if low is None and high is None:  # random_(): torch's default range, checked by definition
            low, high = _default_integer_range(dtype)
        else:
            if low is None:
                low = 0
            if high is None:  # random_(from=a): up to the default top
                high = _default_integer_range(dtype)[1]
            if not (_is_number(low) and _is_number(high)):
                raise TypeError("random_: from and to must be ints")
            low, high = _int64(low), _int64(high)
            _check_integer_range(dtype, low, high, "random_")
        self.copy_(integer_values(tuple(self.shape), dtype, device, kwargs.get("generator"), "random_", low, high - low))

    return _in_place(original, "random_", self, args, kwargs, fill)
