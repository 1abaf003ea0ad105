"""What `import detnoise` costs over `import torch`: fresh interpreters, run alternately.

    python benchmarks/import_cost.py [--repeats 15]

Each repeat starts `python -c "import torch"` and `python -c "import detnoise"` once, alternating so
that a busy machine slows both alike; the table gives medians with the spread (min-max) of the
whole process (interpreter start included) and the median difference of the pairs.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time


def _run(statement: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", statement], check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    _run("import detnoise")  # warm the file cache and the bytecode caches once
    torch_s, detnoise_s = [], []
    for _ in range(args.repeats):
        torch_s.append(_run("import torch"))
        detnoise_s.append(_run("import detnoise"))
    versions = subprocess.run(
        [sys.executable, "-c", "import torch, detnoise; print(torch.__version__, detnoise.__file__)"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    print(f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} cpus; torch, detnoise: {versions}")
    print(f"{args.repeats} alternating repeats, seconds per process (median [min-max])")
    for name, times in (("import torch", torch_s), ("import detnoise", detnoise_s)):
        print(f"  {name:<16} {statistics.median(times):6.3f} [{min(times):.3f}-{max(times):.3f}]")
    diffs = [d - t for d, t in zip(detnoise_s, torch_s)]
    print(f"  difference       {statistics.median(diffs):+6.3f} [{min(diffs):+.3f}..{max(diffs):+.3f}] (pairwise)")


if __name__ == "__main__":
    main()
