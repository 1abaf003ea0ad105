"""`import detnoise` costs about what `import torch` costs (issue 13): nothing heavy is imported
until it is used, and the lazy torch.compiler.disable wrappers still graph-break under torch.compile."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

import detnoise

# Imported only when used: torch.compile's machinery and the diffusers stack (each costs seconds).
HEAVY = ("torch._dynamo", "torch._inductor", "diffusers", "transformers", "triton")


def _import_profile(statement: str) -> tuple[dict[str, float], str]:
    """Runs ``statement`` in a fresh interpreter under ``-X importtime``: {module: cumulative s}, stdout."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", statement], capture_output=True, text=True, timeout=300, check=True
    )
    cumulative: dict[str, float] = {}
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            _, total, name = line.split("|")
            if total.strip().isdigit():
                cumulative[name.strip()] = int(total) / 1e6
    return cumulative, done.stdout


def _cpu_seconds(statement: str) -> float:
    """User + system CPU time of a fresh interpreter running ``statement``: unlike wall time, it
    barely moves when other processes share the cores."""
    process = subprocess.Popen([sys.executable, "-c", statement])
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped here: tell Popen
    assert process.returncode == 0, statement
    return usage.ru_utime + usage.ru_stime


def _heavy(modules: set[str] | dict[str, float]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


def test_import_loads_nothing_heavy() -> None:
    torch_alone, _ = _import_profile("import torch")
    check = (
        "import sys, torch, detnoise; "
        "print(torch.cuda.is_initialized()); "
        "print(any('libcuda.so' in line for line in open('/proc/self/maps')))"
    )
    with_detnoise, out = _import_profile(check)
    extra = set(with_detnoise) - set(torch_alone)
    assert _heavy(extra) == [], f"import detnoise pulled in {_heavy(extra)[:8]}"
    # CUDA stays untouched: no context, no driver library (the extension links the runtime statically).
    assert out.split() == ["False", "False"], out


def test_eager_draws_stay_light() -> None:
    """Using the eager API does not load torch.compile's machinery either (the wrappers are lazy)."""
    _, out = _import_profile(
        "import sys, detnoise; g = detnoise.Generator(seed=1); detnoise.randn(3, generator=g); "
        "detnoise.randn_slice((4, 4), (slice(1, 3),), generator=g); detnoise.randn_tensor((2, 3)); "
        "print(sorted(sys.modules))"
    )
    loaded = eval(out)  # noqa: S307 - our own subprocess's repr of a list of str
    assert _heavy(loaded) == [], _heavy(loaded)[:8]


def test_import_time_close_to_torch() -> None:
    """Issue 13 asks for <= 0.3 s over `import torch`; a loaded CI machine gets a generous margin.

    The import-time profile measures both in one process (torch's share of `import detnoise` versus the
    rest), and the CPU time of separate `import torch` and `import detnoise` processes checks the same
    from outside. The regression this guards (torch._dynamo at import) cost about 0.9x torch's own
    import in CPU time and 1.4x in the profile."""
    profile, _ = _import_profile("import detnoise")
    own = profile["detnoise"] - profile["torch"]
    assert own <= max(0.3, 0.5 * profile["torch"]), f"detnoise's own import: {own:.2f} s; torch's: {profile['torch']:.2f} s"
    torch_s = min(_cpu_seconds("import torch") for _ in range(2))
    detnoise_s = min(_cpu_seconds("import detnoise") for _ in range(2))
    assert detnoise_s - torch_s <= max(0.3, 0.5 * torch_s), f"CPU s: import torch {torch_s:.2f}, import detnoise {detnoise_s:.2f}"


# ---- the lazy torch.compiler.disable wrappers (detnoise._compile) keep their compile behaviour ----


@pytest.fixture()
def fresh_dynamo():
    import torch._dynamo

    torch._dynamo.reset()
    yield torch._dynamo
    torch._dynamo.reset()


def _slice_draw(x: torch.Tensor, g: detnoise.Generator) -> torch.Tensor:
    return x + detnoise.randn_slice((4, 6), (slice(1, 3), slice(None)), generator=g)


def _randn_tensor_draw(x: torch.Tensor, g: detnoise.Generator) -> torch.Tensor:
    return x + detnoise.randn_tensor((2, 6), generator=g)


def _randn_draw(x: torch.Tensor, g: detnoise.Generator) -> torch.Tensor:
    return x + detnoise.randn((2, 6), generator=g)


@pytest.mark.parametrize("draw", [_randn_draw, _slice_draw, _randn_tensor_draw])
def test_stateful_draws_graph_break_and_match_eager(fresh_dynamo, draw) -> None:
    x = torch.zeros(2, 6)
    with pytest.raises(fresh_dynamo.exc.Unsupported, match="disable"):
        torch.compile(draw, fullgraph=True, backend="eager")(x, detnoise.Generator(seed=3))
    g_compiled, g_eager = detnoise.Generator(seed=3), detnoise.Generator(seed=3)
    compiled = torch.compile(draw, backend="eager")
    for _ in range(2):
        assert torch.equal(compiled(x, g_compiled), draw(x, g_eager))
    assert g_compiled.offset == g_eager.offset > 0


# ---- the custom op registers on every admitted torch (issue 12) ----


def test_draw_op_schema_matches_its_signature() -> None:
    """ops.py spells the schema out because torch < 2.5 cannot infer one from string annotations;
    where torch can infer it, the inference from draw's signature must give the same schema."""
    from detnoise import ops

    assert str(torch.ops.detnoise.draw.default._schema) == "detnoise::draw" + ops._DRAW_SCHEMA
    infer_schema = getattr(torch.library, "infer_schema", None)
    if infer_schema is None:
        pytest.skip(f"torch {torch.__version__} has no torch.library.infer_schema (added in 2.5)")
    assert infer_schema(ops.draw._init_fn, mutates_args=()) == ops._DRAW_SCHEMA
