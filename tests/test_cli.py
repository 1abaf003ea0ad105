"""The `detnoise` command and the build flags it reports."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

import detnoise
from detnoise import cli, reference
from detnoise.fingerprint import fingerprint

from conftest import DTYPES


def test_fingerprint_line_matches_the_reference(capsys) -> None:
    assert cli.main(["fingerprint", "--seed", "42", "--shape", "1,4,16,16", "--dtype", "bfloat16"]) == 0
    line = capsys.readouterr().out.strip()
    import hashlib

    expected = hashlib.sha256(reference.normal(4 * 16 * 16, "bfloat16", 42).tobytes()).hexdigest()
    assert line.startswith(expected + "  detnoise-v1 randn bfloat16 shape=1x4x16x16 seed=42")


@pytest.mark.parametrize("kind", ["randn", "rand", "bits"])
def test_fingerprint_json(capsys, kind: str) -> None:
    args = ["fingerprint", "--seed", "-1", "--shape", "7", "--kind", kind, "--stream", "3", "--offset", "9", "--json"]
    assert cli.main(args) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["seed"] == 2**64 - 1 and record["stream"] == 3 and record["offset"] == 9
    if kind == "bits":
        values = detnoise.bits(7, seed=-1, stream=3, offset=9)
    else:
        values = (detnoise.normal if kind == "randn" else detnoise.uniform)(7, seed=-1, stream=3, offset=9)
    assert record["sha256"] == fingerprint(values)


def test_fingerprint_depends_on_every_parameter() -> None:
    base = fingerprint(detnoise.normal(64, seed=1))
    assert base != fingerprint(detnoise.normal(64, seed=2))
    assert base != fingerprint(detnoise.normal(64, seed=1, stream=1))
    assert base != fingerprint(detnoise.normal(64, seed=1, offset=1))
    assert base != fingerprint(detnoise.normal(64, seed=1, dtype=DTYPES["float64"]))


def test_bad_arguments_exit_with_a_message(capsys) -> None:
    assert cli.main(["fingerprint", "--seed", str(2**64), "--shape", "3"]) == 2
    assert "seed" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["fingerprint", "--seed", "1", "--shape", "3,-2"])


def test_default_command_runs_as_a_console_script() -> None:
    executable = shutil.which("detnoise")
    command = [executable] if executable else [sys.executable, "-m", "detnoise.cli"]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert "stream v1" in completed.stdout and "SDXL latent" in completed.stdout


def test_cuda_kernels_are_built_where_nvcc_is_present() -> None:
    """The CUDA part must at least compile wherever the CUDA compiler is available (CI included)."""
    if shutil.which("nvcc") is None:
        pytest.skip("no nvcc on PATH")
    assert detnoise.built_with_cuda()
    assert detnoise.build_info()["cuda_built"] is True


def test_demo_runs_offline_and_proves_batch_invariance(tmp_path, capsys) -> None:
    pytest.importorskip("diffusers")
    out = tmp_path / "grid.png"
    assert cli.main(["demo", "--images", "2", "--steps", "2", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.count("noise identical, image identical") == 2
    assert "diffusers default" in text and out.stat().st_size > 0
    from PIL import Image

    with Image.open(out) as grid:
        assert grid.size[0] > grid.size[1]  # a row of images


def test_patch_report_command(capsys) -> None:
    pytest.importorskip("diffusers")
    assert cli.main(["patch-report"]) == 0
    text = capsys.readouterr().out
    assert "patch active: yes" in text and "scheduling_amused" in text
    import detnoise.diffusers_integration as integration

    assert not integration.is_patched()
