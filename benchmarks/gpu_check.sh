#!/usr/bin/env bash
# GPU check for a machine with an NVIDIA GPU and no network, where python3 already has torch, numpy,
# cmake, ninja, pybind11, scikit-build-core and pytest. Builds the extension in place, runs the
# CUDA tests (diffusers ones too if benchmarks/wheels was carried), and prints the CPU/CUDA table,
# detnoise verify, and the throughput and diffusers-speed tables. About 3-5 minutes.
set -uo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
stamp() { echo "--- $1 ($(( $(date +%s) - started )) s)"; }

if compgen -G "benchmarks/wheels/*.whl" >/dev/null; then
  stamp "offline wheels (diffusers for the pipeline cases)"
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/detnoise_site benchmarks/wheels/*.whl \
    && export PYTHONPATH=/tmp/detnoise_site${PYTHONPATH:+:$PYTHONPATH}
fi

stamp "GPU"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"

stamp "build (CUDA forced on)"
python3 -m pip install --no-build-isolation --no-deps --force-reinstall -q \
  -C cmake.define.DETNOISE_CUDA=ON -C build-dir=build/gpu_check . 2>&1 | grep -v "Running pip as the 'root'" || true
python3 -c "import detnoise, sys; print(detnoise.build_info()); sys.exit(0 if detnoise.built_with_cuda() else 1)" || {
  echo "FAILED: detnoise was not built with CUDA"; exit 1; }

stamp "CUDA tests"
python3 -m pytest -q -p no:cacheprovider -W "ignore::DeprecationWarning" tests/test_cuda.py tests/test_philox_kat.py \
  tests/test_randn_tensor.py tests/test_diffusers_pipelines.py 2>&1 | tail -n 25
tests_status=${PIPESTATUS[0]}

stamp "CPU vs CUDA table, then detnoise verify (golden digests on CUDA, random CPU/CUDA draws)"
python3 -m detnoise.cli check --seed 0
check_status=$?
python3 -m detnoise.cli verify || check_status=1

stamp "throughput (benchmarks/run.py, GPU part)"
python3 benchmarks/run.py --device cuda --quick --memory || true

stamp "diffusers randn_tensor speed"
python3 benchmarks/diffusers_speed.py cuda || echo "(diffusers missing: run benchmarks/fetch_wheels.sh here and carry benchmarks/wheels)"

stamp "done: tests exit ${tests_status}, check exit ${check_status}"
exit $(( tests_status != 0 || check_status != 0 ))
