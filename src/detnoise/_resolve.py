"""The generator resolver: the one place that turns a generator into blocks of a detnoise stream.

Every generator-driven draw (``detnoise.randn`` and friends, ``randn_tensor``, ``randn_slice``, the
torch-level patch, the Brownian tree) asks :func:`reserve` for its blocks; no other module reads a
torch generator's state.

Note [Torch generator positions]
--------------------------------
A ``detnoise.Generator`` carries its own (seed, stream, offset). A plain ``torch.Generator`` (CPU
or CUDA; ``None`` in the torch-level patch means ``torch.default_generator``) has no detnoise
position of its own: its position is a *pure function of its torch state bytes*, so torch's
semantics carry over in every process (``manual_seed`` restarts; ``set_state`` replays, also a
state saved with ``torch.save`` and loaded elsewhere; ``deepcopy``/``clone_state``/``fork_rng``
restore). docs/SPEC.md §3 states the encoding normatively:

- after a draw of blocks [o, P) of (seed, stream), detnoise writes a *position record* into the
  state: on the CPU, (seed, stream, P) and a SHA-256 check value over them and the rest of the
  state's non-Mersenne-Twister fields, into the low halves of MT words 0-7; on CUDA, for stream 0
  and P < 2^54, the Philox offset ``0xD7 << 56 | P << 2``. A state that holds a valid record is
  that position;
- the state right after ``manual_seed(s)`` is block 0 of stream 0 under seed ``s``;
- any other state (torch itself drew from it) starts stream ``derived_stream(state bytes)`` at
  block 0 under ``seed = initial_seed()``: deterministic and replayable, but device-dependent,
  because the torch draw that led to that state was.

The one bound: a CUDA generator on a derived stream, or past block 2^54, and generators of other
devices get a marked state and a process-wide table entry (least recently used dropped beyond
``_TABLE_SIZE``) instead, which replays only inside the process. An empty draw changes no state.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections import OrderedDict
from typing import Any, Callable, Optional

import numpy as np
import torch

from detnoise import _layout
from detnoise._native import _core
from detnoise.generator import Generator

__all__ = ["Reservation", "reserve", "position", "derived_stream"]

_MASK64 = (1 << 64) - 1
_TABLE_SIZE = 1 << 16  # marked states that carry no record (CUDA derived streams, other devices)
_FRESH_CACHE_SIZE = 64

# CPU generator state (torch's CPUGeneratorImplState, 5056 bytes): a 24-byte header (initial seed,
# left, seeded, next), 624 Mersenne Twister words in u64 slots of which torch keeps the low 32 bits,
# then 40 bytes of normal-sampler cache. The record (csrc/include/detnoise/torch_state.h) sits in the
# low halves of MT slots 0-7; its check covers the header and the cache, which torch's draws change
# even where they leave the words alone.
_CPU_STATE_SIZE = 5056
_CPU_WORDS_BYTE = 24
_CPU_RECORD_END = _CPU_WORDS_BYTE + 8 * 8

# CUDA generator state (seed, Philox offset): offsets torch makes are small multiples of 4; detnoise
# marks its own in the top byte. 0xD7: stream 0, block in bits 2-55. 0xD6: a table entry.
_CUDA_RECORD_MARK = 0xD7
_CUDA_TABLE_MARK = 0xD6
_CUDA_BLOCK_LIMIT = 1 << 54


class Reservation:
    """Blocks ``[start, start + blocks)`` of stream ``stream`` under ``seed``, taken for one draw.

    ``undo()`` gives them back after a failed draw: the generator returns to the state it had
    before, unless something drew from it or changed it since (then nothing happens).
    """

    __slots__ = ("seed", "stream", "start", "blocks", "_undo")

    def __init__(self, seed: int, stream: int, start: int, blocks: int, undo: Optional[Callable[[], None]]) -> None:
        self.seed = seed
        self.stream = stream
        self.start = start
        self.blocks = blocks
        self._undo = undo

    @property
    def end(self) -> int:
        """The block after the reservation: where the generator stands now."""
        return self.start + self.blocks

    def undo(self) -> None:
        """Gives the blocks back if the generator has not been used or changed since."""
        if self._undo is not None:
            undo, self._undo = self._undo, None
            undo()

    def __repr__(self) -> str:
        return f"Reservation(seed={self.seed}, stream={self.stream}, start={self.start}, blocks={self.blocks})"


def reserve(generator: Any, blocks: int, *, default: Any = None) -> Reservation:
    """Takes ``blocks`` blocks from ``generator`` for one draw and returns where they are.

    Parameters
    ----------
    generator : detnoise.Generator, torch.Generator or None
        ``None`` means ``default`` (``detnoise.default_generator`` for detnoise's own functions,
        ``torch.default_generator`` for the torch-level patch and ``randn_tensor``).
    blocks : int
        Blocks the draw consumes (``_layout.blocks_for``); 0 takes nothing and changes no state.

    Raises ``ValueError`` (changing nothing) if the blocks would pass block 2**64 and
    ``TypeError`` for anything that is not a generator. Call ``undo()`` on the result if the draw
    then fails.
    """
    if generator is None:
        generator = default
        if generator is None:
            raise TypeError("reserve: no generator and no default generator given")
    # type() first: isinstance against torch.Generator runs a Python-level metaclass check (~1 us).
    if type(generator) is not torch.Generator:
        if isinstance(generator, Generator):
            taken = generator._reserve(blocks)
            return Reservation(taken[0], taken[1], taken[2], blocks, lambda: generator._unreserve(taken))
        if not isinstance(generator, torch.Generator) and not _looks_like_generator(generator):
            raise TypeError(f"generator must be a torch.Generator or detnoise.Generator, got {type(generator).__name__}")
    access = _access_for(generator)
    with _lock:
        return access.reserve(generator, blocks)


def position(generator: Any, *, default: Any = None) -> tuple[int, int, int]:
    """(seed, stream, next block) of ``generator`` without taking anything."""
    if generator is None:
        generator = default
    if type(generator) is not torch.Generator and isinstance(generator, Generator):
        return generator._snapshot()
    access = _access_for(generator)
    with _lock:
        return access.position(generator, access.read(generator))


def derived_stream(state_bytes: bytes) -> int:
    """The stream id for a torch state that holds no position: the first 8 bytes (little-endian) of
    SHA-256("detnoise/torch-state/v1" + state bytes). See SPEC §3."""
    return int.from_bytes(hashlib.sha256(b"detnoise/torch-state/v1" + state_bytes).digest()[:8], "little")


# ---- internals -----------------------------------------------------------------------------

_lock = threading.Lock()
# Marked state key -> (seed, stream, next block), for the states that cannot hold a record.
_table: OrderedDict[Any, tuple[int, int, int]] = OrderedDict()
_fresh_cpu: OrderedDict[int, bytes] = OrderedDict()


def _looks_like_generator(value: object) -> bool:
    # Test doubles of CUDA generators (no GPU here) quack like one.
    return all(hasattr(value, name) for name in ("device", "initial_seed", "get_state", "set_state"))


def _splitmix64(value: int) -> int:
    value = (value + 0x9E3779B97F4A7C15) & _MASK64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK64
    return value ^ (value >> 31)


def _tag(seed: int, stream: int, end: int) -> int:
    """A nonzero 64-bit tag of (seed, stream, end) for the table-backed marks: the marked state
    differs from the old one, from any fresh state, and from what a draw of another size leaves."""
    return _splitmix64(_splitmix64(_splitmix64(seed) ^ stream) ^ end) | 1


def _remember(key: Any, where: tuple[int, int, int]) -> None:
    _table[key] = where
    _table.move_to_end(key)
    if len(_table) > _TABLE_SIZE:
        _table.popitem(last=False)


def _marked_bytes(state: bytes, where: tuple[int, int, int]) -> bytes:
    """``state`` with its last 8 bytes XORed with the tag of ``where``."""
    marked = bytearray(state)
    for index, byte in enumerate(_tag(*where).to_bytes(8, "little")):
        marked[-8 + index] ^= byte
    return bytes(marked)


def _marked(kind: str, state: bytes, where: tuple[int, int, int]) -> bytes:
    """A state that cannot hold a record, marked for ``where``, which the table then maps back to
    ``where`` (this process only)."""
    marked = _marked_bytes(state, where)
    _remember((kind, marked), where)
    return marked


def _recall(key: Any) -> Optional[tuple[int, int, int]]:
    where = _table.get(key)
    if where is not None:
        _table.move_to_end(key)  # least recently *used* is dropped first
    return where


class _StateAccess:
    """How to read one kind of torch generator state, find its position and record a new one."""

    def reserve(self, generator: Any, blocks: int) -> Reservation:
        """:func:`reserve` for this kind of state; called with ``_lock`` held."""
        state = self.read(generator)
        seed, stream, start = self.recorded(state) or self.unrecorded(generator, state)
        if blocks == 0:  # an empty draw takes nothing and leaves the torch state as it was
            return Reservation(seed, stream, start, 0, None)
        _layout.check_generator_room(start, blocks)
        written = self.record(generator, state, seed, stream, start + blocks)
        return Reservation(seed, stream, start, blocks, functools.partial(self._undo_locked, generator, written))

    def _undo_locked(self, generator: Any, written: Any) -> None:
        with _lock:
            self.undo(generator, written)

    def read(self, generator: Any) -> Any:
        raise NotImplementedError

    def position(self, generator: Any, state: Any) -> tuple[int, int, int]:
        """SPEC §3's rules in order: a valid record, a fresh state, else a derived stream."""
        return self.recorded(state) or self.unrecorded(generator, state)

    def unrecorded(self, generator: Any, state: Any) -> tuple[int, int, int]:
        """The position of a state without a record: fresh after manual_seed, else derived."""
        seed = generator.initial_seed() % (1 << 64)
        if self.is_fresh(generator, state, seed):
            return seed, 0, 0
        return seed, derived_stream(self.as_bytes(state)), 0

    def recorded(self, state: Any) -> Optional[tuple[int, int, int]]:
        raise NotImplementedError

    def is_fresh(self, generator: Any, state: Any, seed: int) -> bool:
        raise NotImplementedError

    def as_bytes(self, state: Any) -> bytes:
        raise NotImplementedError

    def record(self, generator: Any, state: Any, seed: int, stream: int, block: int) -> Any:
        """Writes the state that stands at ``block`` of (seed, stream); returns what ``undo`` needs."""
        raise NotImplementedError

    def undo(self, generator: Any, written: Any) -> None:
        raise NotImplementedError


class _CpuAccess(_StateAccess):
    """A CPU generator. The state is (tensor, numpy view, bytes). The record of a 5056-byte state is
    read and written in place by the extension (csrc/include/detnoise/torch_state.h: SHA-256 in C++;
    in Python it cost more than issue 17's budget of 5 us over a detnoise.Generator's draw), and the
    tensor goes back through set_state without another copy."""

    def reserve(self, generator: Any, blocks: int) -> Reservation:
        tensor = generator.get_state()
        if blocks and tensor.numel() == _CPU_STATE_SIZE:  # the common case: a recorded state
            found = _core.torch_record_advance(tensor.data_ptr(), blocks)
            if found is not None:
                generator.set_state(tensor)
                seed, stream, start = found
                written = (seed, stream, start, start + blocks, None)
                return Reservation(seed, stream, start, blocks, functools.partial(self._undo_locked, generator, written))
        return super().reserve(generator, blocks)

    def read(self, generator: Any) -> tuple[torch.Tensor, np.ndarray, bytes]:
        state = generator.get_state()
        array = state.numpy()
        return state, array, array.tobytes()

    def recorded(self, state: tuple[torch.Tensor, np.ndarray, bytes]) -> Optional[tuple[int, int, int]]:
        if len(state[2]) != _CPU_STATE_SIZE:  # a layout torch may use one day: the table
            return _recall(("cpu", state[2]))
        return _core.torch_record_read(state[0].data_ptr())

    def is_fresh(self, generator: Any, state: tuple[torch.Tensor, np.ndarray, bytes], seed: int) -> bool:
        fresh = _fresh_cpu.get(seed)
        if fresh is None:
            twin = torch.Generator()
            twin.manual_seed(seed)
            fresh = twin.get_state().numpy().tobytes()
            _fresh_cpu[seed] = fresh
            if len(_fresh_cpu) > _FRESH_CACHE_SIZE:
                _fresh_cpu.popitem(last=False)
        return state[2] == fresh

    def as_bytes(self, state: tuple[torch.Tensor, np.ndarray, bytes]) -> bytes:
        return state[2]

    def record(self, generator: Any, state: tuple[torch.Tensor, np.ndarray, bytes], seed: int, stream: int,
               block: int) -> tuple[int, int, int, int, Optional[bytes]]:
        tensor, data = state[0], state[2]
        if len(data) != _CPU_STATE_SIZE:
            tensor = torch.frombuffer(bytearray(_marked("cpu", data, (seed, stream, block))), dtype=torch.uint8)
            generator.set_state(tensor)
            return seed, stream, -1, block, data
        _core.torch_record_write(tensor.data_ptr(), seed, stream, block)
        generator.set_state(tensor)
        return seed, stream, -1, block, data[_CPU_WORDS_BYTE:_CPU_RECORD_END]

    def undo(self, generator: Any, written: tuple[int, int, int, int, Optional[bytes]]) -> None:
        """Puts back the state before the draw if the generator still stands where the draw left
        it: the old record (``before`` None) or the old bytes of the record's slots."""
        seed, stream, start, end, before = written
        current = generator.get_state()
        if len(before or b"") == current.numel():  # another layout: the whole marked state
            if current.numpy().tobytes() == _marked_bytes(before, (seed, stream, end)):
                generator.set_state(torch.frombuffer(bytearray(before), dtype=torch.uint8))
            return
        if _core.torch_record_read(current.data_ptr()) != (seed, stream, end):
            return
        if before is None:
            _core.torch_record_write(current.data_ptr(), seed, stream, start)
        else:
            current.numpy()[_CPU_WORDS_BYTE:_CPU_RECORD_END] = np.frombuffer(before, np.uint8)
        generator.set_state(current)


class _CudaAccess(_StateAccess):
    """A CUDA generator: the state is (seed, Philox offset), 16 bytes. Read and written as two
    int64 (``get_offset``/``set_offset`` where torch has them, else one int64 view of the state
    tensor) instead of tolist()/tensor() round trips, which cost tens of microseconds."""

    def read(self, generator: Any) -> tuple[int, int]:
        get_offset = getattr(generator, "get_offset", None)
        if get_offset is not None:
            return generator.initial_seed() % (1 << 64), get_offset() % (1 << 64)
        seed, offset = generator.get_state().view(torch.int64).tolist()
        return seed % (1 << 64), offset % (1 << 64)

    def _write(self, generator: Any, state: tuple[int, int]) -> None:
        set_offset = getattr(generator, "set_offset", None)
        if set_offset is not None and generator.initial_seed() % (1 << 64) == state[0]:
            set_offset(state[1])
            return
        packed = torch.tensor([_as_int64(state[0]), _as_int64(state[1])], dtype=torch.int64)
        generator.set_state(packed.view(torch.uint8))

    def recorded(self, state: tuple[int, int]) -> Optional[tuple[int, int, int]]:
        mark = state[1] >> 56
        if mark == _CUDA_RECORD_MARK:
            return state[0], 0, (state[1] >> 2) & (_CUDA_BLOCK_LIMIT - 1)
        if mark == _CUDA_TABLE_MARK:
            return _recall(("cuda", state[0], state[1]))
        return None

    def is_fresh(self, generator: Any, state: tuple[int, int], seed: int) -> bool:
        return state[1] == 0

    def as_bytes(self, state: tuple[int, int]) -> bytes:
        return state[0].to_bytes(8, "little") + state[1].to_bytes(8, "little")

    def record(self, generator: Any, state: tuple[int, int], seed: int, stream: int, block: int) -> tuple[tuple[int, int], tuple[int, int]]:
        if stream == 0 and block < _CUDA_BLOCK_LIMIT:
            offset = _CUDA_RECORD_MARK << 56 | block << 2
        else:  # does not fit in 64 bits: a marked offset and a table entry, this process only
            offset = _CUDA_TABLE_MARK << 56 | (_tag(seed, stream, block) & (_CUDA_BLOCK_LIMIT - 1)) << 2
            _remember(("cuda", state[0], offset), (seed, stream, block))
        written = (state[0], offset)
        self._write(generator, written)
        return state, written

    def undo(self, generator: Any, written: tuple[tuple[int, int], tuple[int, int]]) -> None:
        if self.read(generator) == written[1]:
            self._write(generator, written[0])


class _GenericAccess(_StateAccess):
    """Other devices (MPS, XPU, ...): the state tensor's bytes, marked and remembered in the table
    (this process only); fresh states from a seeded twin."""

    def read(self, generator: Any) -> bytes:
        return generator.get_state().cpu().numpy().tobytes()

    def recorded(self, state: bytes) -> Optional[tuple[int, int, int]]:
        return _recall(("other", state))

    def is_fresh(self, generator: Any, state: bytes, seed: int) -> bool:
        twin = torch.Generator(device=generator.device)
        twin.manual_seed(seed)
        return state == twin.get_state().cpu().numpy().tobytes()

    def as_bytes(self, state: bytes) -> bytes:
        return state

    def record(self, generator: Any, state: bytes, seed: int, stream: int, block: int) -> tuple[bytes, bytes]:
        marked = _marked("other", state, (seed, stream, block))
        generator.set_state(torch.frombuffer(bytearray(marked), dtype=torch.uint8))
        return state, marked

    def undo(self, generator: Any, written: tuple[bytes, bytes]) -> None:
        if self.read(generator) == written[1]:
            generator.set_state(torch.frombuffer(bytearray(written[0]), dtype=torch.uint8))


_CPU_ACCESS = _CpuAccess()
_CUDA_ACCESS = _CudaAccess()
_GENERIC_ACCESS = _GenericAccess()


_CPU_DEVICE = torch.device("cpu")


def _access_for(generator: Any) -> _StateAccess:
    device = generator.device
    if device == _CPU_DEVICE:  # compares without building device.type's string (~0.2 us)
        return _CPU_ACCESS
    device_type = device.type
    if device_type == "cpu":
        return _CPU_ACCESS
    if device_type == "cuda":
        return _CUDA_ACCESS
    return _GENERIC_ACCESS


def _as_int64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value
