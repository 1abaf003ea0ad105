"""``torch.compiler.disable`` without its import cost.

``torch.compiler.disable(fn)`` imports ``torch._dynamo`` on the spot, which costs about 2 s: calling it
at module level made ``import detnoise`` that much slower than ``import torch``. :func:`disable`
returns torch's own lazy variant instead (``torch._disable_dynamo``, which torch uses on its optimizer
and hook methods for the same reason): ``torch._dynamo`` is imported on the first call, which under
``torch.compile`` has already happened. Dynamo never traces into that wrapper (it lives in a module
dynamo skips), so a compiled caller graph-breaks at the call, fails under ``fullgraph=True``, and the
wrapped function runs with dynamo off: the behaviour of ``torch.compiler.disable(fn)``. The wrapper
carries the mark that ``torch.compiler.disable`` sets, so dynamo's graph-break message is also the same.
"""

from __future__ import annotations

from typing import Callable, TypeVar

import torch

_F = TypeVar("_F", bound=Callable[..., object])


def disable(fn: _F) -> _F:
    """``torch.compiler.disable(fn)``, with ``torch._dynamo`` imported at the first call, not now."""
    lazy = getattr(torch, "_disable_dynamo", None)
    if lazy is None:  # a torch without the lazy variant: pay the import now rather than change behaviour
        return torch.compiler.disable(fn)
    wrapper = lazy(fn)
    wrapper._torchdynamo_disable = True  # dynamo reports "Skip calling `torch.compiler.disable()`d function"
    return wrapper
