"""diffusers integration: a drop-in ``randn_tensor`` and ``patch_diffusers()``.

``randn_tensor`` has the parameters and behaviour of ``diffusers.utils.torch_utils.randn_tensor``
(diffusers 0.42.1), except that the noise is computed directly on ``device`` and its values do not
depend on the device. ``patch_diffusers()`` puts it in place of the original in every loaded
diffusers module (and in ``torch_utils``, where modules imported later find it).

Plain ``torch.Generator`` objects work too (see :func:`randn_tensor`): their detnoise position is
a function of their torch state (Note [Torch generator positions] in ``detnoise._resolve``).
"""

from __future__ import annotations

import contextlib
import inspect
import re
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Callable, Union

import torch

from detnoise import _layout, _native, _resolve
from detnoise._draw import check_not_capturing
from detnoise._torchargs import _parse_size

GeneratorArg = Union[torch.Generator, Sequence[torch.Generator], None]

_EXPECTED_PARAMETERS = ("shape", "generator", "device", "dtype", "layout")

_CPU = torch.device("cpu")


def _resolve_generators(generator: Any, batch_size: int | None) -> list[torch.Generator] | torch.Generator | None:
    if isinstance(generator, (list, tuple)):
        if len(generator) == 0:
            raise ValueError("randn_tensor: got an empty list of generators")
        for item in generator:
            if not isinstance(item, torch.Generator):
                raise TypeError(f"randn_tensor: generators must be torch.Generator objects, got {type(item).__name__}")
        if len(generator) == 1:
            return generator[0]
        if batch_size is None or len(generator) < batch_size:
            raise ValueError(
                f"randn_tensor: {len(generator)} generators for a batch of {batch_size}; pass one generator "
                "per batch row (shape[0]) or a single generator"
            )
        return list(generator[:batch_size])
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"randn_tensor: generator must be a torch.Generator or a list of them, got {type(generator).__name__}")
    return generator


_recorders: list[list[tuple[tuple[int, ...], torch.Tensor]]] = []


@contextlib.contextmanager
def record_draws() -> Iterator[list[tuple[tuple[int, ...], torch.Tensor]]]:
    """Collects ``(shape, clone of the result)`` for every ``randn_tensor`` call in the block."""
    log: list[tuple[tuple[int, ...], torch.Tensor]] = []
    _recorders.append(log)
    try:
        yield log
    finally:
        _recorders.remove(log)


def randn_tensor(
    shape: tuple[int, ...] | list[int],
    generator: GeneratorArg = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    layout: torch.layout | None = None,
) -> torch.Tensor:
    """Gaussian noise of ``shape``, computed on ``device``, identical on every device (stream v1).

    A drop-in for ``diffusers.utils.torch_utils.randn_tensor``:

    - ``generator`` may be a :class:`detnoise.Generator`, a plain ``torch.Generator`` (CPU or CUDA:
      its position follows its torch state, so ``manual_seed(s)`` starts block 0 of seed ``s``,
      consecutive calls continue the stream, ``set_state``/``deepcopy`` replay, and CPU and CUDA
      generators with one seed give the same noise: Note [Torch generator positions] in
      ``detnoise._resolve``), a list or tuple of them (row ``i`` of the batch equals a single-row
      draw from ``generator[i]``; one kernel launch), or None (torch's default CPU generator, so
      ``torch.manual_seed(s)`` makes scripts reproducible across devices).
    - ``device`` defaults to the CPU; a generator's device never has to match it. Devices other than
      CPU and CUDA get CPU noise moved to them.
    - ``dtype`` defaults to torch's default dtype; float16/bfloat16 noise is the float32 noise
      rounded. ``layout`` other than ``torch.strided`` raises ``NotImplementedError`` as in diffusers.

    Examples
    --------
    >>> import torch, detnoise
    >>> a = detnoise.randn_tensor((1, 4, 8, 8), generator=torch.Generator().manual_seed(0))
    >>> b = detnoise.randn((1, 4, 8, 8), generator=detnoise.Generator(seed=0))
    >>> torch.equal(a, b)
    True
    """
    if torch.compiler.is_compiling():  # generator bookkeeping is Python state: graph-break here
        return _randn_tensor_eagerly(shape, generator, device, dtype, layout)
    if not isinstance(shape, (int, tuple, list, torch.Size)):
        raise TypeError(f"randn_tensor: shape must be a tuple or list of ints, got {type(shape).__name__}")
    dims = _parse_size((shape,), "randn_tensor")
    layout = layout or torch.strided
    if layout != torch.strided:
        raise NotImplementedError(f"randn_tensor: layout {layout} is not supported (only torch.strided)")
    if device is None:
        device = _CPU
    elif not isinstance(device, torch.device):
        device = torch.device(device)
    dtype = dtype or torch.get_default_dtype()
    if dtype not in _native.FLOAT_DTYPES:
        raise TypeError(f"randn_tensor: dtype {dtype} is not supported; use float32, float64, float16 or bfloat16")
    draw_device = device if device.type in ("cpu", "cuda") else torch.device("cpu")
    generators = _resolve_generators(generator, dims[0] if dims else None)
    # torch.empty(*dims) parses faster than torch.empty(dims).
    out = torch.empty(*dims, dtype=dtype, device=draw_device) if dims else torch.empty((), dtype=dtype, device=draw_device)
    if isinstance(generators, list) and out.numel() == 0:
        pass  # an empty batch (or empty rows): nothing to draw, no generator advances
    elif isinstance(generators, list):
        row_blocks = _layout.blocks_for(out.numel() // len(generators), dtype)
        reservations: list[_resolve.Reservation] = []
        try:
            if out.is_cuda:
                check_not_capturing(out.device, "randn_tensor")
            for item in generators:
                reservations.append(_resolve.reserve(item, row_blocks))
            _native.launch_rows(_native.KIND_NORMAL, out, [(r.seed, r.stream, r.start) for r in reservations])
        except BaseException:
            for reservation in reversed(reservations):
                reservation.undo()
            raise
    else:
        if out.is_cuda:
            check_not_capturing(out.device, "randn_tensor")
        reservation = _resolve.reserve(generators, _layout.blocks_for(out.numel(), dtype), default=torch.default_generator)
        try:
            _native.launch(_native.KIND_NORMAL, out, reservation.seed, reservation.stream, reservation.start)
        except BaseException:
            reservation.undo()
            raise
    if draw_device != device:
        out = out.to(device)
    for log in _recorders:
        log.append((dims, out.detach().clone()))
    return out


_randn_tensor_eagerly = torch.compiler.disable(randn_tensor)


# ---- patching diffusers ---------------------------------------------------------------------


@dataclass
class DiffusersPatch:
    """What ``patch_diffusers()`` changed; a context manager that undoes it on exit."""

    original: Callable[..., torch.Tensor]
    rebound: list[str] = field(default_factory=list)
    active: bool = True
    holders: int = 1  # patch_diffusers() calls not yet matched by leaving their with block

    def __enter__(self) -> DiffusersPatch:
        return self

    def __exit__(self, *exc_info: object) -> None:
        _release(self)

    def unpatch(self) -> None:
        """Restores diffusers' randn_tensor now, whoever else holds the patch."""
        unpatch_diffusers()


_patch: DiffusersPatch | None = None
_patch_lock = threading.Lock()


def _torch_utils() -> ModuleType:
    try:
        from diffusers.utils import torch_utils
    except ImportError as error:
        raise ModuleNotFoundError(
            "detnoise.patch_diffusers() needs diffusers: pip install 'detnoise[diffusers]'"
        ) from error
    return torch_utils


def _diffusers_modules() -> list[tuple[str, ModuleType]]:
    return [(name, module) for name, module in list(sys.modules.items())
            if isinstance(module, ModuleType) and (name == "diffusers" or name.startswith("diffusers."))]


def patch_diffusers() -> DiffusersPatch:
    """Makes diffusers draw its noise with :func:`randn_tensor`; returns a handle (a context manager).

    Replaces ``diffusers.utils.torch_utils.randn_tensor`` first, so modules imported later pick up
    detnoise's, then rebinds ``randn_tensor`` in every loaded diffusers module that holds the
    original. Patching twice is harmless: the same handle comes back, and nested ``with`` blocks
    unpatch only when the outermost one ends. ``unpatch_diffusers()`` restores every binding at
    once.

    >>> import detnoise
    >>> with detnoise.patch_diffusers() as patch:   # doctest: +SKIP
    ...     image = pipe(generator=torch.Generator("cuda").manual_seed(0)).images[0]
    """
    global _patch
    with _patch_lock:
        if _patch is not None:
            _patch.holders += 1
            return _patch
        torch_utils = _torch_utils()
        original = torch_utils.randn_tensor
        parameters = tuple(inspect.signature(original).parameters)
        if parameters != _EXPECTED_PARAMETERS:
            raise RuntimeError(
                f"diffusers.utils.torch_utils.randn_tensor has parameters {parameters}; detnoise expects "
                f"{_EXPECTED_PARAMETERS} (diffusers 0.42.1): this diffusers version is not supported"
            )
        patch = DiffusersPatch(original=original)
        torch_utils.randn_tensor = randn_tensor
        patch.rebound.append(torch_utils.__name__)
        for name, module in _diffusers_modules():
            if module is not torch_utils and getattr(module, "randn_tensor", None) is original:
                module.randn_tensor = randn_tensor
                patch.rebound.append(name)
        _patch = patch
        return patch


def _release(patch: DiffusersPatch) -> None:
    """Leaving one ``with patch_diffusers()`` block: unpatches when no enclosing block remains."""
    with _patch_lock:
        if _patch is not patch:
            return
        patch.holders -= 1
        if patch.holders > 0:
            return
    unpatch_diffusers()


def unpatch_diffusers() -> None:
    """Restores diffusers' own ``randn_tensor`` in every module that holds detnoise's; idempotent."""
    global _patch
    with _patch_lock:
        if _patch is None:
            return
        for _, module in _diffusers_modules():
            if getattr(module, "randn_tensor", None) is randn_tensor:
                module.randn_tensor = _patch.original
        _patch.active = False
        _patch = None


def is_patched() -> bool:
    return _patch is not None


# ---- what the patch covers ------------------------------------------------------------------

_TORCH_DRAW = re.compile(
    r"\b(?:torch\.(?:randn|rand|randint|randperm|multinomial|randn_like|rand_like|randint_like|normal|bernoulli|poisson)"
    r"|\.(?:normal_|uniform_|random_|exponential_|bernoulli_|geometric_|cauchy_|log_normal_))\("
)
_SDE = re.compile(r"\btorchsde\.")
# Weight initialisation draws at construction time; loaded weights replace them, so they are not noise.
_INITIALISATION = re.compile(r"nn\.Parameter\(|nn\.init\.|init\.(?:normal_|uniform_)")


@dataclass
class Finding:
    module: str
    line: int
    code: str
    uses_generator: bool


@dataclass
class PatchReport:
    """Which loaded diffusers modules draw noise through ``randn_tensor`` (covered) and which draw
    randomness some other way (not covered by detnoise)."""

    patched: bool
    covered: list[str]
    still_original: list[str]
    findings: list[Finding]

    def lines(self) -> list[str]:
        out = [f"patch active: {'yes' if self.patched else 'no'}",
               f"modules drawing through randn_tensor ({'detnoise' if self.patched else 'diffusers'}): {len(self.covered)}"]
        if self.still_original:
            out.append(f"modules still bound to diffusers' randn_tensor: {', '.join(self.still_original)}")
        with_generator = [f for f in self.findings if f.uses_generator]
        global_rng = [f for f in self.findings if not f.uses_generator]
        out.append(f"direct torch draws with a generator (not detnoise noise): {len(with_generator)}")
        out += [f"  {f.module}:{f.line}: {f.code}" for f in with_generator]
        out.append(f"draws from torch's global RNG or torchsde (not detnoise noise): {len(global_rng)}")
        out += [f"  {f.module}:{f.line}: {f.code}" for f in global_rng]
        return out


def patch_report() -> PatchReport:
    """Scans the loaded diffusers modules: what is patched, and what still draws elsewhere."""
    covered, still_original, findings = [], [], []
    original = _patch.original if _patch is not None else getattr(_torch_utils(), "randn_tensor", None)
    for name, module in sorted(_diffusers_modules()):
        bound = getattr(module, "randn_tensor", None)
        if bound is randn_tensor or (bound is original and _patch is None):
            covered.append(name)
        elif bound is original and _patch is not None:
            still_original.append(name)
        findings += _scan_module(name, module)
    return PatchReport(_patch is not None, covered, still_original, findings)


def _call_arguments(text: str, open_paren: int) -> str:
    """The text between the parenthesis at ``open_paren`` and its match (or to the end)."""
    depth = 0
    for index in range(open_paren, len(text)):
        depth += {"(": 1, ")": -1}.get(text[index], 0)
        if depth == 0:
            return text[open_paren + 1 : index]
    return text[open_paren + 1 :]


def _scan_module(name: str, module: ModuleType) -> list[Finding]:
    try:
        lines, _ = inspect.getsourcelines(module)
    except (OSError, TypeError):
        return []
    skip = range(0)
    if name == "diffusers.utils.torch_utils":  # the original randn_tensor itself is what gets replaced
        original = _patch.original if _patch is not None else getattr(module, "randn_tensor", None)
        with contextlib.suppress(OSError, TypeError):
            body, first = inspect.getsourcelines(original)
            skip = range(first, first + len(body))
    findings = []
    for number, text in enumerate(lines, start=1):
        stripped = text.strip()
        if number in skip or stripped.startswith("#") or _INITIALISATION.search(text):
            continue
        match = _TORCH_DRAW.search(text) or _SDE.search(text)
        if not match:
            continue
        window = "".join(lines[number - 1 : number + 8])
        arguments = _call_arguments(window, window.find("(", match.start())) if _TORCH_DRAW.search(text) else ""
        findings.append(Finding(name, number, stripped[:120], "generator" in arguments))
    return findings
