"""diffusers integration: a drop-in ``randn_tensor`` and ``patch_diffusers()``.

``randn_tensor`` has the parameters and behaviour of ``diffusers.utils.torch_utils.randn_tensor``
(diffusers 0.42.1), except that the noise is computed directly on ``device`` and its values do not
depend on the device. ``patch_diffusers()`` puts it in place of the original in every loaded
diffusers module (and in ``torch_utils``, where modules imported later find it).

Plain ``torch.Generator`` objects work too (see :func:`randn_tensor`): their detnoise position is
a function of their torch state (Note [Torch generator positions] in ``detnoise._resolve``).
"""

from __future__ import annotations

import ast
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

from detnoise import _compile, _layout, _native, _resolve, torch_patch
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


_randn_tensor_eagerly = _compile.disable(randn_tensor)


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
    """Makes every draw of a diffusers pipeline call a detnoise draw; returns a handle (a context manager).

    Replaces ``diffusers.utils.torch_utils.randn_tensor`` first, so modules imported later pick up
    detnoise's, then rebinds ``randn_tensor`` in every loaded diffusers module that holds the
    original. It also turns on the generator level of the torch patch (``detnoise.torch_patch``):
    torch's samplers called with a ``generator`` give detnoise values wherever they are called
    (user code and diffusers share generator objects, e.g. the mask-latents skip
    ``torch.randn(shape, generator=g)``), and global-RNG draws made by diffusers code (pipelines,
    scheduler steps; not weight initialisers) draw from ``torch.default_generator`` through
    detnoise. Code outside diffusers keeps torch's global RNG unless ``patch_torch()`` is on. Patching twice is harmless: the same handle comes back, and nested ``with`` blocks
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
        torch_patch.acquire_generator_patch()
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
        torch_patch.release_generator_patch()


def is_patched() -> bool:
    return _patch is not None


# ---- what the patch covers ------------------------------------------------------------------

# Draw calls detnoise covers while patched (torch.X or tensor.X), and those it does not.
_COVERED_FUNCTIONS = frozenset(name for name in torch_patch.PATCHED if not name.startswith("Tensor."))
_COVERED_METHODS = frozenset(name[len("Tensor."):] for name in torch_patch.PATCHED if name.startswith("Tensor."))
_OTHER_FUNCTIONS = frozenset(("poisson", "binomial", "_standard_gamma", "_sample_dirichlet"))
_NOT_DRAWS = frozenset(("seed", "manual_seed", "get_state", "set_state", "getstate", "setstate", "RandomState", "default_rng",
                        "Generator", "fork_rng", "Random"))
_OTHER_METHODS = frozenset(("geometric_", "cauchy_", "log_normal_"))
# Calls whose arguments become a module's weights: a draw whose value reaches one initialises weights.
_WEIGHT_SINKS = frozenset(("Parameter", "register_buffer", "register_parameter"))
# Tensors an in-place draw (x.normal_()) initialises: a module's weight, bias, embedding or their .data.
_WEIGHT_RECEIVER = re.compile(r"(weight|bias|embedding)|\.data$")


@dataclass
class Finding:
    """One draw call in a diffusers module's source, and what draws it when patched."""

    module: str
    line: int
    code: str
    uses_generator: bool
    function: str = ""  # the enclosing function ("" at module level)
    status: str = "not covered"  # "covered", "initialiser" (left alone) or "not covered"


@dataclass
class PatchReport:
    """Which loaded diffusers modules draw noise through ``randn_tensor`` (covered), which draws
    detnoise covers, which it leaves alone (weight initialisers) and which remain."""

    patched: bool
    covered: list[str]
    still_original: list[str]
    findings: list[Finding]

    @property
    def uncovered(self) -> list[Finding]:
        return [f for f in self.findings if f.status == "not covered"]

    def lines(self) -> list[str]:
        out = [f"patch active: {'yes' if self.patched else 'no'}",
               f"modules drawing through randn_tensor ({'detnoise' if self.patched else 'diffusers'}): {len(self.covered)}"]
        if self.still_original:
            out.append(f"modules still bound to diffusers' randn_tensor: {', '.join(self.still_original)}")
        covered = [f for f in self.findings if f.status == "covered"]
        with_generator = [f for f in covered if f.uses_generator]
        out.append(f"direct torch draws covered by detnoise: {len(covered)} "
                   f"({len(with_generator)} with a generator, {len(covered) - len(with_generator)} from the global RNG)")
        out += [f"  {f.module}:{f.line}: {f.code}" for f in covered]
        initialisers = [f for f in self.findings if f.status == "initialiser"]
        out.append(f"weight initialisers, left to torch's RNG (loaded weights replace them): {len(initialisers)}")
        out += [f"  {f.module}:{f.line} ({f.function}): {f.code}"
                + (" [still drawn by detnoise while patched: the patch tells initialisers by their function's name]"
                   if self.patched and _patched_anyway(f) else "") for f in initialisers]
        uncovered = self.uncovered
        out.append(f"draws not covered by detnoise: {len(uncovered)}")
        out += [f"  {f.module}:{f.line}: {f.code}" for f in uncovered]
        return out


def _patched_anyway(finding: Finding) -> bool:
    """Whether a weight initialiser's global-RNG draw is still drawn by detnoise under the patch,
    which leaves a diffusers draw to torch only inside functions named like initialisers."""
    return not finding.uses_generator and not torch_patch.is_initialiser(finding.function or "<module>")


def load_diffusers_modules(packages: Sequence[str]) -> None:
    """Imports every module under ``packages`` that imports here (optional dependencies of single
    pipelines may be missing; those modules are skipped)."""
    import importlib
    import pkgutil

    for package_name in packages:
        package = importlib.import_module(package_name)
        for module in pkgutil.walk_packages(package.__path__, package_name + "."):
            try:
                importlib.import_module(module.name)
            except Exception:  # noqa: BLE001 - a pipeline's optional dependency is missing
                continue


def patch_report(all: bool = False) -> PatchReport:  # noqa: A002 - the CLI flag's name
    """Scans the loaded diffusers modules: what is patched, what detnoise covers, what remains.

    With ``all=True`` the draw scan reads the source of every module of the installed diffusers
    (imported or not, optional dependencies or not), so it covers the whole package.
    """
    covered, still_original, findings = [], [], []
    original = _patch.original if _patch is not None else getattr(_torch_utils(), "randn_tensor", None)
    for name, module in sorted(_diffusers_modules()):
        bound = getattr(module, "randn_tensor", None)
        if bound is randn_tensor or (bound is original and _patch is None):
            covered.append(name)
        elif bound is original and _patch is not None:
            still_original.append(name)
        if not all:
            findings += _scan_module(name, module, _patch is not None)
    if all:
        findings = [finding for name, path in _diffusers_sources() for finding in _scan_file(name, path, _patch is not None)]
    return PatchReport(_patch is not None, covered, still_original, findings)


def _diffusers_sources() -> list[tuple[str, str]]:
    """(module name, file path) of every Python file of the installed diffusers."""
    import os

    import diffusers

    root = os.path.dirname(diffusers.__file__)
    sources = []
    for folder, _, files in os.walk(root):
        for file in sorted(files):
            if file.endswith(".py"):
                relative = os.path.relpath(os.path.join(folder, file), os.path.dirname(root))[:-3]
                name = relative.replace(os.sep, ".").removesuffix(".__init__")
                sources.append((name, os.path.join(folder, file)))
    return sorted(sources)


def _scan_file(name: str, path: str, patched: bool) -> list[Finding]:
    with open(path, encoding="utf-8") as file:
        source = file.read()
    skip = range(0)
    if name == "diffusers.utils.torch_utils":  # the original randn_tensor itself is what gets replaced
        tree = ast.parse(source)
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name == "randn_tensor":
                skip = range(node.lineno, (node.end_lineno or node.lineno) + 1)
    return _scan_source(name, source, patched, skip)


def _draw_name(call: ast.Call) -> tuple[str, bool] | None:
    """(name, is_method) of a draw call: torch.X(...) / torch.Tensor.X / x.X_(...), torchsde.X,
    np.random.X, random.X; None for anything else."""
    func = call.func
    if not isinstance(func, ast.Attribute):
        return None
    owner = func.value
    if isinstance(owner, ast.Name) and owner.id == "torch":
        if func.attr in _COVERED_FUNCTIONS or func.attr in _OTHER_FUNCTIONS:
            return func.attr, False
        return None
    if isinstance(owner, ast.Name) and owner.id in ("torchsde", "random") and func.attr not in _NOT_DRAWS:
        return f"{owner.id}.{func.attr}", False
    if isinstance(owner, ast.Attribute) and owner.attr == "random" and isinstance(owner.value, ast.Name) \
            and owner.value.id in ("np", "numpy") and func.attr not in _NOT_DRAWS:
        return f"numpy.random.{func.attr}", False
    if func.attr in _COVERED_METHODS or func.attr in _OTHER_METHODS:
        if isinstance(owner, ast.Attribute) and owner.attr == "init":  # nn.init.normal_(...)
            return f"init.{func.attr}", False
        return func.attr, True
    return None


def _passes_generator(call: ast.Call) -> bool:
    return any(keyword.arg == "generator" and not (isinstance(keyword.value, ast.Constant) and keyword.value.value is None)
               for keyword in call.keywords)


def _status(name: str, is_method: bool, becomes_weight: bool, patched: bool) -> str:
    """A draw's status from what it does: one that initialises weights is left to torch's RNG
    (loaded weights replace it); any other draw is noise, covered where the patch covers its kind."""
    if name.startswith("init.") or becomes_weight:
        return "initialiser"
    covered_kind = (name in _COVERED_METHODS) if is_method else (name in _COVERED_FUNCTIONS)
    if covered_kind and patched:
        return "covered"
    return "not covered"


def _call_name(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def _names_in(node: ast.AST) -> set[str]:
    return {child.id for child in ast.walk(node) if isinstance(child, ast.Name)}


def _assigned_names(statement: ast.AST) -> set[str]:
    targets = statement.targets if isinstance(statement, ast.Assign) else \
        [statement.target] if isinstance(statement, (ast.AnnAssign, ast.AugAssign)) else []
    return {name.id for target in targets for name in ast.walk(target) if isinstance(name, ast.Name)}


def _becomes_weight(draw: ast.Call, scope: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """Whether a draw's value ends up in a module's weights: drawn in place into a weight
    (``self.embedding.weight.data.uniform_(...)``), inside ``nn.Parameter(...)`` or ``register_buffer(...)``,
    or assigned to a local name that reaches one of those later in the same function
    (``A = torch.zeros(n).uniform_(0, 16)`` ... ``nn.Parameter(torch.log(A))``). Where the draw sits
    (``__init__`` or a sampling step) does not decide it: ``seed = torch.randint(...)`` in a Brownian
    tree's ``__init__`` is noise, ``nn.Parameter(torch.randn(...))`` in any method is a weight."""
    func = draw.func
    if isinstance(func, ast.Attribute) and func.attr.endswith("_") and _WEIGHT_RECEIVER.search(ast.unparse(func.value)):
        return True
    node: ast.AST = draw
    while node in parents and not isinstance(node, ast.stmt):
        node = parents[node]
        if isinstance(node, ast.Call) and _call_name(node) in _WEIGHT_SINKS:
            return True
    carriers = _assigned_names(node)
    if not carriers:
        return False
    later = sorted((child for child in ast.walk(scope)
                    if getattr(child, "lineno", 0) > getattr(node, "end_lineno", node.lineno)
                    and (isinstance(child, (ast.Assign, ast.AnnAssign, ast.AugAssign))
                         or (isinstance(child, ast.Call) and _call_name(child) in _WEIGHT_SINKS))),
                   key=lambda child: (child.lineno, child.col_offset))
    for child in later:  # forward data flow through local names, in source order
        if isinstance(child, ast.Call):
            if _names_in(child) & carriers:
                return True
        elif child.value is not None and _names_in(child.value) & carriers:
            carriers |= _assigned_names(child)
    return False


def _scan_module(name: str, module: ModuleType, patched: bool = False) -> list[Finding]:
    try:
        source = inspect.getsource(module)
    except (OSError, TypeError):
        return []
    skip = range(0)
    if name == "diffusers.utils.torch_utils":  # the original randn_tensor itself is what gets replaced
        original = _patch.original if _patch is not None else getattr(module, "randn_tensor", None)
        with contextlib.suppress(OSError, TypeError):
            body, first = inspect.getsourcelines(original)
            skip = range(first, first + len(body))
    return _scan_source(name, source, patched, skip)


def _brownian_drop_in(module_name: str) -> bool:
    """Whether patch_diffusers() puts detnoise's Brownian tree into this module (the SDE scheduler's,
    where torchsde is installed: brownian.patch_scheduler)."""
    import importlib.util

    from detnoise import brownian

    return module_name == brownian._SDE_MODULE and importlib.util.find_spec("torchsde") is not None


def _scan_source(name: str, source: str, patched: bool, skip: range) -> list[Finding]:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    lines = source.splitlines()
    findings: list[Finding] = []
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}

    def visit(node: ast.AST, function: str, scope: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            is_function = isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            inner, inner_scope = (child.name, child) if is_function else (function, scope)
            if isinstance(child, ast.Call) and child.lineno not in skip:
                found = _draw_name(child)
                if found is not None:
                    draw, is_method = found
                    uses_generator = _passes_generator(child)
                    status = _status(draw, is_method, _becomes_weight(child, scope, parents), patched)
                    if draw.startswith("torchsde.") and patched and _brownian_drop_in(name):
                        status = "covered"  # the class that calls torchsde is replaced by detnoise.BatchedBrownianTree
                    findings.append(Finding(name, child.lineno, lines[child.lineno - 1].strip()[:120], uses_generator,
                                            function, status))
            visit(child, inner, inner_scope)

    visit(tree, "", tree)
    findings.sort(key=lambda finding: finding.line)
    return findings
