"""``detnoise.Generator``: a ``torch.Generator`` whose draws through detnoise follow stream v1.

The generator is a thin stateful wrapper over the functional core (seed, stream, offset) -> values
(``detnoise.functional``). Its values do not depend on its device.
"""

from __future__ import annotations

import os
import struct
import threading
from typing import Any, NamedTuple

import torch

from detnoise import _layout, cuda_diagnosis

_STATE_MAGIC = b"DN"
_STATE_VERSION = 1
_STATE_FORMAT = "<2sBBQQQ"  # magic, version, reserved (0), seed, stream, offset
_STATE_SIZE = struct.calcsize(_STATE_FORMAT)


class SeedTypeError(TypeError, RuntimeError):
    """A seed that is not an int. ``torch.Generator.manual_seed`` raises RuntimeError for it; the
    class is both, so torch's ``except RuntimeError`` and detnoise's ``except TypeError`` catch it."""


class SeedRangeError(ValueError, RuntimeError):
    """A seed outside [-2**63, 2**64). torch's manual_seed raises RuntimeError for it (2.4) or
    ValueError (later releases); the class is both."""


class StateError(ValueError, RuntimeError):
    """A state ``set_state`` cannot restore (wrong size, magic or version). torch raises
    RuntimeError for a state of the wrong size; the class is both, as for :class:`SeedTypeError`."""


class BlockReservation(NamedTuple):
    """Blocks [start, start + blocks) of (seed, stream), taken at state change number ``epoch``."""

    seed: int
    stream: int
    start: int
    blocks: int
    epoch: int


# tuple.__new__ skips the NamedTuple constructor's argument handling (a few hundred ns per draw).
_new_reservation = tuple.__new__


class Generator(torch.Generator):
    """A counter-based Philox4x32-10 generator for detnoise draws; also a ``torch.Generator``.

    Parameters
    ----------
    device : str or torch.device, default "cpu"
        The device reported by ``.device``. detnoise values do not depend on it: a generator made
        for one device can drive a draw on any other.
    seed : int, optional
        Any int in [-2**63, 2**64), taken modulo 2**64. Defaults to torch's default seed
        67280421310721.

    State and seeding
    -----------------
    The state is (seed, stream, offset): the Philox key, a 64-bit stream id (0 for a generator made
    from a seed; ``fold_in`` and ``spawn`` derive others) and the number of 4-word blocks already
    consumed. ``manual_seed(s)`` sets (s, 0, 0) and also seeds the ``torch.Generator`` base state, so
    torch's own samplers handed this object (``torch.randperm(..., generator=g)``) are reproducible
    too; that base state is kept by ``clone``/pickle but is not part of ``get_state()``. Under
    ``detnoise.patch_torch()`` (or ``patch_diffusers()``) those samplers draw stream v1 from
    (seed, stream, offset) instead (docs/SPEC.md §10).

    Parallel features
    -----------------
    Taking blocks for a draw is atomic, so threads sharing a generator never receive overlapping
    blocks. ``fold_in(i)`` and ``spawn(n)`` give independent streams with the same seed.

    Compatibility guarantee
    -----------------------
    Stream v1 (docs/SPEC.md) never changes: the same state gives the same values in every release,
    on every device. A change would be stream v2, behind an explicit switch.

    Examples
    --------
    >>> import detnoise
    >>> g = detnoise.Generator(seed=42)
    >>> x = detnoise.randn(2, 3, generator=g)
    >>> g.offset
    2
    """

    def __new__(cls, device: str | torch.device = "cpu", seed: int | None = None) -> Generator:
        return super().__new__(cls, cuda_diagnosis.generator_device(device))  # torch's own error names no fix

    def __init__(self, device: str | torch.device = "cpu", seed: int | None = None) -> None:
        self._lock = threading.Lock()
        self._seed = 0
        self._stream = 0
        self._offset = 0
        self._epoch = 0  # bumped under the lock by every state change, so rollbacks can tell
        self.manual_seed(_layout.DEFAULT_SEED if seed is None else seed)

    # ---- seeding ---------------------------------------------------------------------------

    def manual_seed(self, seed: int) -> Generator:  # type: ignore[override]
        """Sets the state to (seed mod 2**64, stream 0, offset 0) and seeds the torch base state.

        Raises :class:`SeedTypeError` (a TypeError and, as torch's, a RuntimeError) for a seed that
        is not an int, :class:`SeedRangeError` (a ValueError and a RuntimeError) outside
        [-2**63, 2**64), as torch's releases raise one or the other.
        """
        try:
            value = _layout.normalize_seed(seed)
        except TypeError as error:
            raise SeedTypeError(str(error)) from None
        except ValueError as error:
            raise SeedRangeError(str(error)) from None
        super().manual_seed(value)
        with self._lock:
            self._seed, self._stream, self._offset = value, 0, 0
            self._epoch += 1
        return self

    def initial_seed(self) -> int:
        """The seed (the Philox key) as an unsigned 64-bit int."""
        return self._seed

    def seed(self) -> int:
        """Seeds from the operating system's entropy source and returns the new seed."""
        value = int.from_bytes(os.urandom(8), "little")
        self.manual_seed(value)
        return value

    # ---- state -----------------------------------------------------------------------------

    @property
    def stream(self) -> int:
        """The 64-bit stream id (0 for a generator made from a seed)."""
        return self._stream

    @property
    def offset(self) -> int:
        """Blocks of the stream consumed so far; the next draw starts at this block."""
        return self._offset

    @offset.setter
    def offset(self, value: int) -> None:
        checked = _layout.normalize_offset(value)
        with self._lock:
            self._offset = checked
            self._epoch += 1

    def get_state(self) -> torch.Tensor:
        """The state as a 28-byte ``torch.uint8`` tensor (versioned; see docs/SPEC.md §3)."""
        with self._lock:
            packed = struct.pack(_STATE_FORMAT, _STATE_MAGIC, _STATE_VERSION, 0, self._seed, self._stream, self._offset)
        return torch.frombuffer(bytearray(packed), dtype=torch.uint8).clone()

    def set_state(self, new_state: torch.Tensor) -> Generator:  # type: ignore[override]
        """Restores a state made by ``get_state``; anything else raises and changes nothing."""
        seed, stream, offset = _unpack_state(new_state)
        with self._lock:
            self._seed, self._stream, self._offset = seed, stream, offset
            self._epoch += 1
        return self

    def _reserve(self, blocks: int) -> BlockReservation:
        """Atomically takes ``blocks`` blocks; raises (changing nothing) unless the offset stays below 2**64."""
        with self._lock:
            start = self._offset
            if start + blocks >= _layout.UINT64_LIMIT:
                _layout.check_generator_room(start, blocks)  # raises with the full message
            self._offset = start + blocks
            self._epoch += 1
            return _new_reservation(BlockReservation, (self._seed, self._stream, start, blocks, self._epoch))

    def _unreserve(self, reservation: BlockReservation) -> None:
        """Gives back the blocks of a draw that failed, if nothing has changed the state since."""
        with self._lock:
            if self._epoch == reservation.epoch:
                self._offset = reservation.start
                self._epoch += 1

    def _snapshot(self) -> tuple[int, int, int]:
        with self._lock:
            return self._seed, self._stream, self._offset

    # ---- derived generators ----------------------------------------------------------------

    def _with_state(self, seed: int, stream: int, offset: int) -> Generator:
        """A generator at (seed, stream, offset); its torch base state is seeded with the stream id,
        so derived generators also differ from each other under torch's own samplers."""
        child = type(self)(self.device, seed=stream)
        child._seed, child._stream, child._offset = seed, stream, offset
        return child

    def clone(self) -> Generator:
        """An independent generator with the same device and state (torch base state included)."""
        seed, stream, offset = self._snapshot()
        twin = self._with_state(seed, stream, offset)
        torch.Generator.set_state(twin, torch.Generator.get_state(self))
        return twin

    def fold_in(self, data: int) -> Generator:
        """A new generator (same seed, offset 0) on the stream derived from this one and ``data``.

        ``data`` is any int in [-2**63, 2**64). This generator is not changed; the same
        (seed, stream, data) always gives the same stream (docs/SPEC.md §3).
        """
        value = _layout.normalize_seed(data, "data")
        seed, stream, _ = self._snapshot()
        return self._with_state(seed, _layout.fold_in_stream(seed, stream, value), 0)

    def spawn(self, n: int) -> list[Generator]:
        """``n`` child generators on independent streams; consumes ``n`` blocks of this one.

        Child j's stream is derived from this generator's block ``offset + j``, so spawning again
        later gives new children, and restoring a state replays the same ones (docs/SPEC.md §3).
        """
        count = _layout.as_int(n, "n")
        if count < 0:
            raise ValueError(f"spawn needs n >= 0, got {count}")
        taken = self._reserve(count)
        return [self._with_state(taken.seed, _layout.spawn_stream(taken.seed, taken.stream, taken.start + j), 0)
                for j in range(count)]

    # ---- Python protocols ------------------------------------------------------------------

    def __reduce__(self) -> tuple[Any, ...]:
        # torch's get_state() is a CPU byte tensor for every device, so the base state always travels.
        return (_rebuild, (str(self.device), bytes(self.get_state().tolist()), torch.Generator.get_state(self)))

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        return self.__reduce__()

    def __deepcopy__(self, memo: dict[int, Any]) -> Generator:
        return self.clone()

    def __copy__(self) -> Generator:
        return self.clone()

    def __repr__(self) -> str:
        seed, stream, offset = self._snapshot()
        return f"detnoise.Generator(device='{self.device}', seed={seed}, stream={stream}, offset={offset})"


def _unpack_state(state: object) -> tuple[int, int, int]:
    if not isinstance(state, torch.Tensor):
        raise TypeError(f"a detnoise state must be a torch.uint8 tensor, got {type(state).__name__}")
    if state.dtype != torch.uint8:
        raise TypeError(f"a detnoise state must be a torch.uint8 tensor, got dtype {state.dtype}")
    if state.dim() != 1 or state.numel() != _STATE_SIZE:
        raise StateError(
            f"a detnoise v{_STATE_VERSION} state has {_STATE_SIZE} bytes, got shape {tuple(state.shape)}; "
            "pass a tensor made by detnoise.Generator.get_state() (a torch generator's state is not one)"
        )
    magic, version, reserved, seed, stream, offset = struct.unpack(_STATE_FORMAT, bytes(state.cpu().tolist()))
    if magic != _STATE_MAGIC:
        raise StateError("not a detnoise state (bad magic bytes); pass a tensor made by Generator.get_state()")
    if version != _STATE_VERSION or reserved != 0:
        raise StateError(f"unsupported detnoise state version {version}.{reserved}; this detnoise reads version {_STATE_VERSION}")
    return seed, stream, offset


def _rebuild(device: str, state: bytes, base_state: torch.Tensor | None) -> Generator:
    generator = Generator(device)
    generator.set_state(torch.tensor(list(state), dtype=torch.uint8))
    if base_state is not None:
        torch.Generator.set_state(generator, base_state)
    return generator


default_generator = Generator("cpu")
"""The generator used when a draw is given none; seeded with 67280421310721 at import."""


def manual_seed(seed: int) -> Generator:
    """Seeds ``detnoise.default_generator`` and returns it (like ``torch.manual_seed``)."""
    return default_generator.manual_seed(seed)


def initial_seed() -> int:
    """The seed of ``detnoise.default_generator``."""
    return default_generator.initial_seed()
