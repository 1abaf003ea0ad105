"""Noise for k-diffusion-style samplers (k-diffusion, ComfyUI's fork, others with the same names):
per-row seeds, ancestral and Brownian noise samplers, ComfyUI's ``prepare_noise``, and a patch that
swaps the noise samplers a sampling module builds for its defaults (docs/SPEC.md §11).

Every value is a function of (seed, batch index): row ``i`` of a batch equals the single run of row
``i``, on every device. Initial noise, ancestral noise and the Brownian tree of a row are three
independent streams, so no sampler step repeats the initial noise (as a torch generator seeded alike
on every device would).

>>> import torch
>>> import detnoise.k_diffusion as dk
>>> latent = torch.zeros(2, 4, 8, 8)
>>> noise = dk.prepare_noise(latent, 7)                   # row i depends on (7, i) only
>>> torch.equal(noise[1:], dk.prepare_noise(latent[:1], 7, [1]))
True
>>> ancestral = dk.default_noise_sampler(noise, seed=7)   # (sigma, sigma_next) -> noise like x
>>> ancestral(14.6, 10.0).shape
torch.Size([2, 4, 8, 8])
"""

from __future__ import annotations

import importlib
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Callable, Iterator, Union

import torch

from detnoise import _layout, _native, brownian
from detnoise.functional import normal

__all__ = [
    "ANCESTRAL_NOISE_DOMAIN",
    "INITIAL_NOISE_DOMAIN",
    "AncestralNoiseSampler",
    "BrownianTreeNoiseSampler",
    "KDiffusionPatch",
    "ancestral_stream",
    "default_noise_sampler",
    "initial_stream",
    "patch_k_diffusion",
    "prepare_noise",
    "row_seeds",
    "unpatch_k_diffusion",
]

# SPEC §11.2: fold_in data that name the two Gaussian streams of a row (ASCII, little-endian).
INITIAL_NOISE_DOMAIN = int.from_bytes(b"kd:init\x00", "little")
ANCESTRAL_NOISE_DOMAIN = int.from_bytes(b"kd:ances", "little")

SeedSource = Union[int, torch.Generator, None]
SeedArg = Union[SeedSource, Sequence[Union[int, torch.Generator]]]
BatchIndex = Union[Sequence[int], torch.Tensor, None]


# ---- seeds (SPEC §11.1) -----------------------------------------------------------------------------


def _check_seed_arg(seed: object, rows: int, what: str) -> None:
    """Every check :func:`row_seeds` makes, before any generator is touched."""
    items = list(seed) if isinstance(seed, (list, tuple)) else [seed]
    if isinstance(seed, (list, tuple)) and len(items) != rows:
        raise ValueError(f"{what}: {len(items)} seeds for a batch of {rows} rows; give one per row or a single seed")
    for item in items:
        if item is None and isinstance(seed, (list, tuple)):
            raise TypeError(f"{what}: a list of seeds holds ints or generators, got None")
        if item is not None and not isinstance(item, torch.Generator):
            _layout.as_int(item, "seed")


def _indices(batch_index: BatchIndex, rows: int, what: str) -> list[int]:
    if batch_index is None:
        return list(range(rows))
    values = batch_index.tolist() if isinstance(batch_index, torch.Tensor) else list(batch_index)
    if len(values) != rows:
        raise ValueError(f"{what}: batch_index has {len(values)} entries for a batch of {rows} rows")
    checked = [_layout.as_int(value, "batch_index entry") for value in values]
    for value in checked:
        if value < 0:
            raise ValueError(f"{what}: batch_index entries must be >= 0, got {value}")
    return checked


def _resolved(seed: SeedArg, rows: int) -> Union[int, list[int]]:
    """``seed`` with every generator replaced by its seed (one block each, SPEC §9.5's rule): an int
    for a single seed, a list for one per row. Checks everything first, so a failure takes nothing."""
    _check_seed_arg(seed, rows, "row_seeds")
    if isinstance(seed, (list, tuple)):
        generators = [item for item in seed if isinstance(item, torch.Generator)]
        taken = iter(brownian._seed_from(generators, None) if generators else [])
        return [next(taken) if isinstance(item, torch.Generator) else _layout.as_int(item, "seed") % _layout.UINT64_LIMIT
                for item in seed]
    if seed is None or isinstance(seed, torch.Generator):
        return brownian._seed_from(seed, None)[0]
    return _layout.as_int(seed, "seed") % _layout.UINT64_LIMIT


def _rows_from(base: Union[int, list[int]], indices: list[int]) -> list[int]:
    if isinstance(base, list):
        return base
    return [(base + index) % _layout.UINT64_LIMIT for index in indices]


def row_seeds(seed: SeedArg, rows: int, batch_index: BatchIndex = None) -> list[int]:
    """The row seeds ``r_0 .. r_{rows-1}`` of docs/SPEC.md §11.1.

    Parameters
    ----------
    seed : int, torch.Generator, detnoise.Generator, None, or a list of ints/generators
        An int ``s`` (any int, taken modulo 2**64) gives ``r_j = (s + i_j) mod 2**64``; a generator
        (None: torch's default generator) stands for the seed ``s`` = words w0 | w1 << 32 of its
        next block, which it takes (the rule of SPEC §9.5), then the same; a list gives one row
        seed per row, as is (ints modulo 2**64, generators one block each).
    rows : int
        The batch size.
    batch_index : sequence of ints, optional
        ``i_j``, the batch index of row ``j`` (ComfyUI's ``batch_index``); default ``j``.

    Examples
    --------
    >>> from detnoise.k_diffusion import row_seeds
    >>> row_seeds(2**64 - 1, 3)
    [18446744073709551615, 0, 1]
    """
    rows = _layout.as_int(rows, "rows")
    if rows < 0:
        raise ValueError(f"row_seeds: rows must be >= 0, got {rows}")
    indices = _indices(batch_index, rows, "row_seeds")
    return _rows_from(_resolved(seed, rows), indices)  # _resolved checks the seeds before taking any


def initial_stream(row_seed: int) -> int:
    """Stream id of a row's initial noise under key ``row_seed`` (SPEC §11.2)."""
    return _layout.fold_in_stream(row_seed, 0, INITIAL_NOISE_DOMAIN)


def ancestral_stream(row_seed: int) -> int:
    """Stream id of a row's ancestral noise under key ``row_seed`` (SPEC §11.2)."""
    return _layout.fold_in_stream(row_seed, 0, ANCESTRAL_NOISE_DOMAIN)


def _check_tensor(x: object, what: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{what}: x must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in _native.FLOAT_DTYPES:
        raise TypeError(f"{what}: dtype {x.dtype} is not supported; use float32, float64, float16 or bfloat16")
    if x.dim() == 0:
        raise ValueError(f"{what}: x needs a batch dimension (dim 0), got a 0-dim tensor")
    return x


# ---- initial noise --------------------------------------------------------------------------------


def _initial_rows(latent: torch.Tensor, seeds: list[int], component: int | None) -> torch.Tensor:
    row_shape = tuple(latent.shape[1:])
    out = torch.empty((len(seeds), *row_shape), dtype=latent.dtype, device="cpu")
    for row, row_seed in enumerate(seeds):
        stream = initial_stream(row_seed)
        if component is not None:  # SPEC §11.2: the parts of a nested latent
            stream = _layout.fold_in_stream(row_seed, stream, component)
        normal(row_shape, seed=row_seed, stream=stream, dtype=latent.dtype, out=out[row])
    return out


def prepare_noise(latent_image: torch.Tensor, seed: SeedArg, noise_inds: BatchIndex = None) -> torch.Tensor:
    """Initial noise with ComfyUI's ``comfy.sample.prepare_noise`` interface (docs/SPEC.md §11.2).

    Row ``j`` is the initial noise of batch index ``noise_inds[j]`` (``j`` without ``noise_inds``),
    a function of (seed, that index) only: the result has ``len(noise_inds)`` rows, the latent's
    dtype, on the CPU (as ComfyUI's). ``seed`` is any int (taken modulo 2**64), a generator or a
    list of per-row seeds (see :func:`row_seeds`). A nested latent (``is_nested``, e.g. ComfyUI's
    NestedTensor) gets each part's noise from a stream of its own, rebuilt as its type.

    Examples
    --------
    >>> import torch, detnoise.k_diffusion as dk
    >>> dk.prepare_noise(torch.zeros(1, 4, 8, 8, dtype=torch.float16), 2**64 - 1).dtype
    torch.float16
    """
    nested = bool(getattr(latent_image, "is_nested", False))
    parts = list(latent_image.unbind()) if nested else [latent_image]
    for part in parts:
        _check_tensor(part, "prepare_noise")
        if part.layout is not torch.strided:
            raise TypeError(f"prepare_noise: only strided latents are supported, got layout {part.layout}")
    rows = len(noise_inds) if noise_inds is not None else (parts[0].shape[0] if parts else 0)
    indices = _indices(noise_inds, rows, "prepare_noise")
    for part in parts:
        if noise_inds is None and part.shape[0] != rows:
            raise ValueError(f"prepare_noise: the parts of a nested latent have different batch sizes ({part.shape[0]} != {rows})")
    seeds = _rows_from(_resolved(seed, rows), indices)
    if not nested:
        return _initial_rows(latent_image, seeds, None)
    noises = [_initial_rows(part, seeds, index) for index, part in enumerate(parts)]
    if type(latent_image) is torch.Tensor:
        return torch.nested.nested_tensor(noises, layout=latent_image.layout)
    return type(latent_image)(noises)


# ---- noise samplers --------------------------------------------------------------------------------


class AncestralNoiseSampler:
    """k-diffusion's ancestral noise sampler: ``sampler(sigma, sigma_next)`` is a standard normal
    tensor shaped like ``x`` (dtype and device of ``x``), a new one per call (docs/SPEC.md §11.3).

    Parameters
    ----------
    x : torch.Tensor
        The latent (batch along dim 0) whose shape, dtype and device the noise takes.
    seed : int, generator, None or list
        As :func:`row_seeds`: one int or generator for the batch (row ``j`` gets row seed
        ``s + batch_index[j]``) or one per row. None takes a seed from torch's default generator.
    batch_index : sequence of ints, optional
        The batch index of each row (ComfyUI's ``batch_index``); default ``0 .. rows-1``.

    Call ``k`` (from 0) of row ``j`` is the normal draw of the row's element count in x's dtype
    from (``r_j``, ``ancestral_stream(r_j)``, offset ``k`` times the blocks of one row's draw): it
    depends on nothing else, so row ``j`` equals the single run of its row seed on every device.
    The sigmas are not used (k-diffusion's default sampler ignores them too).

    >>> import torch, detnoise.k_diffusion as dk
    >>> sampler = dk.AncestralNoiseSampler(torch.zeros(2, 3), seed=5)
    >>> first = sampler(1.0, 0.5)
    >>> torch.equal(first[1], dk.AncestralNoiseSampler(torch.zeros(1, 3), seed=6)(1.0, 0.5)[0])
    True
    """

    def __init__(self, x: torch.Tensor, seed: SeedArg = None, batch_index: BatchIndex = None) -> None:
        _check_tensor(x, "AncestralNoiseSampler")
        self.shape, self.dtype, self.device = tuple(x.shape), x.dtype, x.device
        self.row_seeds = row_seeds(seed, self.shape[0], batch_index)
        self._streams = [ancestral_stream(row_seed) for row_seed in self.row_seeds]
        self._row_shape = self.shape[1:]
        row_elements = 1
        for size in self._row_shape:
            row_elements *= size
        self._row_blocks = _layout.blocks_for(row_elements, self.dtype)
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self, sigma: object = None, sigma_next: object = None) -> torch.Tensor:
        out = torch.empty(self.shape, dtype=self.dtype, device=self.device)
        with self._lock:  # the call counter is the stream position: one draw at a time
            offset = self.calls * self._row_blocks
            for row, (row_seed, stream) in enumerate(zip(self.row_seeds, self._streams)):
                normal(self._row_shape, seed=row_seed, stream=stream, offset=offset, dtype=self.dtype, out=out[row])
            self.calls += 1
        return out

    def __repr__(self) -> str:
        return f"AncestralNoiseSampler(shape={list(self.shape)}, dtype={self.dtype}, device={self.device}, calls={self.calls})"


def default_noise_sampler(x: torch.Tensor, seed: SeedArg = None, batch_index: BatchIndex = None) -> AncestralNoiseSampler:
    """Drop-in for k-diffusion's ``default_noise_sampler(x)`` and ComfyUI's
    ``default_noise_sampler(x, seed=None)``: an :class:`AncestralNoiseSampler` for ``x``.

    >>> import torch, detnoise.k_diffusion as dk
    >>> dk.default_noise_sampler(torch.zeros(1, 4), seed=0)(1.0, 0.5).shape
    torch.Size([1, 4])
    """
    return AncestralNoiseSampler(x, seed=seed, batch_index=batch_index)


def _identity(value: torch.Tensor) -> torch.Tensor:
    return value


class BrownianTreeNoiseSampler(brownian.BrownianTreeNoiseSampler):
    """Drop-in for k-diffusion's and ComfyUI's ``BrownianTreeNoiseSampler`` with one Brownian tree
    per batch row (docs/SPEC.md §11.3): row ``j``'s tree seed is the row seed ``r_j`` (§9.5).

    Parameters
    ----------
    x : torch.Tensor
        The latent (batch along dim 0): shape, dtype and device of the noise.
    sigma_min, sigma_max : float or tensor
        The interval the tree covers (after ``transform``).
    seed : int, generator, None or list
        As :func:`row_seeds` (an int ``s`` gives row ``j`` the tree of ``s + batch_index[j]``).
    transform : callable
        Maps sigma to the tree's time, as in k-diffusion.
    cpu : bool
        Accepted for ComfyUI's signature and ignored: the values are the same on every device, and
        the tree is computed on ``x``'s device.
    batch_index : sequence of ints, optional
        The batch index of each row; default ``0 .. rows-1``.

    ``sampler(sigma, sigma_next)`` is ``W(t(sigma), t(sigma_next)) / sqrt(|t(sigma_next) - t(sigma)|)``.
    Unlike :class:`detnoise.BrownianTreeNoiseSampler` (k-diffusion's own semantics: an int seed is
    one tree over the whole batch), every row here is its own tree, so a row equals its single run.

    >>> import torch, detnoise.k_diffusion as dk
    >>> sampler = dk.BrownianTreeNoiseSampler(torch.zeros(2, 4, 8, 8), 0.03, 14.6, seed=0, cpu=True)
    >>> sampler(torch.tensor(14.6), torch.tensor(10.0)).shape
    torch.Size([2, 4, 8, 8])
    """

    def __init__(
        self,
        x: torch.Tensor,
        sigma_min: brownian.TimeArg,
        sigma_max: brownian.TimeArg,
        seed: SeedArg = None,
        transform: Callable[[torch.Tensor], torch.Tensor] = _identity,
        cpu: bool = False,
        batch_index: BatchIndex = None,
    ) -> None:
        _check_tensor(x, "BrownianTreeNoiseSampler")
        rows = x.shape[0]
        _check_seed_arg(seed, rows, "BrownianTreeNoiseSampler")
        _indices(batch_index, rows, "BrownianTreeNoiseSampler")
        # Build once with placeholder seeds: every other argument is checked before a generator
        # gives up a block, so a failed construction leaves it unchanged.
        super().__init__(x, sigma_min, sigma_max, seed=[0] * rows, transform=transform)
        self.row_seeds = row_seeds(seed, rows, batch_index)
        super().__init__(x, sigma_min, sigma_max, seed=self.row_seeds, transform=transform)
        self.cpu = cpu


# ---- patching a sampling module --------------------------------------------------------------------

_REPLACEMENTS: dict[str, Any] = {
    "default_noise_sampler": default_noise_sampler,
    "BrownianTreeNoiseSampler": BrownianTreeNoiseSampler,
}
_patch_lock = threading.RLock()
_originals: dict[int, tuple[ModuleType, dict[str, Any]]] = {}
_holders: dict[int, int] = {}


def _module(module: ModuleType | str) -> ModuleType:
    if isinstance(module, str):
        return importlib.import_module(module)
    if not isinstance(module, ModuleType):
        raise TypeError(f"patch_k_diffusion: module must be a module or its dotted name, got {type(module).__name__}")
    return module


def _names_in(module: ModuleType) -> list[str]:
    names = [name for name in _REPLACEMENTS if hasattr(module, name)]
    if not names:
        raise ValueError(
            f"patch_k_diffusion: {module.__name__} defines neither default_noise_sampler nor BrownianTreeNoiseSampler; "
            "pass the sampling module itself (k_diffusion.sampling, comfy.k_diffusion.sampling)"
        )
    return names


@dataclass
class KDiffusionPatch:
    """The handle :func:`patch_k_diffusion` returns; a context manager that releases it on exit."""

    module: ModuleType
    names: list[str] = field(default_factory=list)
    active: bool = True

    def __enter__(self) -> KDiffusionPatch:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def release(self) -> None:
        """Releases this handle; the module gets its own noise samplers back when no handle holds it."""
        with _patch_lock:
            if not self.active:
                return
            self.active = False
            key = id(self.module)
            if key not in _holders:  # unpatch_k_diffusion released it already
                return
            _holders[key] -= 1
            if not _holders[key]:
                _restore_locked(key)


def _restore_locked(key: int) -> None:
    module, saved = _originals.pop(key)
    del _holders[key]
    for name, original in saved.items():
        if getattr(module, name, None) is _REPLACEMENTS[name]:
            setattr(module, name, original)


def patch_k_diffusion(module: ModuleType | str) -> KDiffusionPatch:
    """Makes a sampling module's samplers build detnoise noise samplers by default.

    Replaces ``module.default_noise_sampler`` with :func:`default_noise_sampler` and
    ``module.BrownianTreeNoiseSampler`` with :class:`BrownianTreeNoiseSampler` (those of the two it
    defines), so every sampler there that builds its own noise sampler (ancestral and SDE samplers,
    ``noise_sampler=None``) draws detnoise values; an explicit ``noise_sampler=`` is used as given.
    Works for ``k_diffusion.sampling``, ComfyUI's ``comfy.k_diffusion.sampling`` and any module
    with those names. k-diffusion's samplers pass no seed, so the seed comes from torch's default
    generator (``torch.manual_seed`` makes runs repeat); ComfyUI's pass the sampler's seed.
    ``torch.randn_like`` calls inside samplers (``s_churn > 0`` of Euler/Heun/DPM-2) are not
    noise samplers and stay torch's (``detnoise.patch_torch()`` covers them).

    Returns a handle (also a context manager); the module is restored when every handle is released
    or by :func:`unpatch_k_diffusion`.

    Examples
    --------
    >>> import types, detnoise.k_diffusion as dk
    >>> sampling = types.ModuleType("sampling")
    >>> sampling.default_noise_sampler = lambda x: None
    >>> with dk.patch_k_diffusion(sampling):
    ...     sampling.default_noise_sampler is dk.default_noise_sampler
    True
    """
    target = _module(module)
    names = _names_in(target)
    with _patch_lock:
        key = id(target)
        if key not in _originals:
            _originals[key] = (target, {name: getattr(target, name) for name in names})
            _holders[key] = 0
            for name in names:
                setattr(target, name, _REPLACEMENTS[name])
        _holders[key] += 1
        return KDiffusionPatch(target, names)


def unpatch_k_diffusion(module: ModuleType | str | None = None) -> None:
    """Releases every handle on ``module`` (every patched module for None) and restores its noise
    samplers; idempotent."""
    with _patch_lock:
        if module is None:
            keys = list(_originals)
        else:
            keys = [id(_module(module))] if id(_module(module)) in _originals else []
        for key in keys:
            _restore_locked(key)


class _ScopedNoise:
    """Installs seed-per-row noise samplers into ``modules`` for one sampler call (a ``with`` block)
    and puts back what was there. Used by the ComfyUI node pack (the batch index of each row is only
    known to the node)."""

    def __init__(self, modules: list[ModuleType], batch_index: BatchIndex = None) -> None:
        self.modules = modules
        self.batch_index = batch_index
        self._saved: list[tuple[ModuleType, str, Any]] = []

    def default_noise_sampler(self, x: torch.Tensor, seed: SeedArg = None) -> AncestralNoiseSampler:
        return AncestralNoiseSampler(x, seed=seed, batch_index=self._index_for(x))

    def brownian_noise_sampler(self, x: torch.Tensor, sigma_min: Any, sigma_max: Any, seed: SeedArg = None,
                               transform: Callable[[torch.Tensor], torch.Tensor] = _identity,
                               cpu: bool = False) -> BrownianTreeNoiseSampler:
        return BrownianTreeNoiseSampler(x, sigma_min, sigma_max, seed=seed, transform=transform, cpu=cpu,
                                        batch_index=self._index_for(x))

    def _index_for(self, x: torch.Tensor) -> BatchIndex:
        # A sampler may build a noise sampler for a tensor of another batch size; then rows count from 0.
        if self.batch_index is not None and isinstance(x, torch.Tensor) and x.dim() and len(self.batch_index) == x.shape[0]:
            return self.batch_index
        return None

    def __enter__(self) -> _ScopedNoise:
        replacements = {"default_noise_sampler": self.default_noise_sampler,
                        "BrownianTreeNoiseSampler": self.brownian_noise_sampler}
        _patch_lock.acquire()  # one scoped call at a time per process: the modules are shared
        try:
            for module in self.modules:
                for name, replacement in replacements.items():
                    if hasattr(module, name):
                        self._saved.append((module, name, getattr(module, name)))
                        setattr(module, name, replacement)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            for module, name, original in reversed(self._saved):
                setattr(module, name, original)
            self._saved.clear()
        finally:
            _patch_lock.release()


def _iter_modules(names: Sequence[str]) -> Iterator[ModuleType]:
    """The modules among ``names`` that are loaded and define a noise sampler name."""
    for name in names:
        module = sys.modules.get(name)
        if module is not None and any(hasattr(module, attr) for attr in _REPLACEMENTS):
            yield module
