#!/usr/bin/env bash
# The evidence behind "one build serves every torch version": the wheel that CI built once and tested
# with the newest torch is installed, unchanged, next to the OLDEST torch, diffusers and transformers
# that pyproject.toml admits, and the test suite runs there.
#
#   .ci/oldest_versions.sh path/to/detnoise-*.whl
#
# PyPI serves old torch only as CUDA builds (~0.8 GB, plus ~1.9 GB of nvidia-* libraries that its
# import loads even with no GPU): about 3 GB to fetch and 5 GB on disk, measured in benchmarks/NOTES.md
# ("Oldest versions"). Pip's cache keeps them for later runs on the same machine.
set -euo pipefail
cd "$(dirname "$0")/.."
wheel="$(realpath "${1:?usage: .ci/oldest_versions.sh path/to/detnoise-*.whl}")"

# The floors have one definition, pyproject.toml: "torch>=2.4" becomes the pin "torch==2.4" (2.4.0).
work="$(mktemp -d)"
python3 - "$work/oldest.txt" <<'EOF'
import re
import sys
import tomllib

project = tomllib.load(open("pyproject.toml", "rb"))["project"]
requirements = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
pins = {}
for requirement in requirements:
    match = re.fullmatch(r"(torch|diffusers|transformers)>=([0-9.]+)", requirement.replace(" ", ""))
    if match:
        pins[match[1]] = match[2]
if set(pins) != {"torch", "diffusers", "transformers"}:
    sys.exit(f"could not read the torch/diffusers/transformers floors from pyproject.toml: {pins}")
open(sys.argv[1], "w").write("".join(f"{name}=={version}\n" for name, version in sorted(pins.items())))
EOF
echo "oldest admitted versions:"; cat "$work/oldest.txt"

python3 -m venv "$work/venv"
# shellcheck disable=SC1091
source "$work/venv/bin/activate"
python -m pip install -q --upgrade pip
start=$SECONDS
pip install -q -c "$work/oldest.txt" torch
echo "oldest torch installed in $((SECONDS - start)) s"
pip install -q -c "$work/oldest.txt" "${wheel}[test]"
python -c "import torch, diffusers, transformers, detnoise; print('torch', torch.__version__, '| diffusers', diffusers.__version__, '| transformers', transformers.__version__, '| detnoise from', detnoise.__file__)"

# These compile csrc/ (or read the extension's machine code) with g++/nvcc/cuobjdump/cmake
# themselves and do not depend on the torch version: the main environment's run covers them.
# Everything else runs here, the tests marked slow included (torch.compile, 4-process DTensor).
python -m pytest -p no:cacheprovider -m "slow or not slow" \
  --ignore=tests/test_native_driver.py --ignore=tests/test_kernel_driver.py \
  --ignore=tests/test_build_flags.py --ignore=tests/test_machine_code.py --ignore=tests/test_build_reuse.py
