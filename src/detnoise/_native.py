"""Bridge to the compiled kernels (``detnoise._core``): dtype codes, thread count, launches.

The extension takes raw addresses and element counts, so this module is the only place that turns
torch tensors into those arguments. See docs/SPEC.md for what the kernels compute.
"""

from __future__ import annotations

import torch

try:
    from detnoise import _core
except ImportError as error:  # pragma: no cover - only without a build
    raise ImportError(
        "detnoise's compiled extension (detnoise._core) is missing; install the package with "
        "`pip install .` from a source checkout rather than importing src/ directly"
    ) from error

# Kind codes shared with csrc/include/detnoise/transforms.h (enum class Kind).
KIND_BITS = 0
KIND_UNIFORM = 1
KIND_NORMAL = 2

# DType codes shared with csrc/include/detnoise/transforms.h (enum class DType).
_DTYPE_CODES = {
    torch.uint32: 0,
    torch.float32: 1,
    torch.float64: 2,
    torch.float16: 3,
    torch.bfloat16: 4,
}

FLOAT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)

_num_threads: int | None = None

# CPU kernel paths (csrc/cpu/cpu_paths.h); every one gives the same bits.
_CPU_PATH_CODES = {"auto": -1, "scalar": 0, "baseline": 1, "avx2": 2}
_cpu_path = "auto"


def built_with_cuda() -> bool:
    """Whether this build of detnoise contains the CUDA kernels."""
    return bool(_core.built_with_cuda)


def _version_text(version: int) -> str:
    """CUDA's integer versions as text: 12080 -> "12.8"."""
    return f"{version // 1000}.{version % 1000 // 10}"


def cuda_architectures() -> list[str]:
    """The CUDA architectures this build has kernels for, as CMake names them ("75-real", ..., "120"
    where a plain number means real code and PTX); empty for a build without CUDA."""
    return [arch for arch in str(_core.cuda_versions()[2]).split(",") if arch]


def build_info() -> dict[str, object]:
    """What was compiled and what can run here: ``{"cpu": True, "cuda_built": ..., ...}``.

    With CUDA kernels it also lists ``cuda_architectures``, the CUDA version of the runtime the
    module links (``cuda_runtime``) and the one the installed driver supports (``cuda_driver``,
    ``None`` without a driver): the driver must be at least the runtime's major version.
    """
    info: dict[str, object] = {"cpu": True, "cpu_paths": cpu_paths(), "cuda_built": built_with_cuda(), "cuda_devices": 0}
    if built_with_cuda():
        driver, runtime, _ = _core.cuda_versions()
        info["cuda_architectures"] = cuda_architectures()
        info["cuda_runtime"] = _version_text(runtime)
        info["cuda_driver"] = _version_text(driver) if driver > 0 else None
        count, error = _core.cuda_device_count()
        info["cuda_devices"] = count
        if error:
            from detnoise import cuda_diagnosis

            # The runtime says "driver insufficient" also where there is no driver at all: say which.
            no_driver = driver == 0 and not cuda_diagnosis.nvidia_driver_installed()
            info["cuda_error"] = f"no NVIDIA driver installed ({error})" if no_driver else error
    return info


def set_num_threads(num_threads: int | None) -> None:
    """Sets the CPU kernel's thread count; ``None`` follows ``torch.get_num_threads()``.

    The values drawn never depend on this setting, only the speed does.
    """
    global _num_threads
    if num_threads is not None:
        if isinstance(num_threads, bool) or not isinstance(num_threads, int):
            raise TypeError(f"num_threads must be an int or None, got {type(num_threads).__name__}")
        if num_threads < 1:
            raise ValueError(f"num_threads must be >= 1, got {num_threads}")
    _num_threads = num_threads


def cpu_paths() -> list[str]:
    """The CPU kernel paths that can run on this machine, simplest first (e.g. scalar, baseline, avx2)."""
    return list(_core.cpu_paths())


def set_cpu_path(name: str) -> None:
    """Selects the CPU kernel path ("auto" picks the fastest available). Values never change."""
    if name not in _CPU_PATH_CODES:
        raise ValueError(f"unknown CPU path {name!r}; choose one of {sorted(_CPU_PATH_CODES)}")
    if name != "auto" and name not in cpu_paths():
        raise RuntimeError(f"CPU path {name!r} cannot run on this machine (available: {cpu_paths()})")
    global _cpu_path
    _cpu_path = name


def get_cpu_path() -> str:
    """The selected CPU kernel path ("auto" unless set)."""
    return _cpu_path


def get_num_threads() -> int:
    """The CPU kernel's thread count in effect now."""
    return _num_threads if _num_threads is not None else torch.get_num_threads()


def dtype_code(dtype: torch.dtype) -> int:
    return _DTYPE_CODES[dtype]


_driver_reason: str | None = None  # the driver cannot change within a process: asked once
_driver_checked = False


def _driver_too_old_reason() -> str | None:
    """A sentence naming the fix when the installed driver cannot run this build's CUDA runtime."""
    global _driver_reason, _driver_checked
    if not _driver_checked:
        driver, runtime, _ = _core.cuda_versions()
        _driver_reason = None
        # Same rule as driver_too_old() in csrc/cuda/launch_context.h: a driver serves its own CUDA
        # major version and older (minor-version compatibility); 0 is no driver at all.
        if 0 < driver and driver // 1000 < runtime // 1000:
            _driver_reason = (
                f"the NVIDIA driver supports CUDA {_version_text(driver)}, but this detnoise build links the "
                f"CUDA {_version_text(runtime)} runtime, which needs a driver for CUDA {runtime // 1000}.x or newer; "
                "update the NVIDIA driver, or rebuild detnoise with a CUDA toolkit no newer than the driver "
                "supports (e.g. the one matching torch.version.cuda): with that nvcc on PATH, "
                "`pip install --no-build-isolation --force-reinstall --no-deps .` from a source checkout"
            )
        _driver_checked = True
    return _driver_reason


def cuda_unavailable_reason() -> str | None:
    """None if CUDA draws can run, else a sentence naming the fix (no CUDA kernels in this build, no
    NVIDIA driver, or a driver older than this build's CUDA runtime)."""
    if not built_with_cuda():
        return (
            "this detnoise build has no CUDA kernels (nvcc was not found when it was built); "
            "reinstall from source on a machine with the CUDA toolkit: "
            "`pip install --no-build-isolation --force-reinstall .` with nvcc on PATH, "
            "or add `-C cmake.define.DETNOISE_CUDA=ON` to make a missing nvcc an error"
        )
    from detnoise import cuda_diagnosis

    if _core.cuda_versions()[0] == 0 and not cuda_diagnosis.nvidia_driver_installed():
        return cuda_diagnosis.NO_DRIVER
    return _driver_too_old_reason()


def _run_on_device(out: torch.Tensor, on_cpu, on_cuda) -> None:
    """Calls on_cpu(threads, path) or on_cuda(device_index, cuda_stream) for out's device."""
    if out.device.type == "cpu":
        on_cpu(get_num_threads(), _CPU_PATH_CODES[_cpu_path])
    elif out.device.type == "cuda":
        reason = cuda_unavailable_reason()
        if reason is not None:
            raise RuntimeError(f"detnoise: cannot draw on {out.device}: {reason}")
        index = out.device.index if out.device.index is not None else torch.cuda.current_device()
        on_cuda(index, _raw_stream(index))
    else:
        raise RuntimeError(f"detnoise draws on 'cpu' and 'cuda' devices only, got '{out.device}'")


def _current_raw_stream(index: int) -> int:
    return torch.cuda.current_stream(index).cuda_stream


# The caller's current CUDA stream as an address, without making a torch.cuda.Stream object
# (what torch's own compiled code calls); the public form where this torch lacks it.
_raw_stream = getattr(torch._C, "_cuda_getCurrentRawStream", None) or _current_raw_stream


def launch(kind: int, out: torch.Tensor, seed: int, stream: int, offset: int, first_element: int = 0) -> None:
    """Fills the contiguous tensor ``out`` with elements ``first_element ...`` of a draw.

    Written out rather than through _run_on_device: this is every plain draw's path, and each
    Python call costs a fraction of a small draw's time."""
    count = out.numel()
    if count == 0:
        return
    if out.is_cpu:
        threads = _num_threads if _num_threads is not None else torch.get_num_threads()
        _core.fill_cpu(kind, _DTYPE_CODES[out.dtype], out.data_ptr(), count, first_element, seed, stream, offset,
                       threads, _CPU_PATH_CODES[_cpu_path])
    elif out.is_cuda and _core.built_with_cuda:
        index = out.get_device()  # a CUDA tensor's device always has an index
        _core.fill_cuda(kind, _DTYPE_CODES[out.dtype], out.data_ptr(), count, first_element, seed, stream, offset,
                        index, _raw_stream(index))
    else:
        _run_on_device(out, None, None)  # raises the error for this device


def scale_words(words: torch.Tensor, span: int, low: int) -> None:
    """SPEC §10.6 in place on a contiguous CPU int64 tensor of drawn 64-bit words: each becomes
    ``low + floor(W * span / 2^64)`` (``detnoise/integers.h``)."""
    _core.scale_words_cpu(words.data_ptr(), words.numel(), span, low, get_num_threads())


def order_keys(keys: torch.Tensor, out: torch.Tensor) -> None:
    """SPEC §10.7 on the CPU: ``out`` (contiguous int64, one per key) = the indices of ``keys``
    (contiguous, 64-bit drawn words) in ascending (unsigned word, index) order
    (``detnoise/orders.h``)."""
    _core.order_keys_cpu(keys.data_ptr(), keys.numel(), out.data_ptr())


RACE_WEIGHT_DTYPES = (torch.float32, torch.float64)  # the weights race_winners reads


def race_winners(pairs: torch.Tensor, weights: torch.Tensor, out: torch.Tensor) -> None:
    """SPEC §10.8's races on the CPU (``detnoise/orders.h``): ``pairs`` (rows, rounds, categories, 2)
    contiguous float64 normals, ``weights`` (rows, categories) contiguous float32 or float64, ``out``
    (rows * rounds, contiguous int64) = each race's first index of the least ``X / p``."""
    if weights.dtype not in RACE_WEIGHT_DTYPES or pairs.dtype != torch.float64:
        raise TypeError(f"race_winners reads float64 pairs and float32/float64 weights, "
                        f"got {pairs.dtype}, {weights.dtype}")
    rows, rounds, categories = pairs.shape[:3]
    bits = 32 if weights.dtype == torch.float32 else 64
    _core.race_winners_cpu(pairs.data_ptr(), weights.data_ptr(), bits, rows, rounds, categories, out.data_ptr(),
                           get_num_threads())


def launch_rows(kind: int, out: torch.Tensor, draws: list[tuple[int, int, int]]) -> None:
    """Fills contiguous ``out`` (shape [len(draws), ...]); row r is the draw at (seed, stream, offset)
    ``draws[r]``. One kernel launch on CUDA (per 96 rows), one native call on the CPU."""
    rows = len(draws)
    if out.numel() == 0 or rows == 0:
        return
    seeds, streams, offsets = (list(column) for column in zip(*draws))
    args = (kind, _DTYPE_CODES[out.dtype], out.data_ptr(), out.numel() // rows, seeds, streams, offsets)
    _run_on_device(
        out,
        lambda threads, path: _core.fill_cpu_rows(*args, threads, path),
        lambda device, cuda_stream: _core.fill_cuda_rows(*args, device, cuda_stream),
    )


def launch_strided(
    kind: int, out: torch.Tensor, sizes: list[int], strides: list[int], base: int, seed: int, stream: int, offset: int
) -> None:
    """Fills contiguous ``out`` (row-major over ``sizes``) with draw elements base + sum(i_k * strides[k])."""
    if out.numel() == 0:
        return
    args = (kind, _DTYPE_CODES[out.dtype], out.data_ptr(), sizes, strides, base, seed, stream, offset)
    _run_on_device(
        out,
        lambda threads, path: _core.fill_cpu_strided(*args, threads, path),
        lambda device, cuda_stream: _core.fill_cuda_strided(*args, device, cuda_stream),
    )


def philox4x32_10(counter: tuple[int, int, int, int], key: tuple[int, int]) -> tuple[int, int, int, int]:
    """One Philox4x32-10 block computed by the compiled core (for known-answer tests)."""
    return tuple(_core.philox4x32_10(tuple(counter), tuple(key)))  # type: ignore[return-value]
