"""The ``detnoise`` command: build info, fingerprints users can compare, a CPU/CUDA check."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import NoReturn

import torch

import detnoise
from detnoise import cuda_diagnosis
from detnoise.determinism import determinism_rows
from detnoise.fingerprint import fingerprint
from detnoise.timing import measure

_DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16, "bfloat16": torch.bfloat16}
_KINDS = ("randn", "rand", "bits")
# Commands whose --seed may also be given before the command name (`detnoise --seed 5 check`).
_SEEDED_COMMANDS = ("default", "fingerprint", "check", "verify", "demo", "sde")


class CommandError(ValueError):
    """A command line that cannot mean anything (a flag that does not apply, a missing extra)."""


class UsageError(CommandError):
    """What argparse itself refuses (an unknown flag, a value out of range), with the command's help."""

    def __init__(self, message: str, prog: str) -> None:
        super().__init__(message)
        self.help_hint = f"`{prog} --help` lists the options and their defaults"


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors take the CLI's one error path (main's), not a usage dump and exit."""

    def error(self, message: str) -> NoReturn:  # type: ignore[override]
        raise UsageError(message, self.prog)


# The one range of --seed, --stream and --offset: the values the CLI draws with and prints.
_U64_LIMIT = 2**64


def _u64(text: str) -> int:
    """A seed, stream or offset: an int in [0, 2**64). The Python API also takes negative seeds and
    streams modulo 2**64 (as torch.manual_seed does); the command line takes only the value it prints."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer in [0, 2**64), got {text!r}") from None
    if not 0 <= value < _U64_LIMIT:
        hint = " (the Python API reads a negative seed or stream modulo 2**64; write that value here)" if value < 0 else ""
        raise argparse.ArgumentTypeError(f"must be in [0, 2**64), got {value}{hint}")
    return value


def _at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an int >= minimum."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


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
    if args.kind == "bits" and args.dtype is not None:
        raise CommandError(f"--dtype does not apply to --kind bits (raw uint32 Philox words); drop --dtype {args.dtype}")
    dtype_name = "uint32" if args.kind == "bits" else (args.dtype or "float32")
    values = _draw(args.kind, args.shape, _DTYPES[dtype_name] if dtype_name in _DTYPES else torch.float32,
                   args.device, args.seed, args.stream, args.offset)
    record = {
        "sha256": fingerprint(values),
        "spec": f"detnoise-v{detnoise.SPEC_VERSION}",
        "kind": args.kind,
        "dtype": dtype_name,
        "shape": list(args.shape),
        "seed": args.seed,
        "stream": args.stream,
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
        for problem in cuda_diagnosis.cuda_problems():
            print(f"  {problem}")
    return 1 if failures else 0


def _command_info(args: argparse.Namespace) -> int:
    info = detnoise.build_info()
    info.update({"version": detnoise.__version__, "spec": detnoise.SPEC_VERSION, "torch": torch.__version__,
                 "cpu_threads": detnoise.get_num_threads(), "cuda_problems": cuda_diagnosis.cuda_problems(),
                 "determinism": [{"switch": name, "on": held, "matters_here": matters, "why": why}
                                 for name, held, matters, why in determinism_rows()]})
    print(json.dumps(info, indent=1))
    return 0


def _command_default(args: argparse.Namespace) -> int:
    """What `detnoise` alone does: the check table, then one fingerprint and its timing."""
    status = _command_check(args)
    device = "cuda" if _cuda_usable() else "cpu"
    latent = detnoise.normal((1, 4, 128, 128), seed=args.seed, device=device)
    timing = measure(lambda: detnoise.normal((1, 4, 128, 128), seed=args.seed, device=device), device)
    print(f"SDXL latent 1x4x128x128 float32 seed={args.seed} on {device}: {fingerprint(latent)}")
    print(f"  one plain call: {timing.ms()}, {timing.where()}")
    print("compare this line between machines: the same seed gives the same fingerprint everywhere")
    return status


def _command_verify(args: argparse.Namespace) -> int:
    from detnoise import verify

    return verify.main(random_draws=args.draws, seed=args.seed)


def _command_demo(args: argparse.Namespace) -> int:
    if args.prompt is not None and args.model is None:
        raise CommandError("--prompt applies to text-to-image models given with --model; the offline demo "
                           "pipeline is unconditional")
    if args.seed + args.images > _U64_LIMIT:
        raise CommandError(f"--seed {args.seed} with --images {args.images}: image i uses seed + i, which must stay "
                           f"below 2**64; the largest first seed is {_U64_LIMIT - args.images}")
    try:
        import diffusers  # noqa: F401
    except ImportError:
        raise CommandError("detnoise demo needs diffusers: pip install 'detnoise[diffusers]'") from None
    from detnoise import demo

    # Everything that can fail other than a bit check fails here, before minutes of work (exit code 2).
    args.figure = demo.check_arguments(args.out, args.figure, args.model)
    return demo.main(args)


def _progress(items: list, description: str) -> Iterable:
    """A progress bar over items where tqdm is installed (it comes with diffusers), else the items."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return items
    return tqdm(items, desc=description, leave=False)


def _command_patch_report(args: argparse.Namespace) -> int:
    import importlib
    import pkgutil

    try:
        import diffusers
    except ImportError:
        raise CommandError("detnoise patch-report needs diffusers: pip install 'detnoise[diffusers]'") from None
    from detnoise import diffusers_integration

    # The schedulers are imported so that the loaded-module view covers them; --all reads the source of
    # every diffusers module instead (patch_report(all=True)), imported or not.
    names = [module.name for module in pkgutil.walk_packages(importlib.import_module("diffusers.schedulers").__path__,
                                                             "diffusers.schedulers.")]
    for name in _progress(names, "loading diffusers modules"):
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - optional dependencies of single schedulers
            continue
    already = diffusers_integration.is_patched()
    with detnoise.patch_diffusers():
        report = detnoise.patch_report(all=args.all)
    scope = "every module of the installed diffusers (source scan)" if args.all else "loaded modules"
    print(f"diffusers {diffusers.__version__}; draws in {scope}")
    print("this command patched diffusers only while it inspected the modules (detnoise.patch_diffusers() "
          "inside your program does it for real); " + ("it was already patched before" if already else
                                                       "nothing was patched before, and nothing is now"))
    print("\n".join(line for line in report.lines() if not line.startswith("patch active:")))
    return 0


def _command_sde(args: argparse.Namespace) -> int:
    """SHA-256 of a Brownian increment W(s, t) as an SDE scheduler asks for it; compare across devices."""
    tree = detnoise.BrownianTree(args.t0, args.t1, args.shape, seed=args.seed, tol=args.tol,
                                 device=args.device, dtype=_DTYPES[args.dtype])
    values = tree(args.s, args.t)
    print(f"brownian W({args.s}, {args.t}) on [{args.t0}, {args.t1}] tol {args.tol} seed {args.seed} "
          f"{'x'.join(map(str, args.shape))} {args.dtype} on {values.device}: {fingerprint(values)}")
    print("same on every device: the Brownian increments (docs/SPEC.md §9) and the initial noise; "
          "not covered: the model's and the scheduler's own arithmetic, which may differ between devices")
    return 0


def _add_command(commands: argparse._SubParsersAction, name: str, handler, **kwargs) -> argparse.ArgumentParser:
    command = commands.add_parser(name, **kwargs)
    command.set_defaults(handler=handler, command=name)
    return command


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="detnoise", description="Deterministic noise, bit-identical on CPU and CUDA.",
        epilog="--seed may stand before or after the command name; commands without a seed refuse it.")
    parser.add_argument("--seed", dest="global_seed", metavar="SEED", type=_u64, default=None,
                        help="seed of the default check (alone) or of the command that follows (default: that command's)")
    parser.set_defaults(handler=_command_default, command="default", seed=None)
    commands = parser.add_subparsers(title="commands")

    fp = _add_command(commands, "fingerprint", _command_fingerprint, help="print the SHA-256 of a draw's bytes")
    fp.add_argument("--seed", type=_u64, default=None,
                    help="seed in [0, 2**64); required (here or before the command name), no default")
    fp.add_argument("--shape", type=_shape, required=True, help="e.g. 1,4,128,128; required, no default")
    fp.add_argument("--dtype", choices=sorted(_DTYPES), default=None, help="randn/rand only (default float32)")
    fp.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    fp.add_argument("--stream", type=_u64, default=0, help="stream in [0, 2**64) (default 0)")
    fp.add_argument("--offset", type=_u64, default=0, help="first block of the draw, in [0, 2**64) (default 0)")
    fp.add_argument("--kind", choices=_KINDS, default="randn",
                    help="randn (normal), rand (uniform) or bits (raw uint32 words) (default randn)")
    fp.add_argument("--json", action="store_true", help="one JSON object instead of a line (default: a line)")

    check = _add_command(commands, "check", _command_check, help="compare CPU and CUDA draws (CPU only without a GPU)")
    check.add_argument("--seed", type=_u64, default=None, help="seed in [0, 2**64) (default 0)")

    verify = _add_command(commands, "verify", _command_verify, help="self-check this install against the spec (seconds)")
    verify.add_argument("--draws", type=_at_least(0), default=36,
                        help="random draws to compare with the reference, >= 0 (default 36)")
    verify.add_argument("--seed", "--check-seed", dest="seed", type=_u64, default=None,
                        help="fix the random draws (default: fresh)")

    demo = _add_command(commands, "demo", _command_demo,
                        help="run a diffusers pipeline with detnoise noise (offline) and show the proofs")
    demo.add_argument("--model", default=None, help="a local diffusers model directory (default: a small pipeline built offline)")
    demo.add_argument("--prompt", default=None, help="prompt, for text-to-image models given with --model (default: none)")
    demo.add_argument("--images", type=_at_least(1), default=4, help="images (seeds) per run, >= 1 (default 4)")
    demo.add_argument("--seed", type=_u64, default=None, help="first seed (default 0); image i uses seed + i")
    demo.add_argument("--steps", type=_at_least(1), default=25, help="denoising steps per image, >= 1 (default 25)")
    demo.add_argument("--device", default=None,
                      help="the GPU columns' device (default: cuda where usable; cpu: a second CPU configuration instead)")
    demo.add_argument("--out", default="detnoise_demo.png",
                      help="PNG figure to write, in an existing writable folder (default detnoise_demo.png)")
    demo.add_argument("--figure", choices=["auto", "matplotlib", "pillow"], default="auto",
                      help="how to draw the figure (default auto: matplotlib when installed, else Pillow)")
    demo.add_argument("--no-timing", action="store_true", help="skip the noise timings (default: time them)")

    report = _add_command(commands, "patch-report", _command_patch_report,
                          help="what patch_diffusers covers, and what still draws elsewhere")
    report.add_argument("--all", action="store_true",
                        help="scan the source of every diffusers module, loaded or not (default: the loaded ones)")

    sde = _add_command(commands, "sde", _command_sde,
                       help="SHA-256 of a Brownian tree increment (SDE samplers), to compare devices")
    sde.add_argument("--seed", type=_u64, default=None, help="seed in [0, 2**64) (default 0)")
    sde.add_argument("--shape", type=_shape, default=(1, 4, 128, 128), help="e.g. 1,4,64,64 (default 1,4,128,128)")
    sde.add_argument("--dtype", choices=sorted(_DTYPES), default="float32", help="element type (default float32)")
    sde.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    for name, default, what in (
            ("t0", 0.0292, "start of the tree's interval (SDXL's smallest sigma)"),
            ("t1", 14.6146, "end of the tree's interval (SDXL's largest sigma)"),
            ("s", 14.6146, "first time of the increment W(s, t)"),
            ("t", 10.0, "second time of the increment W(s, t)"),
            ("tol", 1e-6, "the tree's tolerance: how finely it subdivides")):
        sde.add_argument(f"--{name}", type=float, default=default, help=f"{what} (default {default})")

    _add_command(commands, "info", _command_info, help="what was built and what can run here, as JSON")
    return parser


def _resolve_seed(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Merges a --seed given before the command name into the command's own --seed."""
    if args.global_seed is not None:
        if args.command not in _SEEDED_COMMANDS:
            parser.error(f"--seed does not apply to `detnoise {args.command}`")
        if args.seed is not None and args.seed != args.global_seed:
            parser.error(f"two different seeds: --seed {args.global_seed} before `{args.command}` and "
                         f"--seed {args.seed} after it")
        args.seed = args.global_seed
    if args.command == "fingerprint" and args.seed is None:
        parser.error("fingerprint needs --seed (before or after the command name)")
    if args.command in ("default", "check", "demo", "sde") and args.seed is None:
        args.seed = 0


_DEVICE_CHOICES = "--device takes cpu, cuda or cuda:N (detnoise draws the same values on each)"


def _check_device(args: argparse.Namespace) -> None:
    """Refuses a --device that cannot draw here before any work, with the cause in the message
    (the fixes come from _fixes)."""
    text = getattr(args, "device", None)
    if not text:
        return
    try:
        device = torch.device(text)
    except (RuntimeError, TypeError):
        raise CommandError(f"--device {text}: not a device name") from None
    if device.type == "meta":
        raise CommandError("--device meta: the meta device holds shapes without values, so there is nothing "
                           "to draw or fingerprint")
    if device.type not in ("cpu", "cuda"):
        raise CommandError(f"--device {text}: detnoise draws on cpu and cuda devices only")
    if device.type == "cuda" and not _cuda_usable():
        raise CommandError(f"--device {text}: CUDA cannot be used here")


def _fixes(message: str, args: argparse.Namespace) -> list[str]:
    """The fixes for what went wrong, by cause: a device name torch does not know, the meta device
    or another non-drawing device, or CUDA (every cause found on this machine, else the error's own)."""
    text = str(getattr(args, "device", None) or "")
    device_type = ""
    if text:
        try:
            device_type = torch.device(text).type
        except (RuntimeError, TypeError):
            return [_DEVICE_CHOICES]
    if device_type == "meta" or device_type not in ("", "cpu", "cuda"):
        return ["use --device cpu (or cuda where it can run): the values are the same on every device"]
    if device_type == "cuda" or (device_type == "" and "cuda" in message.lower()):
        return cuda_diagnosis.cuda_problems() or [cuda_diagnosis.explain(message) or ""]
    return []


def _error_lines(error: BaseException, args: argparse.Namespace | None) -> list[str]:
    """The message once, without a second "detnoise:" prefix, then each fix for its cause once."""
    message = str(error).strip() or type(error).__name__
    while message.startswith("detnoise: "):
        message = message[len("detnoise: "):]
    lines = [f"detnoise: error: {message}"]
    fixes = [getattr(error, "help_hint", "")] + (_fixes(message, args) if args is not None else [])
    lines += [f"  fix: {fix}" for i, fix in enumerate(fixes) if fix and fix not in message and fix not in fixes[:i]]
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one command. Exit codes: 0 done, 1 a bit-for-bit check failed (check, verify, demo),
    2 anything else that stopped the command (bad options, an unusable device, a missing extra),
    reported as one error line and its fixes."""
    parser = build_parser()
    args: argparse.Namespace | None = None
    try:
        args = parser.parse_args(argv)
        _resolve_seed(parser, args)
        _check_device(args)
        return args.handler(args)
    except (ValueError, TypeError, RuntimeError, NotImplementedError, AssertionError, OSError) as error:
        # AssertionError: torch's "Torch not compiled with CUDA enabled"; OSError: files the demo reads or writes.
        print("\n".join(_error_lines(error, args)), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
