"""The ``detnoise`` command: build info, fingerprints users can compare, a CPU/CUDA check."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence

import torch

import detnoise
from detnoise.fingerprint import fingerprint

_DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16, "bfloat16": torch.bfloat16}
_KINDS = ("randn", "rand", "bits")


def _shape(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(part) for part in text.replace("x", ",").split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"shape must be comma-separated ints like 1,4,128,128, got {text!r}") from None
    if any(dim < 0 for dim in dims):
        raise argparse.ArgumentTypeError(f"shape dimensions must be >= 0, got {text!r}")
    return dims


def _draw(kind: str, shape: tuple[int, ...], dtype: torch.dtype, device: str, seed: int, stream: int, offset: int) -> torch.Tensor:
    where = {"seed": seed, "stream": stream, "offset": offset, "device": device}
    if kind == "bits":
        return detnoise.bits(shape, **where)
    function = detnoise.normal if kind == "randn" else detnoise.uniform
    return function(shape, dtype=dtype, **where)


def _cuda_usable() -> bool:
    return detnoise.built_with_cuda() and torch.cuda.is_available()


def _command_fingerprint(args: argparse.Namespace) -> int:
    dtype_name = "uint32" if args.kind == "bits" else args.dtype
    values = _draw(args.kind, args.shape, _DTYPES.get(args.dtype, torch.float32), args.device, args.seed, args.stream, args.offset)
    record = {
        "sha256": fingerprint(values),
        "spec": f"detnoise-v{detnoise.SPEC_VERSION}",
        "kind": args.kind,
        "dtype": dtype_name,
        "shape": list(args.shape),
        "seed": args.seed % 2**64,
        "stream": args.stream % 2**64,
        "offset": args.offset,
        "device": str(values.device),
    }
    if args.json:
        print(json.dumps(record))
    else:
        shape = "x".join(map(str, args.shape)) or "scalar"
        print(
            f"{record['sha256']}  {record['spec']} {args.kind} {dtype_name} shape={shape} seed={record['seed']} "
            f"stream={record['stream']} offset={args.offset} device={record['device']}"
        )
    return 0


def _command_check(args: argparse.Namespace) -> int:
    """Draws on the CPU and, where possible, on CUDA, and compares the bits."""
    shapes = [(1, 4, 128, 128), (16, 4, 64, 64), (4097,)]
    print(f"detnoise {detnoise.__version__}, stream v{detnoise.SPEC_VERSION}, torch {torch.__version__}")
    info = detnoise.build_info()
    print(f"build: cpu kernels yes, cuda kernels {'yes' if info['cuda_built'] else 'no'}, "
          f"cuda devices {info['cuda_devices']}{' (' + str(info['cuda_error']) + ')' if 'cuda_error' in info else ''}")
    print(f"{'draw':28} {'cpu sha256[:16]':18} {'cuda sha256[:16]':18} result")
    failures = 0
    for dtype_name, dtype in _DTYPES.items():
        for shape in shapes:
            cpu = detnoise.normal(shape, seed=args.seed, dtype=dtype)
            label = f"randn {dtype_name} {'x'.join(map(str, shape))}"
            cpu_print = fingerprint(cpu)
            if _cuda_usable():
                cuda_print = fingerprint(detnoise.normal(shape, seed=args.seed, dtype=dtype, device="cuda"))
                same = cuda_print == cpu_print
                failures += not same
                print(f"{label:28} {cpu_print[:16]:18} {cuda_print[:16]:18} {'identical' if same else 'MISMATCH'}")
            else:
                print(f"{label:28} {cpu_print[:16]:18} {'-':18} cpu only")
    if not _cuda_usable():
        print("no usable CUDA device: CPU/CUDA equality was not checked on this machine")
    return 1 if failures else 0


def _command_info(args: argparse.Namespace) -> int:
    info = detnoise.build_info()
    info.update({"version": detnoise.__version__, "spec": detnoise.SPEC_VERSION, "torch": torch.__version__,
                 "cpu_threads": detnoise.get_num_threads()})
    print(json.dumps(info, indent=1))
    return 0


def _command_default(args: argparse.Namespace) -> int:
    """What `detnoise` alone does: the check table, then one fingerprint and its timing."""
    status = _command_check(args)
    device = "cuda" if _cuda_usable() else "cpu"
    start = time.perf_counter()
    latent = detnoise.normal((1, 4, 128, 128), seed=args.seed, device=device)
    if device == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    print(f"SDXL latent 1x4x128x128 float32 seed={args.seed} on {device}: {fingerprint(latent)} ({elapsed * 1e3:.2f} ms)")
    print("compare this line between machines: the same seed gives the same fingerprint everywhere")
    return status


def _command_verify(args: argparse.Namespace) -> int:
    from detnoise import verify

    return verify.main(random_draws=args.draws, seed=args.check_seed)


def _command_demo(args: argparse.Namespace) -> int:
    from detnoise import demo

    return demo.main(args)


def _command_patch_report(args: argparse.Namespace) -> int:
    import importlib
    import pkgutil

    try:
        import diffusers
    except ImportError:
        print("detnoise patch-report needs diffusers: pip install 'detnoise[diffusers]'", file=sys.stderr)
        return 2
    packages = ["diffusers.schedulers", "diffusers.pipelines", "diffusers.models"] if args.all else ["diffusers.schedulers"]
    for package_name in packages:
        package = importlib.import_module(package_name)
        for module in pkgutil.walk_packages(package.__path__, package_name + "."):
            try:
                importlib.import_module(module.name)
            except Exception:  # noqa: BLE001 - optional dependencies of single pipelines
                continue
    patch = detnoise.patch_diffusers()
    try:
        print(f"diffusers {diffusers.__version__}; modules loaded from {', '.join(packages)}")
        print("\n".join(detnoise.patch_report().lines()))
    finally:
        patch.unpatch()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="detnoise", description="Deterministic noise, bit-identical on CPU and CUDA.")
    parser.add_argument("--seed", type=int, default=0, help="seed for the default check (default 0)")
    parser.set_defaults(handler=_command_default)
    commands = parser.add_subparsers(title="commands")

    fp = commands.add_parser("fingerprint", help="print the SHA-256 of a draw's bytes")
    fp.add_argument("--seed", type=int, required=True)
    fp.add_argument("--shape", type=_shape, required=True, help="e.g. 1,4,128,128")
    fp.add_argument("--dtype", choices=sorted(_DTYPES), default="float32")
    fp.add_argument("--device", default="cpu")
    fp.add_argument("--stream", type=int, default=0)
    fp.add_argument("--offset", type=int, default=0, help="first block of the draw")
    fp.add_argument("--kind", choices=_KINDS, default="randn")
    fp.add_argument("--json", action="store_true", help="one JSON object instead of a line")
    fp.set_defaults(handler=_command_fingerprint)

    check = commands.add_parser("check", help="compare CPU and CUDA draws (CPU only without a GPU)")
    check.add_argument("--seed", type=int, default=0)
    check.set_defaults(handler=_command_check)

    verify = commands.add_parser("verify", help="self-check this install against the spec (seconds)")
    verify.add_argument("--draws", type=int, default=36, help="random draws to compare with the reference")
    verify.add_argument("--check-seed", type=int, default=None, help="fix the random draws (default: fresh)")
    verify.set_defaults(handler=_command_verify)

    demo = commands.add_parser("demo", help="run a diffusers pipeline with detnoise noise (offline) and show the proofs")
    demo.add_argument("--model", default=None, help="a local diffusers model directory (default: a small pipeline built offline)")
    demo.add_argument("--prompt", default=None, help="prompt, for text-to-image models given with --model")
    demo.add_argument("--images", type=int, default=4)
    demo.add_argument("--seed", type=int, default=0, help="first seed; image i uses seed + i")
    demo.add_argument("--steps", type=int, default=25)
    demo.add_argument("--device", default=None, help="default: cuda if usable, else cpu")
    demo.add_argument("--out", default="detnoise_demo.png", help="PNG figure to write")
    demo.add_argument("--figure", choices=["auto", "matplotlib", "pillow"], default="auto",
                      help="how to draw the figure (auto: matplotlib when installed)")
    demo.add_argument("--no-timing", action="store_true", help="skip the noise timings")
    demo.set_defaults(handler=_command_demo)

    report = commands.add_parser("patch-report", help="what patch_diffusers covers, and what still draws elsewhere")
    report.add_argument("--all", action="store_true", help="load every diffusers pipeline and model module too (slow)")
    report.set_defaults(handler=_command_patch_report)

    info = commands.add_parser("info", help="what was built and what can run here, as JSON")
    info.set_defaults(handler=_command_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except (ValueError, TypeError, RuntimeError) as error:
        print(f"detnoise: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
