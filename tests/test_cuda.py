"""CPU == CUDA bit for bit (skipped without a CUDA device and a CUDA build)."""

from __future__ import annotations

import pytest
import torch

import detnoise
from detnoise import _native

from conftest import DTYPES, assert_bits_equal, requires_cuda

pytestmark = [pytest.mark.cuda, requires_cuda]

DRAWS = [(kind, name) for kind in ("normal", "uniform") for name in DTYPES] + [("bits", "uint32")]


def draw(kind: str, dtype_name: str, n: int, device: str, **where) -> torch.Tensor:
    if kind == "bits":
        return detnoise.bits(n, device=device, **where)
    function = detnoise.normal if kind == "normal" else detnoise.uniform
    return function(n, dtype=DTYPES[dtype_name], device=device, **where)


@pytest.mark.parametrize(("kind", "dtype_name"), DRAWS)
@pytest.mark.parametrize("n", [1, 3, 5, 1023, 4097, 10**6 + 3, 3 * 2**20 + 1])
@pytest.mark.parametrize("offset", [0, 2**32 - 2, 2**32 - 1, 2**32, 2**63 + 7])
def test_cpu_equals_cuda(kind: str, dtype_name: str, n: int, offset: int) -> None:
    where = {"seed": 2**64 - 3, "stream": 5, "offset": offset}
    assert_bits_equal(draw(kind, dtype_name, n, "cuda", **where), draw(kind, dtype_name, n, "cpu", **where))


@pytest.mark.parametrize("dtype_name", list(DTYPES))
def test_generator_draws_on_cuda_match_cpu(dtype_name: str) -> None:
    dtype = DTYPES[dtype_name]
    g_cpu = detnoise.Generator("cpu", seed=11)
    g_cuda = detnoise.Generator("cuda", seed=11)
    for shape in ((1, 4, 128, 128), (3, 5, 7), (1,)):
        a = detnoise.randn(shape, generator=g_cuda, device="cuda", dtype=dtype)
        b = detnoise.randn(shape, generator=g_cpu, dtype=dtype)
        assert a.device.type == "cuda"
        assert_bits_equal(a, b)
    assert g_cpu.offset == g_cuda.offset


def test_non_contiguous_cuda_fill() -> None:
    x = torch.empty(64, 32, device="cuda").t()
    detnoise.normal_(x, generator=detnoise.Generator(seed=3))
    assert_bits_equal(x.contiguous(), detnoise.randn(32, 64, generator=detnoise.Generator(seed=3)))


def test_runs_on_the_current_stream() -> None:
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        x = detnoise.randn(1 << 20, generator=detnoise.Generator(seed=8), device="cuda")
    stream.synchronize()
    assert_bits_equal(x, detnoise.randn(1 << 20, generator=detnoise.Generator(seed=8)))


def test_more_than_2_32_elements() -> None:
    """A float16 tensor of 2^32 + 9 elements: its tail equals the CPU kernel at those indices."""
    n = 2**32 + 9
    free, _ = torch.cuda.mem_get_info()
    if free < 2 * n + (1 << 30):
        pytest.skip(f"needs {2 * n / 2**30:.1f} GiB of free GPU memory")
    x = detnoise.normal(n, seed=77, offset=2**32 - 5, dtype=torch.float16, device="cuda")
    for first in (0, 2**32 - 4, n - 1000):
        cpu = torch.empty(1000 if first + 1000 <= n else n - first, dtype=torch.float16)
        _native.launch(_native.KIND_NORMAL, cpu, 77, 0, 2**32 - 5, first_element=first)
        assert_bits_equal(x[first : first + cpu.numel()], cpu, f"elements from {first}")
    del x
    torch.cuda.empty_cache()


def test_second_device_if_present() -> None:
    if torch.cuda.device_count() < 2:
        pytest.skip("one CUDA device")
    x = detnoise.normal(4097, seed=1, device="cuda:1")
    assert x.device == torch.device("cuda:1")
    assert_bits_equal(x, detnoise.normal(4097, seed=1))


def test_cuda_graph_replays_continue_the_stream() -> None:
    """Replaying a captured draw N times gives the N draws that N eager calls would."""
    g = detnoise.Generator("cuda", seed=321)
    g.offset = 2**32 - 3
    draws = detnoise.GraphSafeDraws(g)
    shape = (3, 4, 33)
    static = torch.empty(shape, device="cuda")
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up outside the capture, as torch's CUDA-graph docs advise
        draws.randn(shape, out=static)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        draws.randn(shape, out=static)
    start = draws.offset
    blocks = (static.numel() + 3) // 4
    assert start == 2**32 - 3 + blocks  # the warm-up drew once; capturing drew nothing
    for replay in range(4):
        graph.replay()
        expected = detnoise.normal(shape, seed=321, offset=start + replay * blocks)
        assert_bits_equal(static, expected, f"replay {replay}")
    assert draws.offset == start + 4 * blocks
    draws.sync_generator(g)
    assert g.offset == start + 4 * blocks


def test_graph_safe_eager_draws_match_generator_draws() -> None:
    g = detnoise.Generator("cuda", seed=5)
    draws = detnoise.GraphSafeDraws(g.clone())
    for dtype in (torch.float32, torch.float64, torch.bfloat16):
        assert_bits_equal(draws.randn(7, 9, dtype=dtype), detnoise.randn(7, 9, generator=g, dtype=dtype, device="cuda"))
        assert_bits_equal(draws.rand(5, dtype=dtype), detnoise.rand(5, generator=g, dtype=dtype, device="cuda"))
    assert draws.offset == g.offset


# ---- issue 12 / 14: launch shapes, strided rows, error attribution, GraphSafeDraws devices/streams ----


@pytest.mark.parametrize("dtype_name", ["float32", "float64", "bfloat16"])
@pytest.mark.parametrize(
    ("sizes", "strides", "base"),
    [
        ([2, 2, 35, 57], [16384, 4096, 64, 1], 4096 + 5 * 64 + 3),  # contiguous rows, misaligned starts
        ([4, 9], [1000, 1], 2**32 + 1),                               # elements past 2^32
        ([3, 17], [100, 2], 11),                                      # per-element path
        ([64, 32], [1, 64], 0),                                       # a transpose
    ],
)
def test_strided_cuda_equals_cpu(dtype_name: str, sizes: list[int], strides: list[int], base: int) -> None:
    dtype = DTYPES[dtype_name]
    cpu = torch.empty(sizes, dtype=dtype)
    gpu = torch.empty(sizes, dtype=dtype, device="cuda")
    for out in (cpu, gpu):
        _native.launch_strided(_native.KIND_NORMAL, out, sizes, strides, base, 9, 2, 2**63 + 5)
    assert_bits_equal(gpu, cpu)


@pytest.mark.parametrize("shape", [(1, 4, 128, 128), (1, 4, 32, 32), (2, 16, 21, 90, 160)])
def test_latent_shapes_over_the_launch_shape_rule(shape: tuple[int, ...]) -> None:
    """Small, SDXL- and video-sized latents: 64-, 128- and 256-thread CTAs all give the CPU's bits."""
    assert_bits_equal(detnoise.randn(shape, device="cuda", generator=detnoise.Generator("cuda", seed=4)),
                      detnoise.randn(shape, generator=detnoise.Generator(seed=4)))


def test_a_failed_call_is_not_blamed_on_the_next_draw() -> None:
    """Issue 14 item 4: a failed device switch leaves an error pending on the thread; the next,
    successful, draw must neither report it nor lose its blocks."""
    x = torch.empty(1000, device="cuda")
    with pytest.raises(RuntimeError, match="cudaErrorInvalidDevice"):
        _native._core.fill_cuda(_native.KIND_NORMAL, 1, x.data_ptr(), 1000, 0, 1, 0, 0, 999, 0)
    g = detnoise.Generator("cuda", seed=6)
    y = detnoise.randn(1000, generator=g, device="cuda")
    assert g.offset == 250
    assert_bits_equal(y, detnoise.randn(1000, generator=detnoise.Generator(seed=6)))


def test_a_sticky_fault_is_named_as_one(tmp_path) -> None:
    """A kernel fault kills the context; the next draw must say so rather than blame itself. In a
    child process, since the fault ends all CUDA work there."""
    import subprocess
    import sys

    script = (
        "import torch, detnoise\n"
        "from detnoise import _native\n"
        "y = torch.empty(8, device='cuda')\n"
        "_native._core.fill_cuda(2, 1, 0x10, 1 << 20, 0, 1, 0, 0, 0, 0)  # writes to address 0x10\n"
        "try:\n    torch.cuda.synchronize()\nexcept Exception as error:\n    print('fault:', error)\n"
        "try:\n    _native.launch(_native.KIND_NORMAL, y, 1, 0, 0)\nexcept RuntimeError as error:\n    print('draw:', error)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    draw_lines = [line for line in done.stdout.splitlines() if line.startswith("draw:")]
    assert draw_lines and "sticky" in draw_lines[0] and "earlier kernel fault" in draw_lines[0], done.stdout + done.stderr


def test_graph_safe_draws_on_a_second_stream_continue_the_sequence() -> None:
    """Issue 14 item 3: draws on two streams without wait_stream still form one sequence."""
    g = detnoise.Generator("cuda", seed=12)
    draws = detnoise.GraphSafeDraws(g.clone())
    side = torch.cuda.Stream()
    a = draws.randn(1 << 20)
    with torch.cuda.stream(side):
        b = draws.randn(1 << 20)
    c = draws.randn(1 << 20)
    torch.cuda.synchronize()
    for got in (a, b, c):
        assert_bits_equal(got, detnoise.randn(1 << 20, generator=g, device="cuda"))
    assert draws.offset == g.offset


def test_graph_safe_draws_stay_on_their_device() -> None:
    """Issue 14 item 2: made on cuda:1, drawing while cuda:0 is current."""
    if torch.cuda.device_count() < 2:
        pytest.skip("one CUDA device")
    with torch.cuda.device(1):
        draws = detnoise.GraphSafeDraws(detnoise.Generator(seed=13))
    assert draws.device == torch.device("cuda", 1)
    with torch.cuda.device(0):
        x = draws.randn(4097)
    assert x.device == torch.device("cuda", 1)
    assert_bits_equal(x, detnoise.randn(4097, generator=detnoise.Generator(seed=13)))


def test_build_info_on_a_gpu_names_architectures_and_versions() -> None:
    info = detnoise.build_info()
    assert info["cuda_devices"] >= 1 and info["cuda_driver"] is not None and info["cuda_architectures"]
    major, minor = torch.cuda.get_device_capability()
    built = {int(arch.split("-")[0]) for arch in info["cuda_architectures"] if arch != "native"}
    assert any(arch <= major * 10 + minor for arch in built), (major, minor, built)
