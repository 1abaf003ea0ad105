#!/usr/bin/env bash
# The first thing to run on any machine with an NVIDIA GPU (issue 12 item 5). Needs python3 with
# torch, numpy, cmake, ninja, pybind11, scikit-build-core and pytest; no network (diffusers comes
# from benchmarks/wheels when benchmarks/fetch_wheels.sh was run and that folder carried).
#   1. builds the extension for this machine's GPU (CMake's native architecture, CUDA forced on);
#   2. runs every CUDA test (every test marked `cuda`, whichever issue added it; the diffusers
#      pipelines on the GPU; the host-executed kernel bodies; the SASS check of this build);
#   3. detnoise check and detnoise verify (golden digests on the GPU, random CPU/CUDA draws);
#   4. the CUDA throughput table (benchmarks/run.py) and the diffusers randn_tensor table;
#   5. writes one JSON summary (device, torch, every check's verdict, every speed ratio) to
#      $OUT/gpu_check.json when OUT is set, else benchmarks/results/gpu_check.json.
# Target: under 8 minutes on an H100/H200, build included. Exit status 0 only if every check passed.
set -uo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
stamp() { echo "--- $1 ($(( $(date +%s) - started )) s)"; }
out_dir="${OUT:-benchmarks/results}"
mkdir -p "$out_dir" benchmarks/results
work="$(mktemp -d)"
export PYTHONUNBUFFERED=1

if compgen -G "benchmarks/wheels/*.whl" >/dev/null; then
  stamp "offline wheels (diffusers for the pipeline cases)"
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/detnoise_site benchmarks/wheels/*.whl \
    && export PYTHONPATH=/tmp/detnoise_site${PYTHONPATH:+:$PYTHONPATH}
fi

stamp "GPU"
nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader || true
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"

stamp "build (CUDA forced on, architectures: this GPU)"
build_start=$(date +%s)
python3 -m pip install --no-build-isolation --no-deps --force-reinstall -q \
  -C cmake.define.DETNOISE_CUDA=ON -C build-dir=build/gpu_check . 2>&1 | grep -v "Running pip as the 'root'"
build_seconds=$(( $(date +%s) - build_start ))
python3 -c "import detnoise, sys; print(detnoise.build_info()); sys.exit(0 if detnoise.built_with_cuda() else 1)"
build_status=$?
[ "$build_status" -eq 0 ] || echo "FAILED: detnoise was not built with CUDA"

stamp "every test marked cuda"
python3 -m pytest -q -p no:cacheprovider -W "ignore::DeprecationWarning" -m cuda --junitxml="$work/cuda.xml" tests/ 2>&1 | tail -n 30
cuda_tests_status=${PIPESTATUS[0]}

stamp "diffusers pipelines on the GPU, kernel bodies on the host, SASS of this build, CUDA host logic"
# -m "slow or not slow": the SASS checks marked slow too (this build has one architecture: cheap).
python3 -m pytest -q -p no:cacheprovider -W "ignore::DeprecationWarning" -m "slow or not slow" --junitxml="$work/other.xml" \
  tests/test_diffusers_pipelines.py tests/test_kernel_driver.py tests/test_machine_code.py tests/test_cuda_logic.py \
  tests/test_build_flags.py tests/test_philox_kat.py tests/test_randn_tensor.py 2>&1 | tail -n 30
other_tests_status=${PIPESTATUS[0]}

stamp "detnoise check (CPU vs CUDA table), detnoise verify"
python3 -m detnoise.cli check --seed 0
check_status=$?
python3 -m detnoise.cli verify
verify_status=$?

stamp "throughput (benchmarks/run.py, GPU part)"
python3 benchmarks/run.py --device cuda --quick --memory
run_status=$?

stamp "diffusers randn_tensor speed"
python3 benchmarks/diffusers_speed.py cuda
diffusers_status=$?
[ "$diffusers_status" -eq 0 ] || echo "(diffusers missing? run benchmarks/fetch_wheels.sh on a networked machine and carry benchmarks/wheels)"

stamp "Brownian tree queries against torchsde and torch.randn (issue 11's CUDA target: <= 5x one torch.randn)"
python3 benchmarks/brownian_speed.py cuda
brownian_status=$?
[ "$brownian_status" -eq 0 ] || echo "(torchsde missing? benchmarks/fetch_wheels.sh fetches it with diffusers)"

stamp "summary"
GPU_CHECK_WORK="$work" GPU_CHECK_OUT="$out_dir" GPU_CHECK_SECONDS=$(( $(date +%s) - started )) \
GPU_CHECK_STATUS="build=$build_status build_seconds=$build_seconds cuda_tests=$cuda_tests_status other_tests=$other_tests_status check=$check_status verify=$verify_status run=$run_status diffusers=$diffusers_status brownian=$brownian_status" \
python3 - <<'EOF'
"""Collects every verdict and speed ratio into one JSON file."""
import glob
import json
import os
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import torch

status = dict(item.split("=") for item in os.environ["GPU_CHECK_STATUS"].split())
work, out = Path(os.environ["GPU_CHECK_WORK"]), Path(os.environ["GPU_CHECK_OUT"])


def tests(xml_name):
    verdicts = {}
    path = work / xml_name
    if not path.exists():
        return verdicts
    for case in ElementTree.parse(path).iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        verdict = "passed"
        for child in case:
            if child.tag in ("failure", "error"):
                verdict = "failed"
            elif child.tag == "skipped":
                verdict = "skipped: " + (child.get("message") or "")[:160]
        verdicts[name] = verdict
    return verdicts


def load(path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


try:
    import detnoise
    build_info = detnoise.build_info()
except Exception as error:  # a failed build: the summary still says so
    build_info = {"error": str(error)}
run = load("benchmarks/results/run_cuda.json") or {}
ratios = []  # detnoise's throughput over each peer's, per case (> 1: detnoise faster)
for row in run.get("rows", []):
    gps = row.get("gps", {})
    ours = gps.get("detnoise")
    if ours:
        ratios.append({"case": row.get("case"), "dtype": row.get("dtype"), "detnoise_gps": ours,
                       "ratio_to": {name: ours / value for name, value in gps.items() if name != "detnoise" and value}})
diffusers_files = sorted(glob.glob("benchmarks/results/diffusers_speed_*.json"), key=os.path.getmtime)
diffusers_rows = (load(diffusers_files[-1]) or {}).get("rows", []) if status["diffusers"] == "0" and diffusers_files else []
all_tests = {**tests("cuda.xml"), **tests("other.xml")}
checks = {
    "build_with_cuda": status["build"] == "0",
    "cuda_tests": status["cuda_tests"] == "0",
    "other_tests": status["other_tests"] == "0",
    "detnoise_check": status["check"] == "0",
    "detnoise_verify": status["verify"] == "0",
    "throughput_ran": status["run"] == "0",
    "diffusers_speed_ran": status["diffusers"] == "0",
    "brownian_speed_ran": status["brownian"] == "0",
}
summary = {
    "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    "capability": list(torch.cuda.get_device_capability(0)) if torch.cuda.is_available() else None,
    "torch": torch.__version__, "torch_cuda": torch.version.cuda, "build_info": build_info,
    "build_seconds": int(status["build_seconds"]), "total_seconds": int(os.environ["GPU_CHECK_SECONDS"]),
    "passed": all(value for key, value in checks.items() if key not in ("diffusers_speed_ran", "brownian_speed_ran")),
    "checks": checks,
    "tests": {"passed": sum(v == "passed" for v in all_tests.values()),
              "failed": sorted(k for k, v in all_tests.items() if v == "failed"),
              "skipped": {k: v for k, v in all_tests.items() if v.startswith("skipped")},
              "verdicts": all_tests},
    "throughput_ratios": ratios, "throughput_targets": run.get("targets", []), "call_latency": run.get("latency"),
    "diffusers_speed": diffusers_rows,
    "brownian_speed": (load("benchmarks/results/brownian_speed_cuda_%d_threads.json" % torch.get_num_threads()) or {}).get("ratios")
    if status["brownian"] == "0" else None,
}
out.mkdir(parents=True, exist_ok=True)
(out / "gpu_check.json").write_text(json.dumps(summary, indent=1) + "\n")
print(json.dumps({k: summary[k] for k in ("device", "torch", "passed", "checks", "build_seconds", "total_seconds")}, indent=1))
print(f"failed tests: {summary['tests']['failed']}")
print(f"wrote {out / 'gpu_check.json'}")
raise SystemExit(0 if summary["passed"] else 1)
EOF
summary_status=$?
for file in benchmarks/results/run_cuda.json benchmarks/results/brownian_speed_cuda_*.json; do [ -f "$file" ] && [ "$out_dir" != benchmarks/results ] && cp "$file" "$out_dir/"; done
stamp "done"
exit $summary_status
