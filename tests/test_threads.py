"""The CPU kernel's output does not depend on the thread count."""

from __future__ import annotations

import os
import select
import signal
import threading
import warnings

import pytest
import torch

import detnoise

from conftest import DTYPES, assert_bits_equal


@pytest.fixture
def restore_threads():
    yield
    detnoise.set_num_threads(None)


@pytest.mark.parametrize("dtype_name", list(DTYPES))
@pytest.mark.parametrize("n", [2**17 + 3, 2**19 + 1, 3 * 2**18 - 2])
def test_one_thread_equals_many(restore_threads, dtype_name: str, n: int) -> None:
    dtype = DTYPES[dtype_name]
    detnoise.set_num_threads(1)
    one = detnoise.normal(n, seed=7, offset=2**32 - 5, dtype=dtype)
    one_u = detnoise.uniform(n, seed=7, dtype=dtype)
    for threads in (2, 3, 8):
        detnoise.set_num_threads(threads)
        assert_bits_equal(detnoise.normal(n, seed=7, offset=2**32 - 5, dtype=dtype), one, f"{threads} threads")
        assert_bits_equal(detnoise.uniform(n, seed=7, dtype=dtype), one_u, f"{threads} threads")


def test_thread_setting_follows_torch_by_default(restore_threads) -> None:
    detnoise.set_num_threads(None)
    assert detnoise.get_num_threads() == torch.get_num_threads()
    detnoise.set_num_threads(3)
    assert detnoise.get_num_threads() == 3


@pytest.mark.parametrize("bad", [0, -1])
def test_bad_thread_counts(restore_threads, bad: int) -> None:
    with pytest.raises(ValueError):
        detnoise.set_num_threads(bad)
    with pytest.raises(TypeError):
        detnoise.set_num_threads(2.0)  # type: ignore[arg-type]


def test_concurrent_multithreaded_draws_share_the_pool(restore_threads) -> None:
    # Eight Python threads, each draw split over three native threads: the pool serves all of
    # them at once and every draw is still the one-thread result.
    detnoise.set_num_threads(1)
    n = 3 * 2**17 + 1
    expected = [detnoise.normal(n, seed=seed) for seed in range(8)]
    detnoise.set_num_threads(3)
    results: dict[int, torch.Tensor] = {}

    def worker(seed: int) -> None:
        for _ in range(5):
            results[seed] = detnoise.normal(n, seed=seed)
            assert_bits_equal(results[seed], expected[seed], f"seed {seed}")

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == list(range(8))
    for seed in range(8):
        assert_bits_equal(results[seed], expected[seed], f"seed {seed}")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_draws_with_threads(restore_threads) -> None:
    # The parent's pool threads do not exist in a forked child (DataLoader workers are forked):
    # the child must start its own pool rather than wait for threads that are gone.
    detnoise.set_num_threads(3)
    n = 3 * 2**17
    expected = detnoise.normal(n, seed=4)  # starts the parent's pool
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork() in a threaded process
        pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            value = detnoise.normal(n, seed=4)
            # Compared in numpy: torch's own OpenMP ops can hang in a forked child (libgomp is not
            # fork-safe once the parent used its threads), which is not what this test is about.
            same = value.numpy().tobytes() == expected.numpy().tobytes()
            os.write(write_end, b"ok" if same else b"no")
        finally:
            os._exit(0)
    os.close(write_end)
    try:
        ready, _, _ = select.select([read_end], [], [], 120)
        answer = os.read(read_end, 2) if ready else b"hung"
    finally:
        os.close(read_end)
        if answer == b"hung":
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    assert answer == b"ok"
