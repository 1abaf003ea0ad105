"""Brownian motion for SDE samplers, identical on every device and batch size (docs/SPEC.md §9).

:class:`BrownianTree` is a virtual Brownian tree: ``tree(s, t)`` is ``W(t) - W(s)``, a pure function
of the tree seed, the interval, ``tol`` and the query, computed on the tree's device in one native
call. :class:`BatchedBrownianTree` and :class:`BrownianTreeNoiseSampler` are drop-ins for the
diffusers / k-diffusion classes of those names (torchsde-backed there);
``detnoise.patch_diffusers()`` puts :class:`BatchedBrownianTree` into diffusers' DPMSolverSDEScheduler.

>>> import torch, detnoise
>>> tree = detnoise.BrownianTree(0.0, 1.0, (2, 3), seed=0)
>>> tree(0.25, 0.5).shape
torch.Size([2, 3])
>>> torch.equal(tree(0.25, 0.5), -tree(0.5, 0.25))
True
"""

from __future__ import annotations

import importlib
import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from types import ModuleType
from typing import Any, Callable, Union

import torch

from detnoise import _layout, _native, _resolve, cuda_diagnosis
from detnoise.functional import _parse_size

__all__ = ["BrownianTree", "BatchedBrownianTree", "BrownianTreeNoiseSampler"]

# SPEC §9.1: leaf times k 2^-D stay exact in float64 up to this depth.
_MAX_DEPTH = 52
_MIN_LENGTH = 2.0**-960
# SPEC §9.1: a float32 compute type (float32, float16, bfloat16 trees) keeps every W and every
# difference below 2^127 only up to this length; float64 trees take any finite length.
_MAX_LENGTH_F32 = 2.0**240
# W(u) values kept per tree: a sampler's queries reuse their end points (W(t_k) ends one query and
# starts the next; DPM-Solver-SDE asks (s, mid) then (s, t)). Reuse returns the same bits.
_CACHED_POINTS = 4

# Point modes shared with csrc/include/detnoise/brownian.h (enum class BrownianMode).
_ZERO, _END, _DESCEND, _KNOWN = 0, 1, 2, 3

TimeArg = Union[float, int, torch.Tensor]
SeedArg = Union[int, Sequence[int], None]
GeneratorArg = Union[torch.Generator, Sequence[torch.Generator], None]


def _seed_from(generator: GeneratorArg, seed: int | None) -> list[int]:
    """Tree seeds S (SPEC §9.5): ``[seed mod 2^64]`` if ``seed`` is given, else one per generator
    (a single one, a list, or torch's default generator for None), each one block of that
    generator's stream read as w0 | w1 << 32.

    The single place where a Brownian tree touches generators: each block comes from the generator
    resolver (:func:`detnoise._resolve.reserve`, Note [Torch generator positions]), so it follows
    the same rules as every other draw: a detnoise.Generator gives its next block (its offset
    advances by 1); a torch.Generator's position is a function of its torch state. If any generator
    fails, the ones already used are given back.
    """
    if seed is not None:
        return [_layout.normalize_seed(seed)]
    sources = list(generator) if isinstance(generator, (list, tuple)) else [generator]
    sources = [torch.default_generator if item is None else item for item in sources]
    for item in sources:
        if not isinstance(item, torch.Generator):
            raise TypeError(f"generators must be torch.Generator or detnoise.Generator objects, got {type(item).__name__}")
    reservations: list[_resolve.Reservation] = []
    try:
        for item in sources:
            reservations.append(_resolve.reserve(item, 1))
    except BaseException:
        for reservation in reversed(reservations):
            reservation.undo()
        raise
    seeds = []
    for reservation in reservations:
        stream, offset, key = reservation.stream, reservation.start, reservation.seed
        words = _native.philox4x32_10((offset & 0xFFFFFFFF, offset >> 32, stream & 0xFFFFFFFF, stream >> 32),
                                      (key & 0xFFFFFFFF, key >> 32))
        seeds.append(words[0] | (words[1] << 32))
    return seeds


def _time(value: TimeArg, what: str) -> float:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{what} must be a number or a one-element tensor, got shape {tuple(value.shape)}")
        return float(value.item())
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be a float, got {type(value).__name__}")
    return float(value)


def _usable_device(device: str | torch.device | int | None) -> torch.device:
    """``device`` as a torch.device once a tree can compute there, else RuntimeError naming the fix.

    Checked when the tree is built, before a generator advances: torch's own failure would come at
    the first query (an AssertionError on a CPU-only torch). Devices other than CPU and CUDA get the
    CPU's values moved there, so they only need to exist.
    """
    if device is None:
        return torch.device("cpu")
    if isinstance(device, bool):
        raise TypeError("BrownianTree: device must be a str, torch.device or int, got bool")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise RuntimeError(f"BrownianTree: invalid device {device!r}: {error}") from None
    if resolved.type == "cpu":
        return resolved
    if resolved.type == "cuda":
        problems = cuda_diagnosis.cuda_problems()
        if problems:
            raise RuntimeError(f"BrownianTree: cannot compute on {resolved}: " + "; ".join(problems))
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise RuntimeError(
                f"BrownianTree: {resolved} does not exist; torch sees {torch.cuda.device_count()} CUDA device(s)"
            )
        return resolved
    try:
        torch.empty(0, device=resolved)
    except (RuntimeError, AssertionError, NotImplementedError) as error:
        first_line = str(error).strip().split("\n")[0].split(". ")[0]
        raise RuntimeError(
            f"BrownianTree: cannot put increments on {resolved} ({first_line}). The values do not depend on the "
            "device, so device='cpu' gives the same bits"
        ) from None
    return resolved


def _depth(length: float, tol: float) -> int:
    """SPEC §9.1: the smallest d >= 0 with length 2^-d <= tol."""
    for depth in range(_MAX_DEPTH + 1):
        if math.ldexp(length, -depth) <= tol:
            return depth
    raise ValueError(
        f"BrownianTree: tol={tol} needs more than {_MAX_DEPTH} bisections of an interval of length {length}; "
        f"use tol >= {math.ldexp(length, -_MAX_DEPTH)!r}"
    )


class BrownianTree:
    """Brownian motion ``W`` on ``[t0, t1]`` with ``tree(s, t) = W(t) - W(s)`` (docs/SPEC.md §9).

    Parameters
    ----------
    t0, t1 : float
        The interval, ``t0 < t1``, at least ``2**-960`` long and, unless ``dtype`` is float64, at most
        ``2**240`` (longer float32 trees would overflow; SPEC §9.1). Queries must lie inside it.
    shape_or_tensor : tuple of ints or torch.Tensor
        Shape of every increment; a tensor also gives the default ``dtype`` and ``device``.
    generator : torch.Generator, detnoise.Generator or a list of them, optional
        Where the tree seed comes from (one block of its stream, SPEC §9.5). A list makes a batched
        tree: row ``i`` (along dim 0, whose size must equal the list's length) is the single tree of
        ``generator[i]``.
    seed : int or list of ints, optional
        The tree seed itself; a list makes a batched tree whose row ``i`` equals the single tree of
        ``seed[i]``. With neither ``generator`` nor ``seed``, torch's default generator is used, as
        for every detnoise draw (so ``torch.manual_seed`` makes runs repeat).
    tol : float
        Bisection tolerance in time units: the tree is bisected until its leaves are at most ``tol``
        long and is linear inside a leaf.
    device, dtype : optional
        Where increments are computed and their dtype (float32, float64, float16, bfloat16; 16-bit
        increments are the float32 ones rounded, so float16 ones beyond 65504 are infinite). A device
        that cannot run here is refused when the tree is built (RuntimeError naming the fix).

    Values do not depend on the device, the query order or earlier queries: the same
    (seed, t0, t1, tol, s, t, shape, dtype) gives the same bits on every CPU and GPU. Each query is
    one native call (one CUDA launch).

    Examples
    --------
    >>> import detnoise
    >>> tree = detnoise.BrownianTree(0.0, 1.0, (2, 4), seed=[5, 6])   # row i == the tree of seed [5, 6][i]
    >>> dw = tree(0.0, 0.5)   # ~ N(0, 0.5) per element
    """

    def __init__(
        self,
        t0: TimeArg,
        t1: TimeArg,
        shape_or_tensor: Sequence[int] | torch.Size | torch.Tensor,
        generator: GeneratorArg = None,
        seed: SeedArg = None,
        tol: float = 1e-6,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        start, end = _time(t0, "t0"), _time(t1, "t1")
        if not (math.isfinite(start) and math.isfinite(end) and start < end):
            raise ValueError(f"BrownianTree: need finite t0 < t1, got t0={start}, t1={end}")
        length = end - start
        if not (math.isfinite(length) and length >= _MIN_LENGTH):
            raise ValueError(f"BrownianTree: t1 - t0 = {length} must be finite and at least 2**-960")
        tol = _time(tol, "tol")
        if not (math.isfinite(tol) and tol > 0):
            raise ValueError(f"BrownianTree: tol must be finite and positive, got {tol}")
        if isinstance(shape_or_tensor, torch.Tensor):
            shape = tuple(shape_or_tensor.shape)
            dtype = dtype if dtype is not None else shape_or_tensor.dtype
            device = device if device is not None else shape_or_tensor.device
        else:
            shape = _parse_size((shape_or_tensor,), "BrownianTree")
        dtype = dtype if dtype is not None else torch.get_default_dtype()
        if not isinstance(dtype, torch.dtype) or dtype not in _native.FLOAT_DTYPES:
            raise TypeError(f"BrownianTree: dtype {dtype} is not supported; use float32, float64, float16 or bfloat16")
        if dtype != torch.float64 and length > _MAX_LENGTH_F32:
            raise ValueError(
                f"BrownianTree: t1 - t0 = {length!r} is above 2**240, the longest interval a {dtype} tree computes "
                "without overflow (SPEC §9.1); use dtype=torch.float64 or rescale the time axis"
            )
        device = _usable_device(device)
        self.t0, self.t1, self.length, self.tol = start, end, length, tol
        self.depth = _depth(length, tol)
        self.shape, self.dtype, self.device = shape, dtype, device
        self._compute_dtype = torch.float64 if dtype == torch.float64 else torch.float32
        # SPEC §9.3 in float64; the kernels round each to the compute type.
        self._sigma_end = math.sqrt(length)
        self._sigma = [math.sqrt(math.ldexp(length, -(d + 2))) for d in range(self.depth)]
        self.seeds = self._resolve_seeds(generator, seed)
        self.batched = isinstance(seed, (list, tuple)) or isinstance(generator, (list, tuple))
        self._numel = math.prod(shape)
        self._row_elements = self._numel // len(self.seeds) if self.seeds else 0
        self._points: OrderedDict[float, tuple[torch.Tensor, int]] = OrderedDict()
        self._lock = threading.Lock()

    def _resolve_seeds(self, generator: GeneratorArg, seed: SeedArg) -> list[int]:
        if generator is not None and seed is not None:
            raise ValueError("BrownianTree: pass generator= or seed=, not both")
        rows_given = seed if isinstance(seed, (list, tuple)) else generator if isinstance(generator, (list, tuple)) else None
        if rows_given is None:
            return _seed_from(generator, seed)  # type: ignore[arg-type]
        if len(self.shape) == 0 or self.shape[0] != len(rows_given):
            raise ValueError(
                f"BrownianTree: {len(rows_given)} seeds or generators for shape {list(self.shape)}; a batched tree "
                "needs one per row (dim 0)"
            )
        if isinstance(seed, (list, tuple)):
            return [_layout.normalize_seed(item) for item in seed]
        return _seed_from(list(rows_given), None)

    def _unit_time(self, t: float, what: str) -> float:
        if not self.t0 <= t <= self.t1:
            raise ValueError(f"BrownianTree: {what}={t} is outside [t0, t1] = [{self.t0}, {self.t1}]")
        return (t - self.t0) / self.length  # SPEC §9.1: two float64 roundings

    def _point(self, u: float, stream: int) -> tuple[tuple[int, int, float, int, int], torch.Tensor | None, bool]:
        """(mode, leaf, beta, known address, save address) for the kernel, the buffer the kernel reads
        or writes (held by the caller until the call returns), and whether that buffer is new."""
        if u == 0.0:
            return (_ZERO, 0, 0.0, 0, 0), None, False
        cached = self._points.get(u)
        # A CUDA buffer is reused only on the stream that wrote it: no cross-stream ordering needed.
        if cached is not None and cached[1] == stream:
            self._points.move_to_end(u)
            return (_KNOWN, 0, 0.0, cached[0].data_ptr(), 0), cached[0], False
        save = torch.empty(self._numel, dtype=self._compute_dtype, device=self._kernel_device)
        if u == 1.0:
            return (_END, 0, 0.0, 0, save.data_ptr()), save, True
        scale = 1 << self.depth
        leaf = int(u * scale)  # exact: scaling by a power of two, then floor
        beta = (u - leaf / scale) * scale  # SPEC §9.4: both steps exact
        return (_DESCEND, leaf, beta, 0, save.data_ptr()), save, True

    @property
    def _kernel_device(self) -> torch.device:
        return self.device if self.device.type in ("cpu", "cuda") else torch.device("cpu")

    def __call__(self, s: TimeArg, t: TimeArg) -> torch.Tensor:
        """``W(t) - W(s)``: shape, dtype and device of the tree; any order of s and t."""
        u_s = self._unit_time(_time(s, "s"), "s")
        u_t = self._unit_time(_time(t, "t"), "t")
        device = self._kernel_device
        out = torch.empty(self.shape, dtype=self.dtype, device=device)
        if self._numel == 0:
            return out if device == self.device else out.to(self.device)
        if u_s == u_t:
            return out.zero_() if device == self.device else out.zero_().to(self.device)
        index = 0
        stream = 0
        if device.type == "cuda":
            index = device.index if device.index is not None else torch.cuda.current_device()
            stream = _native._raw_stream(index)
        with self._lock:  # the cache is shared by every thread querying this tree
            point_s, buffer_s, new_s = self._point(u_s, stream)
            point_t, buffer_t, new_t = self._point(u_t, stream)
        args = (_native.dtype_code(self.dtype), out.data_ptr(), self._row_elements, self.seeds, self.depth,
                self._sigma_end, self._sigma, [point_s, point_t])
        if device.type == "cpu":
            _native._core.brownian_cpu(*args, _native.get_num_threads(), _native._CPU_PATH_CODES[_native.get_cpu_path()])
        else:
            _native._core.brownian_cuda(*args, index, stream)
        with self._lock:
            for u, buffer, new in ((u_s, buffer_s, new_s), (u_t, buffer_t, new_t)):
                if new:
                    self._points[u] = (buffer, stream)
            while len(self._points) > _CACHED_POINTS:
                self._points.popitem(last=False)
        return out if device == self.device else out.to(self.device)

    def __repr__(self) -> str:
        return (f"BrownianTree(t0={self.t0}, t1={self.t1}, shape={list(self.shape)}, tol={self.tol}, depth={self.depth}, "
                f"rows={len(self.seeds)}, dtype={self.dtype}, device={self.device})")


# ---- drop-ins for diffusers / k-diffusion ---------------------------------------------------------


class BatchedBrownianTree:
    """Drop-in for ``diffusers.schedulers.scheduling_dpmsolver_sde.BatchedBrownianTree`` (and
    k-diffusion's class of that name), backed by :class:`BrownianTree` instead of torchsde.

    Same constructor ``(x, t0, t1, seed=None, **kwargs)`` and call ``tree(t0, t1)``: ``seed`` is an
    int, a list of one int per batch row (row ``i`` then equals the single tree of ``seed[i]``), or
    None (a seed from torch's default generator under detnoise's generator rules). ``w0`` in kwargs
    gives shape, dtype and device, as there. The tolerance is diffusers' 1e-6 (``tol`` in kwargs
    overrides it). Query times outside ``[t0, t1]`` are clamped into it, as torchsde does (without
    its warning): schedulers' sigma round trips (exp(-(-log sigma))) can leave by an ulp.
    """

    def __init__(self, x: torch.Tensor, t0: TimeArg, t1: TimeArg, seed: SeedArg = None, **kwargs: Any) -> None:
        t0, t1, self.sign = self.sort(_time(t0, "t0"), _time(t1, "t1"))
        w0 = kwargs.get("w0", torch.zeros_like(x))
        self.batched = seed is not None
        seeds: list[int] | None = None  # None: one seed from torch's default generator, taken by the tree
        if seed is not None:
            try:
                assert len(seed) == x.shape[0]  # type: ignore[arg-type]  # diffusers' own check, same error
                w0 = w0[0]
                seeds = list(seed)  # type: ignore[arg-type]
            except TypeError:
                seeds = [seed]  # type: ignore[list-item]
                self.batched = False
        # The tree checks its arguments before it draws that seed: a refused tree moves no generator.
        shape = (len(seeds) if seeds is not None else 1, *w0.shape)
        self.tree = BrownianTree(t0, t1, shape, seed=seeds, tol=kwargs.get("tol", 1e-6), device=w0.device, dtype=w0.dtype)

    @staticmethod
    def sort(a: float, b: float) -> tuple[float, float, float]:
        """``(a, b, 1.0)`` if ``a < b`` else ``(b, a, -1.0)``, as diffusers does."""
        return (a, b, 1.0) if a < b else (b, a, -1.0)

    def __call__(self, t0: TimeArg, t1: TimeArg) -> torch.Tensor:
        t0, t1, sign = self.sort(_time(t0, "t0"), _time(t1, "t1"))
        low, high = self.tree.t0, self.tree.t1
        w = self.tree(min(max(t0, low), high), min(max(t1, low), high))
        if self.sign * sign < 0:
            w = w.neg_()  # exact, as diffusers' multiplication by -1.0 is
        return w if self.batched else w[0]


class BrownianTreeNoiseSampler:
    """k-diffusion's ``BrownianTreeNoiseSampler`` on :class:`BatchedBrownianTree`: ``sampler(sigma,
    sigma_next)`` is ``W(t(sigma), t(sigma_next)) / sqrt(|t(sigma_next) - t(sigma)|)``, unit-variance
    noise for the step, with ``t = transform(sigma)``. ``cpu=`` (ComfyUI's signature) is accepted
    and has no effect: the values are the same on every device. An int seed is one tree over the
    whole batch, as in k-diffusion; :class:`detnoise.k_diffusion.BrownianTreeNoiseSampler` gives
    every row a tree of its own.

    >>> import torch, detnoise
    >>> x = torch.zeros(1, 4, 8, 8)
    >>> sampler = detnoise.BrownianTreeNoiseSampler(x, 0.03, 14.6, seed=0)
    >>> sampler(torch.tensor(14.6), torch.tensor(10.0)).shape
    torch.Size([1, 4, 8, 8])
    """

    def __init__(
        self,
        x: torch.Tensor,
        sigma_min: TimeArg,
        sigma_max: TimeArg,
        seed: SeedArg = None,
        transform: Callable[[torch.Tensor], torch.Tensor] = lambda x: x,
        cpu: bool = False,
    ) -> None:
        # cpu=: ComfyUI's signature; no effect, the values are the same on every device.
        self.transform = transform
        t0, t1 = self.transform(torch.as_tensor(sigma_min)), self.transform(torch.as_tensor(sigma_max))
        self.tree = BatchedBrownianTree(x, t0, t1, seed)

    def __call__(self, sigma: TimeArg, sigma_next: TimeArg) -> torch.Tensor:
        t0, t1 = self.transform(torch.as_tensor(sigma)), self.transform(torch.as_tensor(sigma_next))
        return self.tree(t0, t1) / (t1 - t0).abs().sqrt()


# ---- diffusers patch hook (called by detnoise.patch_diffusers / unpatch_diffusers) -------------------

_SDE_MODULE = "diffusers.schedulers.scheduling_dpmsolver_sde"
_replaced: dict[str, tuple[ModuleType, Any]] = {}


def patch_scheduler() -> list[str]:
    """Puts :class:`BatchedBrownianTree` into diffusers' DPMSolverSDEScheduler module, if torchsde
    (which that module imports) is installed; returns the names of the modules changed."""
    try:
        importlib.import_module("torchsde")
        module = importlib.import_module(_SDE_MODULE)
    except ImportError:
        return []
    current = getattr(module, "BatchedBrownianTree", None)
    if current is None or current is BatchedBrownianTree:
        return []
    _replaced[_SDE_MODULE] = (module, current)
    module.BatchedBrownianTree = BatchedBrownianTree
    return [_SDE_MODULE]


def unpatch_scheduler() -> None:
    """Restores diffusers' own BatchedBrownianTree; idempotent."""
    for name, (module, original) in list(_replaced.items()):
        if getattr(module, "BatchedBrownianTree", None) is BatchedBrownianTree:
            module.BatchedBrownianTree = original
        del _replaced[name]
