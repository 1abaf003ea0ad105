"""The host-side logic of the CUDA path, with the CUDA queries mocked so that it runs without a GPU
(issue 14 items 2, 3 and 6): GraphSafeDraws pins one device and keeps a host mirror of its offset
and orders draws across streams; an insufficient driver is reported with its fix. The kernels
themselves: test_kernel_driver.py; on a GPU: test_cuda.py."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import torch

import detnoise
from detnoise import _native, cuda_graphs


@dataclass
class FakeStream:
    device: torch.device
    cuda_stream: int
    waited_for: list[int] = field(default_factory=list)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FakeStream) and other.cuda_stream == self.cuda_stream

    def wait_stream(self, other: FakeStream) -> None:
        self.waited_for.append(other.cuda_stream)


@dataclass
class FakeTensor:
    """What GraphSafeDraws reads from a tensor: shape, device, dtype, contiguity, address."""

    shape: tuple[int, ...]
    device: torch.device
    dtype: torch.dtype = torch.float32
    address: int = 0x7000

    def is_contiguous(self) -> bool:
        return True

    def numel(self) -> int:
        count = 1
        for size in self.shape:
            count *= size
        return count

    def data_ptr(self) -> int:
        return self.address

    def item(self) -> int:
        raise AssertionError("an eager draw synchronised with the GPU (offset_tensor.item())")


class FakeCore:
    def __init__(self) -> None:
        self.launches: list[dict[str, int]] = []

    def fill_cuda_device_offset(self, kind, dtype, out, count, seed, stream, offset_on_device, blocks, device,
                                cuda_stream) -> None:
        self.launches.append({"device": device, "cuda_stream": cuda_stream, "blocks": blocks, "out": out})


class FakeCuda:
    """torch.cuda as GraphSafeDraws uses it: one current device, one current stream per device."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.current = 1
        self.streams = {index: FakeStream(torch.device("cuda", index), 100 + index) for index in range(4)}
        self.capturing = False
        self.tensor_devices: list[torch.device] = []
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: self.current)
        monkeypatch.setattr(torch.cuda, "current_stream", self.current_stream)
        monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: self.capturing)
        monkeypatch.setattr(_native, "cuda_unavailable_reason", lambda: None)
        self.core = FakeCore()
        monkeypatch.setattr(_native, "_core", self.core)
        real_tensor = torch.tensor

        def tensor(data, *, dtype=None, device=None):
            if device is not None and torch.device(device).type == "cuda":
                self.tensor_devices.append(torch.device(device))
                return FakeTensor((1,), torch.device(device), torch.int64, address=0xD0)
            return real_tensor(data, dtype=dtype, device=device)

        monkeypatch.setattr(torch, "tensor", tensor)

    def current_stream(self, device: torch.device | int | None = None) -> FakeStream:
        if device is None:
            return self.streams[self.current]
        device = torch.device("cuda", device) if isinstance(device, int) else torch.device(device)
        return self.streams[device.index if device.index is not None else self.current]


@pytest.fixture
def fake_cuda(monkeypatch: pytest.MonkeyPatch) -> FakeCuda:
    return FakeCuda(monkeypatch)


def test_graph_safe_draws_pin_the_device_current_at_construction(fake_cuda: FakeCuda) -> None:
    draws = detnoise.GraphSafeDraws(detnoise.Generator(seed=1))  # "cuda" while cuda:1 is current
    assert draws.device == torch.device("cuda", 1)
    assert fake_cuda.tensor_devices == [torch.device("cuda", 1)]
    fake_cuda.current = 0  # the caller moves on to another device
    draws.randn(2, 8, out=FakeTensor((2, 8), torch.device("cuda", 1)))
    launch = fake_cuda.core.launches[-1]
    assert launch["device"] == 1 and launch["cuda_stream"] == fake_cuda.streams[1].cuda_stream
    with pytest.raises(ValueError, match="cuda:1"):
        draws.randn(2, 8, out=FakeTensor((2, 8), torch.device("cuda", 0)))
    assert detnoise.GraphSafeDraws(detnoise.Generator(seed=1), "cuda:3").device == torch.device("cuda", 3)


def test_eager_draws_keep_a_host_mirror_and_never_synchronise(fake_cuda: FakeCuda) -> None:
    generator = detnoise.Generator(seed=2)
    generator.offset = 40
    draws = detnoise.GraphSafeDraws(generator)
    for _ in range(3):
        draws.randn(3, 5, out=FakeTensor((3, 5), draws.device))  # 15 values: 4 blocks
    assert draws.offset == 40 + 3 * 4  # FakeTensor.item() raises: read from the mirror
    draws.sync_generator(generator)
    assert generator.offset == 52


def test_room_check_uses_the_mirror(fake_cuda: FakeCuda) -> None:
    generator = detnoise.Generator(seed=3)
    generator.offset = 2**64 - 2
    draws = detnoise.GraphSafeDraws(generator)
    draws.rand(8, out=FakeTensor((8,), draws.device))  # 2 blocks: exactly to the end
    with pytest.raises(ValueError, match="past the end of the stream"):
        draws.rand(1, out=FakeTensor((1,), draws.device))
    assert len(fake_cuda.core.launches) == 1


def test_a_draw_on_another_stream_waits_for_the_previous_draw(fake_cuda: FakeCuda) -> None:
    draws = detnoise.GraphSafeDraws(detnoise.Generator(seed=4))
    first, second = fake_cuda.streams[1], FakeStream(torch.device("cuda", 1), 555)
    draws.randn(4, out=FakeTensor((4,), draws.device))
    fake_cuda.streams[1] = second  # `with torch.cuda.stream(second):`
    draws.randn(4, out=FakeTensor((4,), draws.device))
    draws.randn(4, out=FakeTensor((4,), draws.device))
    assert second.waited_for == [first.cuda_stream]  # once, at the change of stream
    assert [launch["cuda_stream"] for launch in fake_cuda.core.launches] == [101, 555, 555]


def test_after_a_capture_the_offset_is_read_from_the_device(fake_cuda: FakeCuda) -> None:
    draws = detnoise.GraphSafeDraws(detnoise.Generator(seed=5))
    fake_cuda.capturing = True
    draws.randn(4, out=FakeTensor((4,), draws.device))  # no room check, no wait, no mirror update
    fake_cuda.capturing = False
    with pytest.raises(AssertionError, match="synchronised"):
        _ = draws.offset  # replays moved the device value: only the device knows it


def test_insufficient_driver_is_reported_with_its_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    class Core:
        built_with_cuda = True
        versions = (12080, 13000, "90-real")

        def cuda_versions(self):
            return self.versions

    core = Core()
    monkeypatch.setattr(_native, "_core", core)
    monkeypatch.setattr(_native, "_driver_checked", False)
    reason = _native.cuda_unavailable_reason()
    assert reason is not None
    for part in ("CUDA 12.8", "CUDA 13.0", "update the NVIDIA driver", "no newer than the driver supports"):
        assert part in reason
    from detnoise import cuda_diagnosis

    monkeypatch.setattr(cuda_diagnosis, "nvidia_driver_installed", lambda: True)
    for versions in ((13000, 13000, ""), (13020, 13000, ""), (0, 13000, "")):
        core.versions = versions
        monkeypatch.setattr(_native, "_driver_checked", False)
        assert _native.cuda_unavailable_reason() is None, versions
    # Driver version 0 and no libcuda to load: no driver at all, not one too old.
    monkeypatch.setattr(cuda_diagnosis, "nvidia_driver_installed", lambda: False)
    monkeypatch.setattr(_native, "_driver_checked", False)
    assert _native.cuda_unavailable_reason() == cuda_diagnosis.NO_DRIVER
