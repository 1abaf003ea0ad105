"""`detnoise verify`: passes on a good install, and notices a kernel that is off by one bit."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import torch

from detnoise import _native, verify


def test_verify_passes(capsys) -> None:
    assert verify.main(random_draws=12, seed=5) == 0
    out = capsys.readouterr().out
    assert "all checks passed" in out and "golden digests" in out and "Random123" in out


def test_verify_fails_on_a_wrong_bit(monkeypatch, capsys) -> None:
    real_launch = _native.launch

    def off_by_one_bit(kind, out, seed, stream, offset, first_element=0):
        real_launch(kind, out, seed, stream, offset, first_element)
        if out.numel() > 2:
            flat = out.view(-1).view(torch.uint8)
            flat[1] ^= 1

    monkeypatch.setattr(_native, "launch", off_by_one_bit)
    assert verify.main(random_draws=6, seed=1) == 1
    assert "FAILED" in capsys.readouterr().out


def test_shipped_tables_are_the_test_tables() -> None:
    data = Path(__file__).parent / "data"
    for name in ("golden_v1.json", "kat_vectors.txt"):
        shipped = (resources.files("detnoise") / "data" / name).read_text()
        assert shipped == (data / name).read_text(), f"reinstall: the packaged {name} is stale"
    assert json.loads((data / "golden_v1.json").read_text())["spec_version"] == 1
