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
    args = ["fingerprint", "--seed", str(2**64 - 1), "--shape", "7", "--kind", kind, "--stream", "3", "--offset", "9",
            "--json"]
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
    assert cli.main(["fingerprint", "--seed", "1", "--shape", "3,-2"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("detnoise: error: argument --shape: ") and "Traceback" not in error


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
    assert cli.main(argv) == 2  # argparse's refusals take the CLI's one error path too
    error = capsys.readouterr().err
    assert message in error and error.startswith("detnoise: error: ")


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
             "check `nvidia-smi`", "update the driver", "no NVIDIA driver is installed")
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


# ---- issue 18: the traps of the first hour ----------------------------------------------------------


def test_verify_refuses_a_negative_number_of_draws(capsys) -> None:
    assert cli.main(["verify", "--draws", "-5"]) == 2
    assert "argument --draws: must be >= 0, got -5" in capsys.readouterr().err
    from detnoise import verify

    with pytest.raises(ValueError, match="random_draws must be >= 0"):
        verify.run_checks(-5)


@pytest.mark.parametrize("option", ["--seed", "--stream", "--offset"])
@pytest.mark.parametrize("value", ["-1", str(2**64)])
def test_seeds_streams_and_offsets_share_one_range(capsys, option: str, value: str) -> None:
    argv = ["fingerprint", "--seed", "1", "--shape", "3"]
    argv[argv.index("--seed") : argv.index("--seed") + 2] = [] if option == "--seed" else argv[1:3]
    assert cli.main([*argv, option, value]) == 2
    error = capsys.readouterr().err
    assert f"argument {option}: must be in [0, 2**64), got {value}" in error, error


def test_the_largest_stream_and_offset_are_accepted(capsys) -> None:
    last = str(2**64 - 1)
    assert cli.main(["fingerprint", "--seed", last, "--stream", last, "--offset", "0", "--shape", "3", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["seed"] == record["stream"] == 2**64 - 1
    assert record["sha256"] == fingerprint(detnoise.normal(3, seed=-1, stream=-1))


@pytest.mark.parametrize("command", [["fingerprint", "--seed", "1", "--shape", "3"], ["sde", "--shape", "2"]])
@pytest.mark.parametrize("device, cause, fix", [
    ("meta", "the meta device holds shapes without values", "use --device cpu"),
    ("foo", "--device foo: not a device name", "--device takes cpu, cuda or cuda:N"),
])
def test_a_device_that_cannot_draw_gets_its_own_fix(capsys, command, device, cause, fix) -> None:
    assert cli.main([*command, "--device", device]) == 2
    error = capsys.readouterr().err
    assert cause in error and fix in error, error
    assert "CUDA build of torch" not in error and "nvidia" not in error.lower(), error


@pytest.mark.parametrize("command", [["fingerprint", "--seed", "1", "--shape", "3"], ["sde", "--shape", "2"]])
def test_a_cuda_device_that_cannot_run_prints_each_fix_once(capsys, monkeypatch, command) -> None:
    problems = ["torch X is a CPU-only build: install a CUDA build of torch", cuda_diagnosis.NO_DRIVER]
    monkeypatch.setattr(cli, "_cuda_usable", lambda: False)
    monkeypatch.setattr(cuda_diagnosis, "cuda_problems", lambda: list(problems))
    assert cli.main([*command, "--device", "cuda"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "detnoise: error: --device cuda: CUDA cannot be used here"
    assert lines[1:] == [f"  fix: {problem}" for problem in problems]


class _FakeCore:
    """Stands in for detnoise._core's CUDA queries: a CUDA 13.0 build on a machine with ``driver``."""

    built_with_cuda = True

    def __init__(self, driver: int) -> None:
        self.driver = driver

    def cuda_versions(self) -> tuple[int, int, str]:
        return self.driver, 13000, "75-real"

    def cuda_device_count(self) -> tuple[int, str]:
        return 0, "cudaErrorInsufficientDriver: CUDA driver version is insufficient for CUDA runtime version"

    def cpu_paths(self) -> list[str]:
        return ["scalar"]


@pytest.mark.parametrize("installed, driver, cause", [
    (False, 0, "no NVIDIA driver"),
    (True, 12080, "supports CUDA 12.8"),  # a driver too old for the CUDA 13 runtime
])
def test_info_tells_no_driver_from_a_driver_too_old(capsys, monkeypatch, installed, driver, cause) -> None:
    """cudart says cudaErrorInsufficientDriver in both cases; whether libcuda loads tells them apart."""
    from detnoise import _native

    monkeypatch.setattr(_native, "_core", _FakeCore(driver))
    monkeypatch.setattr(_native, "_driver_checked", False)
    monkeypatch.setattr(cuda_diagnosis, "nvidia_driver_installed", lambda: installed)
    monkeypatch.setattr(cuda_diagnosis, "torch_cuda_problem", lambda: None)
    assert cli.main(["info"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["cuda_error"].startswith("no NVIDIA driver installed")) == (not installed)
    assert len(info["cuda_problems"]) == 1 and cause in info["cuda_problems"][0]
    other = "supports CUDA 12.8" if not installed else "no NVIDIA driver"
    assert other not in json.dumps(info)


def _options(parser) -> list:
    import argparse

    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command in action.choices.values():
                found += _options(command)
        elif action.option_strings and not isinstance(action, argparse._HelpAction):
            found.append((parser.prog, action))
    return found


def test_every_option_has_help_with_its_default() -> None:
    options = _options(cli.build_parser())
    assert len(options) > 30
    missing = [f"{prog} {action.option_strings[0]}" for prog, action in options
               if not action.help or "default" not in action.help]
    assert not missing, missing


def test_the_library_names_the_fix_for_an_unusable_cuda_device() -> None:
    if detnoise.built_with_cuda() and torch.cuda.is_available():
        pytest.skip("CUDA works here")
    with pytest.raises(RuntimeError) as error:
        detnoise.randn(3, device="cuda")
    assert all(problem in str(error.value) for problem in cuda_diagnosis.cuda_problems())
    if torch.version.cuda is None:
        assert "install a CUDA build of torch" in str(error.value)


def test_demo_seeds_must_stay_in_range(capsys) -> None:
    assert cli.main(["demo", "--seed", str(2**64 - 1), "--images", "2"]) == 2
    assert "the largest first seed is 18446744073709551614" in capsys.readouterr().err
