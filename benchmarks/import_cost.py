"""What `import detnoise` costs over `import torch`: fresh interpreters, run alternately.

    python benchmarks/import_cost.py [--repeats 15]

Each repeat starts `python -c "import torch"` and `python -c "import detnoise"` once, alternating so
that a busy machine slows both alike; the table gives medians with the spread (min-max) of the
whole process (interpreter start included) and the median difference of the pairs, as wall time and
as the process's CPU time (user + system), which moves far less when other work shares the cores.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time


def _run(statement: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one fresh interpreter running ``statement``."""
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-c", statement])
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise subprocess.CalledProcessError(process.returncode, statement)
    return wall, usage.ru_utime + usage.ru_stime


def _row(name: str, values: list[float], sign: str = "") -> str:
    return f"  {name:<16} {statistics.median(values):{sign}7.3f} [{min(values):{sign}.3f} .. {max(values):{sign}.3f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    _run("import detnoise")  # warm the file cache and the bytecode caches once
    torch_s, detnoise_s = [], []
    for _ in range(args.repeats):
        torch_s.append(_run("import torch"))
        detnoise_s.append(_run("import detnoise"))
    try:
        load = " (load average %.1f %.1f %.1f)" % os.getloadavg()
    except OSError:
        load = ""
    versions = subprocess.run(
        [sys.executable, "-c", "import torch, detnoise; print(torch.__version__, detnoise.__file__)"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cpus{load}; torch, detnoise: {versions}")
    print(f"{args.repeats} alternating repeats, seconds per process: median [min .. max]")
    for index, what in ((0, "wall"), (1, "CPU (user+sys)")):
        print(f"{what}:")
        print(_row("import torch", [t[index] for t in torch_s]))
        print(_row("import detnoise", [d[index] for d in detnoise_s]))
        print(_row("difference", [d[index] - t[index] for d, t in zip(detnoise_s, torch_s)], "+"))


if __name__ == "__main__":
    main()
