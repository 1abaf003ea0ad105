"""The generator resolver: the one place that turns a generator into blocks of a detnoise stream.

Every generator-driven draw (``detnoise.randn`` and friends, ``randn_tensor``, ``randn_slice``, the
torch-level patch, the Brownian tree) asks :func:`reserve` for its blocks; no other module reads a
torch generator's state.

Note [Torch generator positions]
--------------------------------
A ``detnoise.Generator`` carries its own (seed, stream, offset). A plain ``torch.Generator`` (CPU
or CUDA; ``None`` in the torch-level patch means ``torch.default_generator``) has no detnoise
position of its own: its position is a *function of its torch state*, so torch's semantics carry
over (``manual_seed`` restarts, ``set_state`` replays, ``deepcopy``/``clone_state``/``fork_rng``
restore):

- the state right after ``manual_seed(s)`` is block 0 of stream 0 under seed ``s``;
- a state that detnoise left after a draw ending at block P of (seed, stream) is block P of that
  (seed, stream). After each draw detnoise moves the torch state to a new state that depends on
  the old one and on (seed, stream, P) (:func:`_tag`), and records new state -> (seed, stream, P)
  in a process-wide table bounded by an LRU (``_TABLE_SIZE`` entries);
- any other state (torch itself drew from it, or it came from another process) starts stream
  ``derived_stream(state bytes)`` at block 0 under ``seed = initial_seed()``: deterministic and
  replayable, but device-dependent, because the torch draw that led to that state was.

CPU and CUDA generators seeded alike give the same positions as long as every draw from them is
a detnoise draw. docs/SPEC.md §3 (informative part) states these rules for other implementers.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Any, Callable, Optional

import numpy as np
import torch

from detnoise import _layout
from detnoise.generator import Generator

__all__ = ["Reservation", "reserve", "position", "derived_stream"]

_MASK64 = (1 << 64) - 1
_TABLE_SIZE = 1 << 16  # states detnoise left behind; 16 bytes of key + a tuple each
_FRESH_CACHE_SIZE = 64

# CPU generator state (torch's legacy THGeneratorState): the Mersenne Twister words sit in
# 624 uint64 slots (low 32 bits used) starting at byte 24; detnoise's tag goes into the first two.
_CPU_STATE_SIZE = 5056
_CPU_WORDS_BYTE = 24


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
        Blocks the draw consumes (``_layout.blocks_for``); 0 takes nothing but still resolves.

    Raises ``ValueError`` (changing nothing) if the blocks would pass block 2**64 and
    ``TypeError`` for anything that is not a generator. Call ``undo()`` on the result if the draw
    then fails.
    """
    if generator is None:
        generator = default
        if generator is None:
            raise TypeError("reserve: no generator and no default generator given")
    if isinstance(generator, Generator):
        taken = generator._reserve(blocks)
        return Reservation(taken[0], taken[1], taken[2], blocks, lambda: generator._unreserve(taken))
    if not isinstance(generator, torch.Generator) and not _looks_like_generator(generator):
        raise TypeError(f"generator must be a torch.Generator or detnoise.Generator, got {type(generator).__name__}")
    access = _access_for(generator)
    with _lock:
        state = access.read(generator)
        seed, stream, start = _position_locked(generator, access, state)
        if blocks == 0:  # an empty draw takes nothing and leaves the torch state as it was
            return Reservation(seed, stream, start, 0, None)
        _layout.check_generator_room(start, blocks)
        end = start + blocks
        new_state = access.tagged(state, _tag(seed, stream, end))
        access.write(generator, new_state)
        key = access.key(new_state)
        _table[key] = (seed, stream, end)
        _table.move_to_end(key)
        if len(_table) > _TABLE_SIZE:
            _table.popitem(last=False)

    def undo() -> None:
        with _lock:
            if access.key(access.read(generator)) == key:
                access.restore(generator, state)

    return Reservation(seed, stream, start, blocks, undo)


def position(generator: Any, *, default: Any = None) -> tuple[int, int, int]:
    """(seed, stream, next block) of ``generator`` without taking anything."""
    if generator is None:
        generator = default
    if isinstance(generator, Generator):
        return generator._snapshot()
    access = _access_for(generator)
    with _lock:
        state = access.read(generator)
        return _position_locked(generator, access, state)


def derived_stream(state_bytes: bytes) -> int:
    """The stream id for a torch state detnoise did not make: the first 8 bytes (little-endian)
    of SHA-256("detnoise/torch-state/v1" + state bytes). Informative; see SPEC §3."""
    return int.from_bytes(hashlib.sha256(b"detnoise/torch-state/v1" + state_bytes).digest()[:8], "little")


# ---- internals -----------------------------------------------------------------------------

_lock = threading.RLock()
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
    """A nonzero 64-bit tag of (seed, stream, end): XORed into the torch state after a draw, so
    that the new state differs from the old one, from any fresh state, and from what a draw of
    another size would have left (two generators seeded alike never share a table entry)."""
    return _splitmix64(_splitmix64(_splitmix64(seed) ^ stream) ^ end) | 1


def _position_locked(generator: Any, access: "_StateAccess", state: Any) -> tuple[int, int, int]:
    known = _table.get(access.key(state))
    if known is not None:
        return known
    seed = generator.initial_seed() % (1 << 64)
    if access.is_fresh(generator, state, seed):
        return seed, 0, 0
    return seed, derived_stream(access.as_bytes(state)), 0


class _StateAccess:
    """How to read, key, tag and write one kind of torch generator state."""

    def read(self, generator: Any) -> Any:
        raise NotImplementedError

    def write(self, generator: Any, state: Any) -> None:
        raise NotImplementedError

    def restore(self, generator: Any, state: Any) -> None:
        """Puts back a state returned by ``read`` (after ``tagged`` was made from it)."""
        self.write(generator, state)

    def key(self, state: Any) -> Any:
        raise NotImplementedError

    def as_bytes(self, state: Any) -> bytes:
        raise NotImplementedError

    def tagged(self, state: Any, tag: int) -> Any:
        raise NotImplementedError

    def is_fresh(self, generator: Any, state: Any, seed: int) -> bool:
        raise NotImplementedError


class _CpuAccess(_StateAccess):
    """A CPU generator: the state as (tensor, its 5056 bytes, a numpy view of the tensor). Bytes compare and hash in well under
    a microsecond (torch.equal on the tensor costs about 8 us); the tag is XORed into the tensor
    that get_state() returned, which then goes back through set_state() without another copy."""

    def read(self, generator: Any) -> tuple[torch.Tensor, bytes, np.ndarray]:
        state = generator.get_state()
        array = state.numpy()  # tensor.numpy() costs ~4 us: once per state
        return state, array.tobytes(), array

    def write(self, generator: Any, state: tuple[torch.Tensor, bytes, np.ndarray]) -> None:
        generator.set_state(state[0])

    def restore(self, generator: Any, state: tuple[torch.Tensor, bytes, np.ndarray]) -> None:
        generator.set_state(torch.frombuffer(bytearray(state[1]), dtype=torch.uint8))  # state[0] was tagged

    def key(self, state: tuple[torch.Tensor, bytes, np.ndarray]) -> Any:
        # Process-wide table only: Python's (salted) bytes hash is a fine digest here.
        return ("cpu", hash(state[1]), len(state[1]))

    def as_bytes(self, state: tuple[torch.Tensor, bytes, np.ndarray]) -> bytes:
        return state[1]

    def tagged(self, state: tuple[torch.Tensor, bytes, np.ndarray], tag: int) -> tuple[torch.Tensor, bytes, np.ndarray]:
        tensor, array = state[0], state[2]
        if len(state[1]) != _CPU_STATE_SIZE:  # an unknown layout
            tensor = torch.frombuffer(bytearray(_GenericAccess.nudged_cpu_bytes(state[1], tag)), dtype=torch.uint8)
            array = tensor.numpy()
            return tensor, array.tobytes(), array
        words = array.view(np.uint32)  # little-endian: word 6 is bytes 24-27, word 8 bytes 32-35
        words[_CPU_WORDS_BYTE // 4] ^= tag & 0xFFFFFFFF
        words[_CPU_WORDS_BYTE // 4 + 2] ^= tag >> 32
        return tensor, array.tobytes(), array

    def is_fresh(self, generator: Any, state: tuple[torch.Tensor, bytes, np.ndarray], seed: int) -> bool:
        fresh = _fresh_cpu.get(seed)
        if fresh is None:
            twin = torch.Generator()
            twin.manual_seed(seed)
            fresh = twin.get_state().numpy().tobytes()
            _fresh_cpu[seed] = fresh
            if len(_fresh_cpu) > _FRESH_CACHE_SIZE:
                _fresh_cpu.popitem(last=False)
        return state[1] == fresh


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

    def write(self, generator: Any, state: tuple[int, int]) -> None:
        set_offset = getattr(generator, "set_offset", None)
        if set_offset is not None and generator.initial_seed() % (1 << 64) == state[0]:
            set_offset(state[1])
            return
        packed = torch.tensor([_as_int64(state[0]), _as_int64(state[1])], dtype=torch.int64)
        generator.set_state(packed.view(torch.uint8))

    def key(self, state: tuple[int, int]) -> Any:
        return ("cuda", state[0], state[1])

    def as_bytes(self, state: tuple[int, int]) -> bytes:
        return state[0].to_bytes(8, "little") + state[1].to_bytes(8, "little")

    def tagged(self, state: tuple[int, int], tag: int) -> tuple[int, int]:
        # torch's CUDA offsets are multiples of 4: keep it so (the tag's low bits shifted out).
        return state[0], state[1] ^ ((tag << 2) & _MASK64)

    def is_fresh(self, generator: Any, state: tuple[int, int], seed: int) -> bool:
        return state[1] == 0


class _GenericAccess(_StateAccess):
    """Other devices (MPS, XPU, ...): the state tensor's bytes; fresh states from a seeded twin."""

    def read(self, generator: Any) -> bytes:
        return generator.get_state().cpu().numpy().tobytes()

    def write(self, generator: Any, state: bytes) -> None:
        generator.set_state(torch.frombuffer(bytearray(state), dtype=torch.uint8))

    def key(self, state: bytes) -> Any:
        return ("other", hash(state), len(state))

    def as_bytes(self, state: bytes) -> bytes:
        return state

    @staticmethod
    def nudged_cpu_bytes(state: bytes, tag: int) -> bytes:
        words = bytearray(state)
        for index, byte in enumerate(tag.to_bytes(8, "little")):
            words[-8 + index] ^= byte
        return bytes(words)

    def tagged(self, state: bytes, tag: int) -> bytes:
        return self.nudged_cpu_bytes(state, tag)

    def is_fresh(self, generator: Any, state: bytes, seed: int) -> bool:
        twin = torch.Generator(device=generator.device)
        twin.manual_seed(seed)
        return state == twin.get_state().cpu().numpy().tobytes()


_CPU_ACCESS = _CpuAccess()
_CUDA_ACCESS = _CudaAccess()
_GENERIC_ACCESS = _GenericAccess()


def _access_for(generator: Any) -> _StateAccess:
    device_type = generator.device.type
    if device_type == "cpu":
        return _CPU_ACCESS
    if device_type == "cuda":
        return _CUDA_ACCESS
    return _GENERIC_ACCESS


def _as_int64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value
