"""Layer 3 of the torch patch: the rebinding. ``patch_torch()`` / ``unpatch_torch()`` put detnoise
behind torch's samplers.

While the patch is active, ``torch.randn``, ``rand``, ``randint``, ``randperm``, ``normal``,
``bernoulli``, ``multinomial``, the ``*_like`` forms and ``Tensor.normal_``, ``uniform_``,
``random_``, ``bernoulli_``, ``exponential_`` give detnoise values (docs/SPEC.md §4-§6 and §10),
with torch's signatures and generator/device/dtype/out semantics. Generators go through the
resolver (``detnoise._resolve``); ``generator=None`` means ``torch.default_generator``, so
``torch.manual_seed(s)`` makes a script reproducible on every device.

The three layers: the §10 kinds as functions of a generator's blocks (``detnoise._kinds``), torch's
sampler signatures over them (``detnoise._samplers``), and here the mechanism that rebinds torch's
names to those samplers and decides which calls are covered.

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

Under ``torch.compile`` a patched draw is a graph break (it runs eagerly). Dynamo decides how to
trace ``torch.randn`` from a table of torch's functions that it builds once, by name; built while
the patch is active, that table would hold the patch's functions as torch ops and put them in the
graph. :func:`_keep_dynamo_table_on_torch_functions` makes the table see torch's own functions
whenever it is built.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.abc
import importlib.machinery
import re
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from detnoise import _compile, _samplers
from detnoise._kinds import (  # noqa: F401  (the kinds' former home: names kept for callers)
    bernoulli_values,
    exponential_values,
    integer_values,
    multinomial_values,
    normal_values,
    permutation_values,
    scaled_words,
    uniform_values,
)

__all__ = ["TorchPatch", "patch_torch", "unpatch_torch", "is_torch_patched", "diffusers_scope", "PATCHED"]

_ORIGINAL: dict[str, Any] = {}  # name -> torch's own object, while the patch is installed
# Whether dynamo is tracing the call (it folds this to True there; in eager it is one call that
# returns False, where torch.compiler.is_compiling first calls torch.jit.is_scripting: every
# patched call pays this, cold after a large draw). Other tracing (non-strict export) runs the same
# code either way.
_is_compiling = getattr(torch.compiler, "is_dynamo_compiling", torch.compiler.is_compiling)


def _rebound(name: str, sampler: Callable[..., Any]) -> Callable[..., Any]:
    """What ``torch.<name>`` (or ``torch.Tensor.<name>``) becomes: calls not covered go to torch's
    original; covered ones to ``sampler(original, args, kwargs)`` (methods: ``sampler(original,
    self, args, kwargs)``). Under torch.compile the whole call runs eagerly (a graph break): taking
    blocks is a Python state update that dynamo cannot trace (the custom op of detnoise.ops serves
    the functional core only)."""

    def covered(*args: Any, **kwargs: Any) -> Any:
        original = _ORIGINAL[name]
        if not _covers(kwargs.get("generator")):
            return original(*args, **kwargs)
        if method:
            return sampler(original, args[0], args[1:], kwargs)
        return sampler(original, args, kwargs)

    # Made here, not while dynamo traces: torch 2.4's dynamo fails on the first compiled call
    # otherwise. Lazy: torch._dynamo is imported on the first compiled call, not by the patch.
    eager = _compile.disable(covered)
    method = name.startswith("Tensor.")

    # covered(), written out (and _covers' first test) in each: the fewer frames and objects a
    # patched call touches, the less it costs when a large draw has just flushed the CPU caches.
    def patched(*args: Any, **kwargs: Any) -> Any:
        if _is_compiling():
            return eager(*args, **kwargs)
        original = _ORIGINAL[name]
        if not _full_holders and not _covers(kwargs.get("generator")):
            return original(*args, **kwargs)
        return sampler(original, args, kwargs)

    def patched_method(self: Any, *args: Any, **kwargs: Any) -> Any:
        if _is_compiling():
            return eager(self, *args, **kwargs)
        original = _ORIGINAL[name]
        if not _full_holders and not _covers(kwargs.get("generator")):
            return original(self, *args, **kwargs)
        return sampler(original, self, args, kwargs)

    rebound = patched_method if method else patched
    attribute = name.rsplit(".", 1)[-1]
    rebound.__name__ = rebound.__qualname__ = attribute
    rebound.__doc__ = f"detnoise's ``{name}`` while the torch patch is active (see ``detnoise.torch_patch``)."
    return rebound


_SAMPLERS: dict[str, Callable[..., Any]] = {
    "randn": _samplers.randn,
    "rand": _samplers.rand,
    "randint": _samplers.randint,
    "randperm": _samplers.randperm,
    "normal": _samplers.normal,
    "bernoulli": _samplers.bernoulli,
    "multinomial": _samplers.multinomial,
    "randn_like": _samplers.randn_like,
    "rand_like": _samplers.rand_like,
    "randint_like": _samplers.randint_like,
    "Tensor.normal_": _samplers.tensor_normal_,
    "Tensor.uniform_": _samplers.tensor_uniform_,
    "Tensor.random_": _samplers.tensor_random_,
    "Tensor.bernoulli_": _samplers.tensor_bernoulli_,
    "Tensor.exponential_": _samplers.tensor_exponential_,
}
PATCHED: dict[str, Callable[..., Any]] = {name: _rebound(name, sampler) for name, sampler in _SAMPLERS.items()}
"""What the patch rebinds: names in ``torch`` and, with the ``Tensor.`` prefix, in ``torch.Tensor``."""
_MODULE_GLOBALS = globals()
_WRAPPER_NAMES = {id(function): name for name, function in PATCHED.items()}

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
_INITIALISER = re.compile(r"__init__|init_weights|initiali[sz]e|reset_parameters|_init\b|_init_|^init")


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


# ---- torch.compile: dynamo's table of torch functions holds torch's, not ours ----------------------

_TRACE_RULES = "torch._dynamo.trace_rules"


def _torch_function_for(value: Any) -> Any:
    """torch's own function for one of the patch's (while installed); anything else unchanged."""
    name = _WRAPPER_NAMES.get(id(value))
    if name is None or PATCHED[name] is not value:
        return value
    return _ORIGINAL.get(name, value)


def _redirect_load_object(trace_rules: Any) -> None:
    """Dynamo builds its table of torch functions (``get_torch_obj_rule_map``) once, reading each
    by name with ``load_object``; seen through this, a name the patch rebinds reads torch's own
    function, so the patch's functions stay user code to dynamo (inlined up to the graph break)."""
    load_object = getattr(trace_rules, "load_object", None)
    if load_object is None or getattr(load_object, "_detnoise_sees_torch", False):
        return

    @functools.wraps(load_object)
    def load_torch_object(name: str) -> Any:
        return _torch_function_for(load_object(name))

    load_torch_object._detnoise_sees_torch = True  # type: ignore[attr-defined]
    trace_rules.load_object = load_torch_object


class _TraceRulesFinder(importlib.abc.MetaPathFinder):
    """Redirects ``load_object`` as soon as dynamo's trace_rules module is imported (importing it
    at patch time would cost about a second: dynamo stays unimported until something compiles)."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != _TRACE_RULES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        exec_module = loader.exec_module

        def exec_and_redirect(module: Any) -> None:
            exec_module(module)
            _redirect_load_object(module)
            with contextlib.suppress(ValueError):  # done: later imports need not ask this finder
                sys.meta_path.remove(self)

        loader.exec_module = exec_and_redirect
        return spec


_TRACE_RULES_FINDER = _TraceRulesFinder()


def _keep_dynamo_table_on_torch_functions() -> None:
    module = sys.modules.get(_TRACE_RULES)
    if module is not None:
        _redirect_load_object(module)
    elif _TRACE_RULES_FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _TRACE_RULES_FINDER)


# ---- installing and releasing -----------------------------------------------------------------------


def _install_locked() -> None:
    if _ORIGINAL:
        return
    _keep_dynamo_table_on_torch_functions()
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
