"""enable_full_determinism() / deterministic(): every switch flips, and is restored."""

from __future__ import annotations

import os

import pytest
import torch

import detnoise
from detnoise import determinism


@pytest.fixture
def loose_settings(monkeypatch):
    """Every switch in its non-deterministic position, restored after the test."""
    saved = determinism._snapshot()
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.deterministic = False
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.use_deterministic_algorithms(False)
    yield
    determinism._restore(saved)


def test_context_turns_every_switch_on_and_restores_it(loose_settings) -> None:
    assert not any(detnoise.determinism_status().values())
    with detnoise.deterministic():
        status = detnoise.determinism_status()
        assert all(status.values()), status
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"
        assert torch.are_deterministic_algorithms_enabled()
        assert not torch.backends.cuda.matmul.allow_tf32
    assert not any(detnoise.determinism_status().values())
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ
    assert torch.backends.cudnn.benchmark and torch.backends.cudnn.allow_tf32


def test_context_restores_after_an_exception(loose_settings) -> None:
    with pytest.raises(KeyError):
        with detnoise.deterministic():
            raise KeyError("boom")
    assert not any(detnoise.determinism_status().values())


def test_restores_warn_only_and_an_existing_variable(loose_settings, monkeypatch) -> None:
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    with detnoise.deterministic():
        assert not torch.is_deterministic_algorithms_warn_only_enabled()
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert torch.is_deterministic_algorithms_warn_only_enabled()


def test_enable_full_determinism_stays_on(loose_settings) -> None:
    detnoise.enable_full_determinism()
    assert all(detnoise.determinism_status().values())


def test_warns_when_cuda_already_started(loose_settings, monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    with pytest.warns(RuntimeWarning, match="before the first CUDA operation"):
        detnoise.enable_full_determinism()
