"""diffusers integration: a drop-in ``randn_tensor`` and ``patch_diffusers()``.

``randn_tensor`` has the parameters and behaviour of ``diffusers.utils.torch_utils.randn_tensor``
(diffusers 0.42.1), except that the noise is computed directly on ``device`` and its values do not
depend on the device. ``patch_diffusers()`` puts it in place of the original in every loaded
diffusers module (and in ``torch_utils``, where modules imported later find it).

Plain ``torch.Generator`` objects work too (see :func:`randn_tensor`): the key is their
``initial_seed()``, and detnoise remembers how far each generator's stream has been used.
"""

from __future__ import annotations

import contextlib
import inspect
import re
import sys
import threading
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Callable, Union

import torch

from detnoise import _layout, _native
from detnoise.functional import _parse_size
from detnoise.generator import Generator

GeneratorArg = Union[torch.Generator, Sequence[torch.Generator], None]

_EXPECTED_PARAMETERS = ("shape", "generator", "device", "dtype", "layout")

# ---- plain torch.Generator objects ------------------------------------------------------------
# Note [Adopted torch generators]
# A torch.Generator (or torch's default generator, for generator=None) is read as the detnoise
# stream (seed = initial_seed(), stream 0). Per generator we remember the next block and the torch
# state we left behind. After each draw we "nudge" the torch state (advance it by one small torch
# draw) so that a later manual_seed(s) - even with the same s - is visible as a return to the fresh
# state for s. On the next call:
#   state == the state we left        -> continue at the remembered block
#   state == fresh manual_seed(seed)   -> the user re-seeded: restart at block 0
#   anything else (torch drew from it) -> continue at the remembered block
#   initial_seed() changed, or unseen  -> start at block 0


@dataclass
class _AdoptedStream:
    seed: int
    next_block: int
    state_left: bytes
    fresh_state: bytes | None = None


_adopted: weakref.WeakKeyDictionary[torch.Generator, _AdoptedStream] = weakref.WeakKeyDictionary()
_adopted_lock = threading.Lock()


def _state_bytes(state: torch.Tensor) -> bytes:
    """A torch generator state as bytes: comparing bytes takes well under a microsecond, where
    torch.equal on a CPU generator's 5 KB state takes about 8 us (a small latent's whole draw)."""
    return state.numpy().tobytes()


def _fresh_state(generator: torch.Generator, seed: int) -> bytes:
    twin = torch.Generator(device=generator.device)
    twin.manual_seed(seed)
    return _state_bytes(twin.get_state())


_CPU = torch.device("cpu")
# Written by _nudge under _adopted_lock only. A plain CPU tensor whatever the import happened under
# (inference mode, torch.set_default_device): a meta tensor would not move the generator at all.
with torch.inference_mode(False):
    _nudge_target = torch.empty(1, dtype=torch.int64, device="cpu")


def _nudge(generator: torch.Generator) -> None:
    """Moves a torch generator's state on, the way one small torch draw would."""
    device_type = generator.device.type
    if device_type == "cpu":
        # The draw torch.randint(0, 2, (1,), generator=generator) makes (one 32-bit word), so torch's
        # own samplers see the same state as before this shortcut, without allocating (~1 us).
        _nudge_target.random_(0, 2, generator=generator)
        return
    state = generator.get_state()
    if device_type == "cuda" and state.numel() == 16:
        # CUDA Philox state: seed (8 bytes) then offset (8 bytes, a multiple of 4), little-endian.
        offset = int.from_bytes(bytes(state[8:16].tolist()), "little") + 4
        state[8:16] = torch.tensor(list(offset.to_bytes(8, "little")), dtype=torch.uint8)
        generator.set_state(state)
    else:
        torch.randint(0, 2, (1,), generator=generator, device=generator.device)


class _Reservation:
    """Blocks taken from one generator for one draw, with the means to give them back."""

    def __init__(self, generator: torch.Generator, blocks: int) -> None:
        self.generator = generator
        self.blocks = blocks
        if isinstance(generator, Generator):
            self._taken = generator._reserve(blocks)
            self.seed, self.stream, self.offset = self._taken.seed, self._taken.stream, self._taken.start
            return
        with _adopted_lock:
            seed = generator.initial_seed()
            state = generator.get_state()
            state_bytes = _state_bytes(state)
            record = _adopted.get(generator)
            fresh = None
            if record is None or record.seed != seed:
                offset = 0
            elif state_bytes == record.state_left:
                offset, fresh = record.next_block, record.fresh_state
            else:
                fresh = record.fresh_state if record.fresh_state is not None else _fresh_state(generator, seed)
                offset = 0 if state_bytes == fresh else record.next_block
            _layout.check_room(offset, blocks)
            _nudge(generator)
            self._made = _AdoptedStream(seed, offset + blocks, _state_bytes(generator.get_state()), fresh)
            self._undo = (record, state)
            _adopted[generator] = self._made
        self.seed, self.stream, self.offset = seed, 0, offset

    def undo(self) -> None:
        """Gives the blocks back, unless the generator was used or changed since they were taken."""
        if isinstance(self.generator, Generator):
            self.generator._unreserve(self._taken)
            return
        record, state = self._undo
        with _adopted_lock:
            untouched = _adopted.get(self.generator) is self._made and (
                _state_bytes(self.generator.get_state()) == self._made.state_left)
            if not untouched:
                return
            self.generator.set_state(state)
            if record is None:
                _adopted.pop(self.generator, None)
            else:
                _adopted[self.generator] = record


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
      the key is ``initial_seed()``, so CPU and CUDA generators with one seed give the same noise;
      consecutive calls continue the stream; ``manual_seed`` restarts it; torch drawing from the
      generator in between does not), a list or tuple of them (row ``i`` of the batch equals a
      single-row draw from ``generator[i]``; one kernel launch), or None (torch's default generator,
      so ``torch.manual_seed(s)`` makes scripts reproducible across devices).
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
        reservations: list[_Reservation] = []
        try:
            for item in generators:
                reservations.append(_Reservation(item, row_blocks))
            _native.launch_rows(_native.KIND_NORMAL, out, [(r.seed, r.stream, r.offset) for r in reservations])
        except BaseException:
            for reservation in reversed(reservations):
                reservation.undo()
            raise
    else:
        source = torch.default_generator if generators is None else generators
        reservation = _Reservation(source, _layout.blocks_for(out.numel(), dtype))
        try:
            _native.launch(_native.KIND_NORMAL, out, reservation.seed, reservation.stream, reservation.offset)
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
        from detnoise import brownian  # SDE schedulers' Brownian tree (issue 11)
        brownian.patch_scheduler()
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
        from detnoise import brownian
        brownian.unpatch_scheduler()
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
