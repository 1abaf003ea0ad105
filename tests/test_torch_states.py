"""Self-describing torch generator states (SPEC §3, issue 17): a plain torch generator's detnoise
position is a pure function of its state bytes, so a saved state replays in any process, after any
number of other draws, and an empty draw changes nothing.

The model here is written from SPEC §3's text alone (hashlib and struct, no detnoise internals):
each detnoise draw is checked against it for both the values and the state it leaves behind.
"""

from __future__ import annotations

import copy
import hashlib
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import detnoise
from detnoise import _resolve, reference

from conftest import assert_bits_equal


@pytest.fixture(autouse=True)
def keep_global_rng():
    state = torch.get_rng_state()
    yield
    torch.set_rng_state(state)


# ---- SPEC §3 as an independent model ------------------------------------------------------------

def spec_check(seed: int, stream: int, block: int, state: bytes) -> int:
    bound = state[0:24] + state[5016:5056]
    message = b"detnoise/torch-position/v1" + struct.pack("<QQQ", seed, stream, block) + bound
    return int.from_bytes(hashlib.sha256(message).digest()[:8], "little")


def spec_position(state: bytes) -> tuple[int, int, int]:
    """SPEC §3 'Reading a position' for a 5056-byte CPU state (rules 1, 2 and 4; no table)."""
    r = [int.from_bytes(state[24 + 8 * k : 28 + 8 * k], "little") for k in range(8)]
    seed, stream, block, check = (r[0] | r[1] << 32, r[2] | r[3] << 32, r[4] | r[5] << 32, r[6] | r[7] << 32)
    if check == spec_check(seed, stream, block, state):
        return seed, stream, block
    initial_seed = struct.unpack_from("<q", state, 0)[0] % (1 << 64)
    if state == torch.Generator().manual_seed(initial_seed).get_state().numpy().tobytes():
        return initial_seed, 0, 0
    stream = int.from_bytes(hashlib.sha256(b"detnoise/torch-state/v1" + state).digest()[:8], "little")
    return initial_seed, stream, 0


def spec_written(state: bytes, seed: int, stream: int, block: int) -> bytes:
    """SPEC §3 'Writing a position' on the CPU: slots 0-7 hold r0..r7, high halves 0."""
    check = spec_check(seed, stream, block, state)
    words = bytearray(state)
    for k, value in enumerate((seed, stream, block, check)):
        for half, part in enumerate((value & 0xFFFFFFFF, value >> 32)):
            slot = 24 + 8 * (2 * k + half)
            words[slot : slot + 8] = part.to_bytes(4, "little") + bytes(4)
    return bytes(words)


def state_bytes(generator: torch.Generator) -> bytes:
    return generator.get_state().numpy().tobytes()


def checked_draw(generator: torch.Generator, n: int) -> torch.Tensor:
    """detnoise.randn(n) from ``generator``, checked against the model: values and the new state."""
    before = state_bytes(generator)
    seed, stream, block = spec_position(before)
    values = detnoise.randn(n, generator=generator)
    expected = reference.normal(n, "float32", seed, stream, block)
    assert_bits_equal(values, expected, f"draw of {n} at {(seed, stream, block)}")
    blocks = (n + 3) // 4
    after = spec_written(before, seed, stream, block + blocks) if blocks else before
    assert state_bytes(generator) == after
    return values


def test_the_spec_example_state() -> None:
    g = torch.Generator().manual_seed(3)
    detnoise.randn(8, generator=g)
    state = state_bytes(g)
    r = [int.from_bytes(state[24 + 8 * k : 28 + 8 * k], "little") for k in range(8)]
    assert r == [3, 0, 0, 0, 2, 0, 0xF24E1655, 0x4E4E1B0A]  # the numbers printed in SPEC §3
    assert state[0:24].hex() == "030000000000000001000000010000000000000000000000"
    assert state[5016:] == bytes(40)


def test_draws_follow_the_model_through_torch_draws_and_reseeds() -> None:
    g = torch.Generator().manual_seed(12)
    checked_draw(g, 5)
    checked_draw(g, 0)
    checked_draw(g, 9)
    torch.randn(20, generator=g)  # torch regenerates the Twister: the record is gone
    checked_draw(g, 3)
    torch.randn(1, generator=g)  # only the normal cache changes: the check covers it
    assert spec_position(state_bytes(g))[1] != 0
    checked_draw(g, 4)
    torch.rand(1, generator=g)  # only `left`/`next` change: the check covers them too
    checked_draw(g, 4)
    g.manual_seed(12)
    checked_draw(g, 5)


def test_an_empty_draw_changes_no_state_for_any_detnoise_function() -> None:
    empties = {
        "randn": lambda g: detnoise.randn(0, generator=g),
        "rand": lambda g: detnoise.rand(0, 3, generator=g),
        "random_bits": lambda g: detnoise.random_bits(0, generator=g),
        "normal_": lambda g: detnoise.normal_(torch.empty(0), generator=g),
        "uniform_": lambda g: detnoise.uniform_(torch.empty(2, 0), generator=g),
        "randn_like": lambda g: detnoise.randn_like(torch.empty(0, 4), generator=g),
        "rand_like": lambda g: detnoise.rand_like(torch.empty(0), generator=g),
        "randn_tensor": lambda g: detnoise.randn_tensor((0, 4), generator=g),
        "randn_slice": lambda g: detnoise.randn_slice((0, 8), slice(0, 0), generator=g),
    }
    for name, empty in empties.items():
        g = torch.Generator().manual_seed(5)
        detnoise.randn(4, generator=g)
        before = state_bytes(g)
        empty(g)
        assert state_bytes(g) == before, name
        # The repro: afterwards a new generator seeded alike still starts at block 0.
        assert_bits_equal(detnoise.randn(4, generator=torch.Generator().manual_seed(5)),
                          reference.normal(4, "float32", 5, 0, 0), name)


def test_a_state_replays_after_100000_other_draws() -> None:
    g = torch.Generator().manual_seed(21)
    detnoise.randn(6, generator=g)
    saved = g.get_state()
    first = detnoise.randn(6, generator=g)
    others = [torch.Generator().manual_seed(seed) for seed in range(4)]
    for index in range(100_000):
        detnoise.randn(1, generator=others[index % 4])
    g.set_state(saved)
    assert_bits_equal(detnoise.randn(6, generator=g), first)
    assert_bits_equal(first, reference.normal(6, "float32", 21, 0, 2))


class FakeCudaGenerator:
    """A CUDA torch.Generator as the resolver sees it (no GPU here): (seed, Philox offset)."""

    device = torch.device("cuda", 0)

    def __init__(self, seed: int, offset: int = 0) -> None:
        self.seed, self.offset = seed, offset

    def initial_seed(self) -> int:
        return self.seed

    def get_offset(self) -> int:
        return self.offset

    def set_offset(self, offset: int) -> None:
        if offset % 4:
            raise RuntimeError("offset must be a multiple of 4")  # torch's CUDA rule
        self.offset = offset

    def get_state(self) -> torch.Tensor:
        return torch.tensor([self.seed, self.offset - (1 << 64) if self.offset >= 1 << 63 else self.offset],
                            dtype=torch.int64).view(torch.uint8)

    def set_state(self, state: torch.Tensor) -> None:
        self.seed, self.offset = (value % (1 << 64) for value in state.view(torch.int64).tolist())


def test_cuda_stream_zero_positions_live_in_the_offset(monkeypatch) -> None:
    fake = FakeCudaGenerator(3)
    _resolve.reserve(fake, 2)
    assert fake.offset == 0xD700000000000008  # SPEC §3's example
    _resolve.reserve(fake, 5)
    assert fake.offset == 0xD7 << 56 | 7 << 2
    monkeypatch.setattr(_resolve, "_table", type(_resolve._table)())  # as in a fresh process
    assert _resolve.position(FakeCudaGenerator(3, fake.offset)) == (3, 0, 7)
    assert _resolve.position(FakeCudaGenerator(3, 0)) == (3, 0, 0)
    # The largest block that fits, and the first that does not (then a table mark).
    edge = FakeCudaGenerator(3, 0xD7 << 56 | ((1 << 54) - 2) << 2)
    _resolve.reserve(edge, 1)
    assert _resolve.position(edge) == (3, 0, (1 << 54) - 1) and edge.offset >> 56 == 0xD7
    _resolve.reserve(edge, 1)
    assert edge.offset >> 56 == 0xD6 and _resolve.position(edge) == (3, 0, 1 << 54)


def test_cuda_derived_streams_are_table_marks_that_replay_in_the_process_only(monkeypatch) -> None:
    fake = FakeCudaGenerator(9, 4000)  # torch drew from it
    stream = _resolve.derived_stream((9).to_bytes(8, "little") + (4000).to_bytes(8, "little"))
    assert _resolve.reserve(fake, 3).stream == stream
    marked = fake.offset
    assert marked >> 56 == 0xD6 and marked % 4 == 0
    assert _resolve.position(FakeCudaGenerator(9, marked)) == (9, stream, 3)
    monkeypatch.setattr(_resolve, "_table", type(_resolve._table)())  # another process: rule 4
    other = _resolve.derived_stream((9).to_bytes(8, "little") + marked.to_bytes(8, "little"))
    assert _resolve.position(FakeCudaGenerator(9, marked)) == (9, other, 0)


def test_the_table_drops_the_least_recently_used_entry(monkeypatch) -> None:
    monkeypatch.setattr(_resolve, "_table", type(_resolve._table)())
    monkeypatch.setattr(_resolve, "_TABLE_SIZE", 2)
    kept = FakeCudaGenerator(1, 4)
    _resolve.reserve(kept, 1)
    second = FakeCudaGenerator(2, 4)
    _resolve.reserve(second, 1)
    assert _resolve.position(kept)[2] == 1  # a lookup refreshes the entry ...
    _resolve.reserve(FakeCudaGenerator(3, 4), 1)  # ... so this evicts `second`, not `kept`
    assert _resolve.position(kept)[2] == 1
    assert _resolve.position(second)[2] == 0


# ---- replay in a fresh process ------------------------------------------------------------------

def run_python(code: str, *args: str) -> None:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


# Both processes run the same steps; the first saves states (as accelerate's save_state does with
# torch.get_rng_state()) after `resume_at` steps, the second loads them and runs the rest.
_TRAINING_LOOP = """
import sys, torch, detnoise
mode, path = sys.argv[1], sys.argv[2]
steps, resume_at = 6, 3

def step(g):
    # A step as a sampler or a training loop draws: patched torch samplers and a plain generator.
    return [torch.randn(2, 3), torch.rand(5), torch.randint(0, 1000, (4,)), torch.randn_like(torch.empty(3, 2)),
            detnoise.randn(7, generator=g), torch.empty(4).normal_(generator=g)]

with detnoise.patch_torch():
    if mode == "run":
        torch.manual_seed(1234)
        g = torch.Generator().manual_seed(99)
        outputs = []
        for index in range(steps):
            if index == resume_at:
                torch.save({"rng": torch.get_rng_state(), "g": g.get_state()}, path + ".ckpt")
            outputs.append(step(g))
        torch.save(outputs, path + ".run")
    else:
        saved = torch.load(path + ".ckpt")
        torch.set_rng_state(saved["rng"])
        g = torch.Generator()
        g.set_state(saved["g"])
        torch.save([step(g) for _ in range(resume_at, steps)], path + ".resumed")
"""


def test_a_resumed_run_equals_the_uninterrupted_one(tmp_path: Path) -> None:
    path = str(tmp_path / "loop")
    run_python(_TRAINING_LOOP, "run", path)
    run_python(_TRAINING_LOOP, "resume", path)
    uninterrupted = torch.load(path + ".run")
    resumed = torch.load(path + ".resumed")
    assert len(resumed) == 3
    for index, (expected, actual) in enumerate(zip(uninterrupted[3:], resumed)):
        for draw, (a, b) in enumerate(zip(expected, actual)):
            assert_bits_equal(b, a, f"step {index + 3}, draw {draw}")
    # The plain generator's draws are stream 0 of seed 99, continued across the restart
    # (each step takes 2 blocks for randn(7), then 1 for normal_ of 4).
    for index, values in enumerate(resumed):
        block = 3 * (index + 3)
        assert_bits_equal(values[4], reference.normal(7, "float32", 99, 0, block))
        assert_bits_equal(values[5], reference.normal(4, "float32", 99, 0, block + 2))


def test_a_saved_cpu_state_replays_in_a_fresh_process(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(77)
    detnoise.randn(10, generator=g)
    torch.save(g.get_state(), tmp_path / "state.pt")
    expected = detnoise.randn(6, generator=g)
    run_python(
        """
        import sys, torch, detnoise
        g = torch.Generator()
        g.set_state(torch.load(sys.argv[1] + "/state.pt"))
        torch.save(detnoise.randn(6, generator=g), sys.argv[1] + "/next.pt")
        """,
        str(tmp_path),
    )
    assert_bits_equal(torch.load(tmp_path / "next.pt"), expected)
    assert_bits_equal(expected, reference.normal(6, "float32", 77, 0, 3))


def test_a_cuda_state_replays_in_a_fresh_process(tmp_path: Path) -> None:
    fake = FakeCudaGenerator(2**64 - 5)
    _resolve.reserve(fake, 11)
    run_python(
        f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_torch_states import FakeCudaGenerator
        from detnoise import _resolve
        print(_resolve.position(FakeCudaGenerator({fake.seed}, {fake.offset})), file=open(sys.argv[1], "w"))
        """,
        str(tmp_path / "position.txt"),
    )
    assert (tmp_path / "position.txt").read_text().strip() == str((2**64 - 5, 0, 11))


_DATALOADER = """
import sys, torch, detnoise
from torch.utils.data import DataLoader, Dataset, get_worker_info

class Noise(Dataset):
    def __len__(self):
        return 8
    def __getitem__(self, index):
        return get_worker_info().id, torch.randn(3), torch.randint(0, 10**6, (2,)), torch.initial_seed()

with detnoise.patch_torch():
    torch.manual_seed(int(sys.argv[2]))
    loader = DataLoader(Noise(), batch_size=None, num_workers=2, multiprocessing_context="fork")
    torch.save([item for item in loader], sys.argv[1])
"""


def test_dataloader_workers_are_deterministic_and_distinct(tmp_path: Path) -> None:
    runs = []
    for name in ("a", "b"):
        run_python(_DATALOADER, str(tmp_path / name), "5")
        runs.append(torch.load(tmp_path / name))
    for first, second in zip(*runs):
        assert first[0] == second[0]
        assert_bits_equal(first[1], second[1])
        assert_bits_equal(first[2], second[2])
    by_worker = {worker: [item for item in runs[0] if item[0] == worker] for worker in (0, 1)}
    assert len(by_worker[0]) == len(by_worker[1]) == 4
    assert not torch.equal(by_worker[0][0][1], by_worker[1][0][1])  # as torch's workers differ
    # Each worker's first draw is block 0 of its own seed (torch seeds worker i with base + i).
    for items in by_worker.values():
        assert_bits_equal(items[0][1], reference.normal(3, "float32", items[0][3], 0, 0))
    assert by_worker[1][0][3] == by_worker[0][0][3] + 1


# ---- property: random interleavings against the model --------------------------------------------

_OPERATION = st.one_of(
    st.tuples(st.just("seed"), st.sampled_from([0, 3, 2**63, 2**64 - 1])),
    st.tuples(st.just("draw"), st.sampled_from([0, 1, 3, 4, 5, 17])),
    st.tuples(st.just("torch"), st.sampled_from(["rand1", "randn1", "randn20", "randperm5"])),
    st.tuples(st.just("save"), st.just(0)),
    st.tuples(st.just("restore"), st.integers(0, 3)),
    st.tuples(st.just("deepcopy"), st.just(0)),
    st.tuples(st.just("fork_rng"), st.sampled_from([0, 2, 5])),
)


def _run_interleaving(operations: list[tuple[str, object]]) -> None:
    torch.manual_seed(0)
    current = torch.default_generator
    saved: list[torch.Tensor] = []
    for kind, argument in operations:
        if kind == "seed":
            current.manual_seed(argument)
        elif kind == "draw":
            checked_draw(current, argument)
        elif kind == "torch":
            {"rand1": lambda: torch.rand(1, generator=current), "randn1": lambda: torch.randn(1, generator=current),
             "randn20": lambda: torch.randn(20, generator=current),
             "randperm5": lambda: torch.randperm(5, generator=current)}[argument]()
        elif kind == "save":
            saved.append(current.get_state())
        elif kind == "restore" and saved:
            current.set_state(saved[argument % len(saved)])
        elif kind == "deepcopy":
            current = copy.deepcopy(current)
        elif kind == "fork_rng":
            outside = state_bytes(torch.default_generator)
            with torch.random.fork_rng(devices=[]):
                checked_draw(torch.default_generator, argument)
            assert state_bytes(torch.default_generator) == outside


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_OPERATION, min_size=1, max_size=25))
def test_interleavings_follow_spec_section_3(operations) -> None:
    _run_interleaving(operations)


@pytest.mark.slow
@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_OPERATION, min_size=1, max_size=60))
def test_interleavings_follow_spec_section_3_long(operations) -> None:
    _run_interleaving(operations)


def test_model_agrees_with_the_resolver_on_torch_made_states() -> None:
    g = torch.Generator().manual_seed(8)
    torch.randn(30, generator=g)
    assert spec_position(state_bytes(g)) == _resolve.position(g)
    assert np.uint64(spec_position(state_bytes(g))[1]) != 0


def test_undo_of_a_draw_from_a_recorded_state_restores_its_bytes() -> None:
    g = torch.Generator().manual_seed(31)
    detnoise.randn(4, generator=g)
    before = state_bytes(g)
    taken = _resolve.reserve(g, 3)
    assert state_bytes(g) == spec_written(before, 31, 0, 4)
    taken.undo()
    assert state_bytes(g) == before
    torch.rand(1, generator=g)  # used since: an undo must not touch it
    after_torch = state_bytes(g)
    _resolve.reserve(g, 2).undo()
    assert state_bytes(g) == after_torch


def test_a_torch_cuda_draw_after_a_record_moves_the_block_forward() -> None:
    # SPEC §3: torch adds multiples of 4 to a CUDA offset; a record's block moves forward with it.
    fake = FakeCudaGenerator(5)
    _resolve.reserve(fake, 7)
    fake.offset += 4 * 3  # what torch's own CUDA draw does to the offset
    assert _resolve.position(fake) == (5, 0, 10)
    assert _resolve.reserve(fake, 1).start == 10
