#!/usr/bin/env bash
# Downloads the wheels the GPU machine lacks (it has no network) into benchmarks/wheels/, for
# benchmarks/gpu_check.sh to install offline (torchsde and trampoline: the Brownian tree's peer). Run here, then carry benchmarks/wheels to the device.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p wheels
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --platform any \
  -d wheels diffusers==0.42.1 importlib_metadata torchsde trampoline
ls -la wheels
