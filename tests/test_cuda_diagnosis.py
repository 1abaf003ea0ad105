"""Every CUDA failure names its fix: the messages of cuda_diagnosis and detnoise.Generator('cuda')."""

from __future__ import annotations

import pytest
import torch

import detnoise
from detnoise import cuda_diagnosis


@pytest.mark.parametrize("error, fix", [
    ("CUDA error: no kernel image is available for execution on the device", "CMAKE_CUDA_ARCHITECTURES"),
    ("detnoise CUDA launch failed: invalid device function", "CMAKE_CUDA_ARCHITECTURES"),
    ("CUDA driver version is insufficient for CUDA runtime version", "update the driver"),
    ("The NVIDIA driver on your system is too old (found version 11040)", "update the driver"),
    ("Found no NVIDIA driver on your system", "install one"),
    ("No CUDA GPUs are available", "CUDA_VISIBLE_DEVICES"),
    ("Torch not compiled with CUDA enabled", "install a CUDA build of torch"),
])
def test_known_cuda_errors_get_their_fix(monkeypatch, error: str, fix: str) -> None:
    monkeypatch.setattr(cuda_diagnosis, "nvidia_driver_installed", lambda: True)
    assert fix in cuda_diagnosis.explain(error)


@pytest.mark.parametrize("installed, fix", [(True, "update the driver"), (False, "no NVIDIA driver is installed")])
def test_an_insufficient_driver_is_told_from_no_driver(monkeypatch, installed: bool, fix: str) -> None:
    """The CUDA runtime's "driver insufficient" means no driver at all when libcuda cannot load."""
    monkeypatch.setattr(cuda_diagnosis, "nvidia_driver_installed", lambda: installed)
    explained = cuda_diagnosis.explain("CUDA driver version is insufficient for CUDA runtime version")
    assert fix in explained
    assert ("update the driver" in explained) == installed


def test_the_driver_probe_matches_the_machine() -> None:
    import ctypes.util
    import os

    if os.path.isdir("/proc/driver/nvidia"):
        assert cuda_diagnosis.nvidia_driver_installed()
    elif ctypes.util.find_library("cuda") is None:
        assert not cuda_diagnosis.nvidia_driver_installed()


def test_unknown_errors_get_no_invented_fix() -> None:
    assert cuda_diagnosis.explain("shape mismatch") is None


def test_cpu_only_torch_is_named(monkeypatch) -> None:
    monkeypatch.setattr(torch.version, "cuda", None)
    assert "CPU-only build" in cuda_diagnosis.torch_cuda_problem()


def test_generator_on_cuda_without_cuda_names_the_fix() -> None:
    problem = cuda_diagnosis.torch_cuda_problem()
    if problem is None:
        pytest.skip("torch can use CUDA here")
    with pytest.raises(RuntimeError, match="detnoise.Generator\\('cuda'\\)") as error:
        detnoise.Generator("cuda", seed=1)
    assert problem in str(error.value) and "detnoise.Generator('cpu', seed=...)" in str(error.value)


def test_cpu_generators_are_untouched() -> None:
    for device in ("cpu", torch.device("cpu")):
        assert detnoise.Generator(device, seed=3).initial_seed() == 3
    assert cuda_diagnosis.generator_device("meta") == "meta"
