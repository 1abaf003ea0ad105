"""Timings that hold still between runs: the median of many repeats, with the spread, the device and
the thread count. Used by ``detnoise demo`` and the scripts in benchmarks/.

One repeat is a group of calls long enough (about ``min_repeat_s``) that the clock's resolution and
the timer's own cost vanish; the median over the repeats ignores the few that another process on
the machine interrupted, and the interquartile range says how much the rest moved.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

MIN_REPEATS = 15


@dataclass(frozen=True)
class Timing:
    """Seconds per call: the median over ``repeats`` repeats and its interquartile range."""

    median_s: float
    q1_s: float
    q3_s: float
    repeats: int
    calls_per_repeat: int
    device: str
    threads: int | None  # CPU threads of torch and detnoise; None on a GPU

    def where(self) -> str:
        """'cpu, 2 threads' or 'cuda (NVIDIA H200)'."""
        if self.threads is None:
            return self.device
        return f"{self.device}, {self.threads} thread{'s' if self.threads != 1 else ''}"

    def ms(self) -> str:
        """'12.345 ms (IQR 12.1-12.9, 15 repeats)'."""
        return (f"{self.median_s * 1e3:.3f} ms (IQR {self.q1_s * 1e3:.3f}-{self.q3_s * 1e3:.3f}, "
                f"{self.repeats} repeats)")

    def us(self) -> str:
        """'5.20 us (IQR 5.1-5.4, 15 repeats)'."""
        return (f"{self.median_s * 1e6:.2f} us (IQR {self.q1_s * 1e6:.2f}-{self.q3_s * 1e6:.2f}, "
                f"{self.repeats} repeats)")

    def rate(self, elements: int) -> str:
        """Elements per second at the median, in G/s, with the interquartile range."""
        return (f"{elements / self.median_s / 1e9:.3f} G/s (IQR {elements / self.q3_s / 1e9:.3f}-"
                f"{elements / self.q1_s / 1e9:.3f})")

    def as_dict(self) -> dict[str, object]:
        return {"median_s": self.median_s, "q1_s": self.q1_s, "q3_s": self.q3_s, "repeats": self.repeats,
                "calls_per_repeat": self.calls_per_repeat, "device": self.device, "threads": self.threads}


def _synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def compare(functions: dict[str, Callable[[], object]], device: str = "cpu", repeats: int = MIN_REPEATS,
            min_repeat_s: float = 2e-3, threads: int | None = None) -> dict[str, Timing]:
    """Times several functions side by side: each repeat runs a group of calls of every function in
    turn, so a slow spell on a shared machine hits all of them alike and their ratios hold still.

    ``repeats`` must be >= 15. ``threads`` defaults to ``torch.get_num_threads()`` on the CPU (what
    the caller set for the functions compared) and is None on a GPU.

    >>> from detnoise.timing import compare
    >>> timings = compare({"short": lambda: sum(range(10)), "long": lambda: sum(range(10_000))}, min_repeat_s=1e-4)
    >>> timings["short"].median_s < timings["long"].median_s
    True
    """
    if repeats < MIN_REPEATS:
        raise ValueError(f"a stable timing needs at least {MIN_REPEATS} repeats, got {repeats}")
    calls = {}
    for name, function in functions.items():
        function()  # first call: allocations, lazy initialisation, caches
        _synchronize(device)
        start = time.perf_counter()
        function()
        _synchronize(device)
        once = max(time.perf_counter() - start, 1e-7)
        calls[name] = max(1, min(10_000, int(min_repeat_s / once)))
    samples: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            for _ in range(calls[name]):
                function()
            _synchronize(device)
            samples[name].append((time.perf_counter() - start) / calls[name])
    if threads is None and not device.startswith("cuda"):
        threads = torch.get_num_threads()
    timings = {}
    for name, values in samples.items():
        q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
        timings[name] = Timing(median, q1, q3, repeats, calls[name], device, threads)
    return timings


def measure(function: Callable[[], object], device: str = "cpu", repeats: int = MIN_REPEATS,
            min_repeat_s: float = 2e-3, threads: int | None = None) -> Timing:
    """Times one function: ``compare`` with a single entry.

    >>> from detnoise.timing import measure
    >>> timing = measure(lambda: sum(range(100)), min_repeat_s=1e-4)
    >>> timing.repeats, timing.q1_s <= timing.median_s <= timing.q3_s
    (15, True)
    """
    return compare({"": function}, device, repeats, min_repeat_s, threads)[""]
