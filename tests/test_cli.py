"""The `detnoise` command and the build flags it reports."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch

import detnoise
from detnoise import cli, cuda_diagnosis, reference
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


def test_patch_report_says_it_patched_only_to_inspect(capsys) -> None:
    pytest.importorskip("diffusers")
    import detnoise.diffusers_integration as integration

    assert not integration.is_patched()
    assert cli.main(["patch-report"]) == 0
    captured = capsys.readouterr()
    assert "patch active" not in captured.out and "scheduling_amused" in captured.out
    assert "patched diffusers only while it inspected the modules" in captured.out
    assert "nothing was patched before, and nothing is now" in captured.out
    assert "loading diffusers modules" in captured.err  # the progress bar of the long phase
    assert not integration.is_patched()


def _check_table(capsys, argv: list[str]) -> str:
    assert cli.main(argv) == 0
    return capsys.readouterr().out


def test_seed_before_the_command_is_the_commands_seed(capsys) -> None:
    before = _check_table(capsys, ["--seed", "5", "check"])
    after = _check_table(capsys, ["check", "--seed", "5"])
    default = _check_table(capsys, ["check"])
    assert before == after != default
    assert cli.main(["--seed", "7", "fingerprint", "--shape", "3"]) == 0
    assert "seed=7 " in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--seed", "5", "info"], "--seed does not apply to `detnoise info`"),
    (["--seed", "5", "patch-report"], "--seed does not apply to `detnoise patch-report`"),
    (["--seed", "1", "check", "--seed", "2"], "two different seeds"),
    (["fingerprint", "--shape", "3"], "fingerprint needs --seed"),
])
def test_a_seed_that_cannot_apply_is_an_error(capsys, argv: list[str], message: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["fingerprint", "--seed", "1", "--shape", "3", "--kind", "bits", "--dtype", "float32"],
     "--dtype does not apply to --kind bits"),
    (["demo", "--prompt", "a cat"], "--prompt applies to text-to-image models given with --model"),
])
def test_a_flag_that_does_not_apply_is_an_error(capsys, argv: list[str], message: str) -> None:
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err


def test_errors_have_one_prefix(capsys) -> None:
    assert cli.main(["fingerprint", "--seed", str(2**64), "--shape", "3"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("detnoise: error: ") and error.count("detnoise:") == 1, error


def test_a_cuda_failure_names_the_fix(capsys) -> None:
    if detnoise.built_with_cuda() and torch.cuda.is_available():
        pytest.skip("CUDA works here")
    assert cli.main(["fingerprint", "--seed", "1", "--shape", "3", "--device", "cuda"]) == 2
    error = capsys.readouterr().err
    fixes = ("install a CUDA build of torch", "reinstall from source on a machine with the CUDA toolkit",
             "check `nvidia-smi`", "update the driver")
    assert any(fix in error for fix in fixes), error


def test_check_and_info_say_why_cuda_is_not_used(capsys) -> None:
    problems = cuda_diagnosis.cuda_problems()
    if not problems:
        pytest.skip("CUDA works here")
    text = _check_table(capsys, ["check"])
    assert all(problem in text for problem in problems)
    info = json.loads(_check_table(capsys, ["info"]))
    assert info["cuda_problems"] == problems
    assert {row["switch"] for row in info["determinism"]} == set(detnoise.determinism_status())


def test_default_command_times_with_a_median(capsys) -> None:
    text = _check_table(capsys, ["--seed", "3"])
    assert "seed=3 on" in text and "15 repeats" in text
