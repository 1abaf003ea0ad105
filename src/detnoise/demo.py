"""``detnoise demo``: a real diffusers pipeline run with detnoise noise, offline, with computed proofs.

The default model is :class:`detnoise.demo_model.GlyphDenoiser`, the exact optimal denoiser of a
glyph set drawn with Pillow's font, in a ``DDPMPipeline`` (the scheduler adds fresh noise at every
step, so every draw matters). Nothing is downloaded; ``--model PATH`` runs a local diffusers
pipeline instead. The demo runs diffusers' default path (torch CPU generators), detnoise on the CPU
and detnoise on the GPU where one exists, then each image again on its own; it prints what matched
bit for bit and what did not, all computed from the runs, and writes one labelled figure.

Without a GPU the last two columns show what this machine can prove instead: each seed run alone
(against its row of the batch) and the batch again with another CPU configuration of detnoise's
kernels (one thread and the simplest kernel path against all threads and the fastest path).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import textwrap
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

import detnoise
from detnoise import _native, cuda_diagnosis, diffusers_integration, reference
from detnoise.determinism import determinism_table
from detnoise.fingerprint import fingerprint
from detnoise.timing import compare

COLUMNS = (
    "torch CPU generator\ninitial noise",
    "diffusers default\nimage",
    "detnoise\ninitial noise",
    "detnoise on CPU\nimage",
    "detnoise on GPU\nimage",
    "|CPU - GPU|\nimage difference",
)
# Without a GPU the last two columns hold what this machine can check (see the module docstring);
# {this} and {other} are the two CPU configurations, e.g. "2 threads, avx2 path" and "1 thread, scalar path".
CPU_COLUMNS = COLUMNS[:3] + (
    "detnoise on CPU, batch of {rows}\n{this}: image",
    "each seed alone\n(batch of 1): image",
    "the batch again on\n{other}: image",
)


@dataclass
class Run:
    """One pipeline call: its images (B, H, W, C) in [0, 1] and every noise draw made (on the CPU)."""

    label: str
    device: torch.device
    images: np.ndarray
    draws: list[torch.Tensor] = field(default_factory=list)


@dataclass
class Panel:
    """One cell of the figure: pixels (H, W, 3) in [0, 1], or None for a panel holding only text."""

    pixels: np.ndarray | None
    caption: str
    note: str = ""  # text printed inside the panel (over the bottom of a picture)


@dataclass
class FigureLayout:
    """What was drawn where: ``rows`` seeds by ``columns`` panels, ``size`` in pixels."""

    path: Path
    backend: str
    rows: int
    columns: int
    size: tuple[int, int]

    @property
    def panels(self) -> int:
        return self.rows * self.columns


def gpu_device() -> torch.device | None:
    """The CUDA device where detnoise can draw, or None."""
    if detnoise.built_with_cuda() and torch.cuda.is_available():
        return torch.device("cuda")
    return None


def gpu_column_device(requested: str | None) -> torch.device | None:
    """The device of the GPU column: ``requested`` (None: CUDA where usable; "cpu": no GPU column).
    Asking for CUDA where it cannot run raises RuntimeError naming the fix."""
    if requested is None:
        return gpu_device()
    device = torch.device(requested)
    if device.type == "cpu":
        return None
    if device.type == "cuda" and gpu_device() is None:
        raise RuntimeError(f"--device {requested}: " + "; ".join(cuda_diagnosis.cuda_problems() or ["CUDA is not usable"]))
    return device


@contextlib.contextmanager
def cpu_configuration(threads: int | None, path: str) -> Iterator[None]:
    """detnoise's CPU kernels with ``threads`` threads and kernel path ``path`` inside the block (the
    values drawn never change; the demo shows it). torch's own thread count is left alone."""
    saved_threads, saved_path = _native._num_threads, detnoise.get_cpu_path()
    detnoise.set_num_threads(threads)
    detnoise.set_cpu_path(path)
    try:
        yield
    finally:
        detnoise.set_num_threads(saved_threads)
        detnoise.set_cpu_path(saved_path)


def cpu_configuration_label(threads: int, path: str) -> str:
    """'1 thread, scalar path'; the "auto" path is named by the path it picks (the fastest here)."""
    name = detnoise.cpu_paths()[-1] if path == "auto" else path
    return f"{threads} thread{'s' if threads != 1 else ''}, {name} path"


def repeated_images(images: np.ndarray, seeds: list[int]) -> list[list[int]]:
    """Groups of seeds whose images have the same bytes (only groups of two or more)."""
    groups: dict[str, list[int]] = {}
    for seed, image in zip(seeds, images):
        groups.setdefault(fingerprint(torch.from_numpy(np.ascontiguousarray(image))), []).append(seed)
    return [group for group in groups.values() if len(group) > 1]


def chance_of_a_repeat(choices: int, draws: int) -> float:
    """Probability that ``draws`` picks among ``choices`` equally likely ones repeat one (birthday problem)."""
    return 1.0 - math.prod((choices - k) / choices for k in range(min(draws, choices + 1)))


def _seed_list(seeds: list[int]) -> str:
    return ", ".join(map(str, seeds[:-1])) + f" and {seeds[-1]}" if len(seeds) > 1 else str(seeds[0])


def repeat_explanation(groups_by_column: dict[str, list[list[int]]], glyphs: int | None, seeds: int) -> str | None:
    """One line saying which seeds gave the same picture and why (None when no picture repeats)."""
    parts = [f"seeds {_seed_list(group)} ({column})" for column, groups in groups_by_column.items() for group in groups]
    if not parts:
        return None
    if glyphs is None:
        return f"same image for {'; '.join(parts)}: the model ended there from different noise"
    return (f"same glyph for {'; '.join(parts)}: the glyph denoiser ends every run on one of its {glyphs} glyphs, so "
            f"{seeds} seeds share one by chance ({chance_of_a_repeat(glyphs, seeds):.0%} if all were equally likely)")


def check_arguments(out: str, figure: str, model: str | None) -> str:
    """Checks, before any work, what would otherwise fail only at the end: the figure's folder must
    exist and be writable, the figure backend importable, ``model`` a local diffusers pipeline folder.
    Returns the backend to draw with ("matplotlib" or "pillow"); raises ValueError naming the fix."""
    import importlib.util
    import os

    path = Path(out)
    if path.is_dir():
        raise ValueError(f"--out {out} is a folder; give a file path such as {path / 'detnoise_demo.png'}")
    folder = path.parent if str(path.parent) else Path(".")
    if path.suffix.lower() != ".png":
        raise ValueError(f"--out {out}: the figure is a PNG file; give a path ending in .png")
    if not folder.is_dir():
        raise ValueError(f"--out {out}: the folder {folder} does not exist; create it or choose another path")
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ValueError(f"--out {out}: cannot write there (permissions); choose a path in a writable folder")
    have = {name: importlib.util.find_spec(module) is not None
            for name, module in (("matplotlib", "matplotlib"), ("pillow", "PIL"))}
    backend = figure if figure != "auto" else ("matplotlib" if have["matplotlib"] else "pillow")
    if not have[backend]:
        package = "matplotlib" if backend == "matplotlib" else "pillow"
        raise ValueError(f"--figure {figure}: {package} is not installed; pip install {package}"
                         + (" (or --figure pillow)" if backend == "matplotlib" and have["pillow"] else ""))
    if model is not None:
        folder = Path(model)
        if not folder.exists():
            raise ValueError(f"--model {model}: no such folder (the demo reads local pipelines only, nothing is "
                             "downloaded; save one with pipe.save_pretrained(folder))")
        if not folder.is_dir() or not (folder / "model_index.json").is_file():
            raise ValueError(f"--model {model}: not a diffusers pipeline folder (it has no model_index.json; "
                             "save one with pipe.save_pretrained(folder))")
    return backend


def build_offline_pipeline(sample_size: int = 32) -> Any:
    """A DDPMPipeline around the glyph set's exact denoiser, built from code alone."""
    from diffusers import DDPMPipeline

    from detnoise.demo_model import GlyphDenoiser

    model = GlyphDenoiser(sample_size=sample_size)
    return DDPMPipeline(unet=model, scheduler=model.scheduler())


def _denoiser(pipe: Any) -> torch.nn.Module | None:
    return getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)


def run_pipeline(pipe: Any, label: str, device: torch.device, seeds: list[int], generator_device: str,
                 steps: int, prompt: str | None, patched: bool) -> Run:
    """Runs the pipeline once for ``seeds`` (one generator per image), with or without detnoise."""
    pipe.to(device)
    pipe.set_progress_bar_config(desc=f"{label:>22}", leave=False)
    generators = [torch.Generator(generator_device).manual_seed(seed) for seed in seeds]
    kwargs: dict[str, Any] = {"generator": generators if len(seeds) > 1 else generators[0],
                              "num_inference_steps": steps, "output_type": "np"}
    if prompt is not None:
        kwargs["prompt"] = [prompt] * len(seeds)
    else:
        kwargs["batch_size"] = len(seeds)
    if patched:
        with detnoise.patch_diffusers(), diffusers_integration.record_draws() as log:
            images = pipe(**kwargs).images
        draws = [values.cpu() for _, values in log]
    else:
        images = pipe(**kwargs).images
        draws = []
    return Run(label, device, np.asarray(images, dtype=np.float32), draws)


def default_path_noise(shape: tuple[int, ...], seeds: list[int], dtype: torch.dtype) -> torch.Tensor:
    """The first draw of diffusers' default path: torch CPU generators, one per row."""
    from diffusers.utils import torch_utils

    original = diffusers_integration._patch.original if diffusers_integration._patch else torch_utils.randn_tensor
    generators = [torch.Generator().manual_seed(seed) for seed in seeds]
    return original(shape, generator=generators if len(seeds) > 1 else generators[0], dtype=dtype)


def reference_mismatches(noise: torch.Tensor, seeds: list[int]) -> list[int]:
    """Seeds whose row of the initial noise differs from the numpy reference of stream v1 (a
    ``torch.Generator().manual_seed(s)`` draws stream 0 of seed s from block 0)."""
    dtype_name = str(noise.dtype).removeprefix("torch.")
    bad = []
    for row, seed in enumerate(seeds):
        expected = reference.normal(noise[row].numel(), dtype_name, seed)
        values = noise[row].contiguous().reshape(-1)
        if dtype_name == "bfloat16":
            same = np.array_equal(values.view(torch.int16).numpy(), expected.view(np.int16))
        else:
            same = np.array_equal(values.numpy().view(np.uint8), np.ascontiguousarray(expected).view(np.uint8))
        if not same:
            bad.append(seed)
    return bad


def _max_difference(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> float:
    a_values = torch.as_tensor(np.asarray(a) if isinstance(a, np.ndarray) else a).double()
    b_values = torch.as_tensor(np.asarray(b) if isinstance(b, np.ndarray) else b).double()
    return float((a_values - b_values).abs().max()) if a_values.numel() else 0.0


def model_batch_difference(pipe: Any, noise: torch.Tensor, device: torch.device, steps: int) -> float | None:
    """Largest difference between the denoiser's output for a batch and for its rows one at a time,
    on the same inputs, over the run's timesteps: what the model's batched arithmetic alone does.
    None where the denoiser's call cannot be sliced by row here (--model pipelines)."""
    from detnoise.demo_model import GlyphDenoiser

    model = _denoiser(pipe)
    if not isinstance(model, GlyphDenoiser) or noise.shape[0] < 2:
        return None
    pipe.scheduler.set_timesteps(steps)
    sample = noise.to(device)
    largest = 0.0
    with torch.no_grad():
        for timestep in pipe.scheduler.timesteps:
            batch = model(sample, timestep).sample
            rows = torch.cat([model(sample[i : i + 1], timestep).sample for i in range(sample.shape[0])])
            largest = max(largest, _max_difference(batch.cpu(), rows.cpu()))
    return largest


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether two tensors hold the same bytes (so -0.0 differs from 0.0, and equal NaNs match)."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    return torch.equal(a.detach().cpu().contiguous().reshape(-1).view(torch.uint8),
                       b.detach().cpu().contiguous().reshape(-1).view(torch.uint8))


def draws_differing(first: list[torch.Tensor], second: list[torch.Tensor], row: int | None = None) -> int:
    """How many draws differ between two runs: all rows, or row ``row`` of each draw of ``first``
    against a single-image run ``second``. Draws present in only one run count as differing."""
    count = abs(len(first) - len(second))
    for a, b in zip(first, second):
        count += not same_bits(a[row : row + 1] if row is not None else a, b)
    return count


def _noise_pixels(noise: torch.Tensor) -> np.ndarray:
    values = noise.float().cpu().numpy()
    if values.ndim == 3:
        values = values[:3] if values.shape[0] >= 3 else np.repeat(values[:1], 3, axis=0)
        values = values.transpose(1, 2, 0)
    return np.clip(values / 4 + 0.5, 0, 1)


def _difference_pixels(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|a - b| per pixel on a log scale: black where equal, dark red at 1e-9 up to yellow at 1."""
    difference = np.abs(a.astype(np.float64) - b.astype(np.float64)).max(axis=-1)
    level = np.where(difference > 0, np.clip((np.log10(np.maximum(difference, 1e-300)) + 9) / 9, 0.15, 1.0), 0.0)
    return np.stack([np.minimum(1, level * 2), np.clip(level * 2 - 1, 0, 1), np.zeros_like(level)], axis=-1)


def _image_pixels(image: np.ndarray) -> np.ndarray:
    image = np.clip(image, 0, 1)
    return np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image[..., :3]


def _short(print_: str) -> str:
    return print_[:12]


def _gap_text(gap: float) -> str:
    return "0" if gap == 0 else f"{gap:.1e}"


def figure_panels(seeds: list[int], default_noise: torch.Tensor, default: Run, cpu: Run,
                  gpu: Run | None, singles: Sequence[Run] = (), other: Run | None = None) -> list[list[Panel]]:
    """The figure's cells, row by row (one row per seed): COLUMNS with a GPU run, else CPU_COLUMNS
    (each seed's single run in ``singles``, the batch in a second CPU configuration in ``other``).
    Every panel carries its fingerprint; the measured differences are printed inside."""
    noise = cpu.draws[0]
    rows = []
    for i, _seed in enumerate(seeds):
        cpu_image = cpu.images[i]
        row = [
            Panel(_noise_pixels(default_noise[i]), _short(fingerprint(default_noise[i]))),
            Panel(_image_pixels(default.images[i]), _short(fingerprint(torch.from_numpy(default.images[i])))),
        ]
        noise_caption = _short(fingerprint(noise[i]))
        if gpu is not None:
            noise_caption += " =GPU" if same_bits(gpu.draws[0][i], noise[i]) else " !=GPU"
        row.append(Panel(_noise_pixels(noise[i]), noise_caption))
        row.append(Panel(_image_pixels(cpu_image), _short(fingerprint(torch.from_numpy(cpu_image)))))
        if gpu is None:
            if len(singles) != len(seeds) or other is None:
                raise ValueError("without a GPU run, figure_panels needs one single run per seed and a second "
                                 "CPU configuration's run")
            single = singles[i].images[0]
            noise_same = draws_differing(cpu.draws, singles[i].draws, i) == 0
            row.append(Panel(_image_pixels(single), _short(fingerprint(torch.from_numpy(single))),
                             f"noise {'same as' if noise_same else 'DIFFERS from'} batch\n|image - batch| "
                             f"{_gap_text(_max_difference(cpu_image, single))}"))
            other_image = other.images[i]
            noise_same = all(same_bits(a[i], b[i]) for a, b in zip(cpu.draws, other.draws)) \
                and len(cpu.draws) == len(other.draws)
            row.append(Panel(_image_pixels(other_image), _short(fingerprint(torch.from_numpy(other_image))),
                             f"noise {'same as' if noise_same else 'DIFFERS from'} batch\n|image - batch| "
                             f"{_gap_text(_max_difference(cpu_image, other_image))}"))
        else:
            gpu_image = gpu.images[i]
            row.append(Panel(_image_pixels(gpu_image), _short(fingerprint(torch.from_numpy(gpu_image)))))
            image_gap = _max_difference(cpu_image, gpu_image)
            noise_gap = _max_difference(noise[i], gpu.draws[0][i])
            noise_text = "noise same" if noise_gap == 0 else f"noise {noise_gap:.0e}"
            image_text = "image same" if image_gap == 0 else f"image {image_gap:.0e}"
            row.append(Panel(_difference_pixels(cpu_image, gpu_image), f"{noise_text}, {image_text}"))
        rows.append(row)
    return rows


def render_figure(panels: list[list[Panel]], seeds: list[int], title: str, footer: list[str], path: Path,
                  backend: str = "auto", gpu_name: str | None = None,
                  columns: Sequence[str] = COLUMNS) -> FigureLayout:
    """Writes the figure with matplotlib when installed (``backend="auto"``), else with Pillow;
    ``columns`` are the column headers (COLUMNS, or CPU_COLUMNS filled in)."""
    if backend == "auto":
        try:
            import matplotlib  # noqa: F401

            backend = "matplotlib"
        except ImportError:
            backend = "pillow"
    columns = [c.replace("GPU\n", f"GPU ({gpu_name})\n") if gpu_name else c for c in columns]
    draw = _render_matplotlib if backend == "matplotlib" else _render_pillow
    size = draw(panels, seeds, columns, title, footer, path)
    return FigureLayout(path, backend, len(panels), len(panels[0]) if panels else 0, size)


def _render_matplotlib(panels: list[list[Panel]], seeds: list[int], columns: list[str], title: str,
                       footer: list[str], path: Path) -> tuple[int, int]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, cols = len(panels), len(columns)
    footer_inches = 0.2 + 0.17 * len(footer)
    figure, axes = plt.subplots(rows, cols, figsize=(1.9 * cols, 2.0 * rows + 0.8 + footer_inches), dpi=100,
                                squeeze=False)
    for r, row in enumerate(panels):
        for c, panel in enumerate(row):
            axis = axes[r][c]
            axis.set_xticks([])
            axis.set_yticks([])
            if panel.pixels is not None:
                axis.imshow(panel.pixels, interpolation="nearest")
                if panel.note:
                    axis.text(0.5, 0.03, panel.note, ha="center", va="bottom", fontsize=7, family="monospace",
                              color="white", transform=axis.transAxes,
                              bbox={"facecolor": "black", "alpha": 0.7, "edgecolor": "none", "pad": 1.5})
            else:
                axis.set_facecolor("#eeeeee")
                axis.text(0.5, 0.5, panel.note, ha="center", va="center", fontsize=7, transform=axis.transAxes)
            axis.set_xlabel(panel.caption, fontsize=7, family="monospace")
            if r == 0:
                axis.set_title(columns[c], fontsize=8)
            if c == 0:
                axis.set_ylabel(f"seed {seeds[r]}", fontsize=9)
    figure.suptitle(title, fontsize=9)
    figure.text(0.01, 0.01, "\n".join(footer), fontsize=7, family="monospace", va="bottom")
    figure.tight_layout(rect=(0, footer_inches / figure.get_figheight(), 1, 1))
    figure.savefig(path)
    width, height = figure.canvas.get_width_height()
    plt.close(figure)
    return width, height


def _draw_text(pen: Any, xy: tuple[float, float], text: str, font: Any, fill: str = "black",
               line_height: int = 14) -> None:
    """Draws text word by word with a visible space: the default font's own space is 2 pixels wide at
    the sizes used here, which runs words together ("noGPU here")."""
    space = max(font.getlength(" "), 0.6 * font.getlength("n"))
    for k, line in enumerate(text.split("\n")):
        x = xy[0]
        for word in line.split(" "):
            if word:
                pen.text((x, xy[1] + k * line_height), word, fill=fill, font=font)
            x += font.getlength(word) + space


def _render_pillow(panels: list[list[Panel]], seeds: list[int], columns: list[str], title: str,
                   footer: list[str], path: Path) -> tuple[int, int]:
    from PIL import Image, ImageDraw, ImageFont

    try:
        font, small = ImageFont.load_default(size=12), ImageFont.load_default(size=10)
    except TypeError:  # Pillow < 10.1
        font = small = ImageFont.load_default()
    cell, gap, left, line = 128, 14, 64, 14
    top = 24 + 2 * line + 8
    rows, cols = len(panels), len(columns)
    width = left + cols * (cell + gap) + 16  # the last header's text may run past its cell
    row_height = cell + line + gap
    height = top + rows * row_height + 8 + line * len(footer)
    canvas = Image.new("RGB", (width, height), "white")
    pen = ImageDraw.Draw(canvas)
    _draw_text(pen, (8, 6), title, font)
    for c, header in enumerate(columns):
        _draw_text(pen, (left + c * (cell + gap), 24), header, small, line_height=line)
    for r, row in enumerate(panels):
        y = top + r * row_height
        _draw_text(pen, (6, y + cell // 2 - 6), f"seed {seeds[r]}", font)
        for c, panel in enumerate(row):
            x = left + c * (cell + gap)
            if panel.pixels is not None:
                pixels = (np.clip(panel.pixels, 0, 1) * 255).round().astype(np.uint8)
                canvas.paste(Image.fromarray(pixels).resize((cell, cell), Image.NEAREST), (x, y))
                if panel.note:
                    note_lines = panel.note.count("\n") + 1
                    pen.rectangle((x, y + cell - 4 - line * note_lines, x + cell - 1, y + cell - 1), fill="black")
                    _draw_text(pen, (x + 4, y + cell - 2 - line * note_lines), panel.note, small, "white", line)
            else:
                pen.rectangle((x, y, x + cell - 1, y + cell - 1), fill="#eeeeee")
                _draw_text(pen, (x + 6, y + 6), panel.note, small, line_height=line)
            _draw_text(pen, (x, y + cell + 1), panel.caption, small)
    y = top + rows * row_height + 4
    for text in footer:
        _draw_text(pen, (8, y), text, small)
        y += line
    canvas.save(path)
    return canvas.size


def timing_lines(devices: list[torch.device], shapes: list[tuple[tuple[int, ...], torch.dtype, str]],
                 progress: Callable[[Any], Any]) -> list[str]:
    """Plain calls of detnoise.randn_tensor against diffusers' default path (CPU generator, then a
    copy to the device), side by side: medians of 15 repeats with the interquartile range, the
    device and the thread count. ``shapes`` are (shape, dtype, what it is), e.g. this run's latents."""
    from diffusers.utils import torch_utils

    original = diffusers_integration._patch.original if diffusers_integration._patch else torch_utils.randn_tensor
    lines = []
    cases = [(device, shape, dtype, what) for device in devices for shape, dtype, what in shapes]
    for device, shape, dtype, what in progress(cases):
        rows = shape[0]
        cpu_gens = [torch.Generator().manual_seed(i) for i in range(rows)]
        own_gens = [torch.Generator(device.type).manual_seed(i) for i in range(rows)]
        pick = (lambda gens: gens if rows > 1 else gens[0])
        timings = compare({
            "diffusers": lambda: original(shape, generator=pick(cpu_gens), device=device, dtype=dtype),
            "detnoise": lambda: detnoise.randn_tensor(shape, generator=pick(own_gens), device=device, dtype=dtype),
        }, device.type)
        theirs, ours = timings["diffusers"], timings["detnoise"]
        label = f"{'x'.join(map(str, shape))} {str(dtype)[6:]} ({what})"
        ratio = theirs.median_s / ours.median_s
        verdict = f"detnoise {ratio:.1f}x faster" if ratio >= 1 else f"detnoise {1 / ratio:.1f}x slower"
        lines.append(f"  {label} on {ours.where()}: diffusers default {theirs.ms()}, detnoise {ours.ms()} ({verdict})")
    return lines


def _say(flag: bool, yes: str, no: str) -> str:
    return yes if flag else no


def _verdict(equal: bool, gap: float | None = None) -> str:
    return "yes" if equal else "NO" + (f" (up to {gap:.1e})" if gap is not None else "")


def main(args: argparse.Namespace) -> int:
    """Runs the demo; returns 0 when every bit-for-bit claim held, 1 when one did not."""
    from tqdm.auto import tqdm

    from detnoise.demo_model import GlyphDenoiser

    seeds = list(range(args.seed, args.seed + args.images))
    if not seeds:
        raise ValueError("--images must be at least 1")
    gpu = gpu_column_device(args.device)
    best = gpu or torch.device("cpu")
    if args.model:
        from diffusers import DiffusionPipeline

        from detnoise import demo_model  # noqa: F401 - lets from_pretrained find GlyphDenoiser in a saved demo pipeline

        try:
            pipe = DiffusionPipeline.from_pretrained(args.model, local_files_only=True)
        except Exception as error:  # noqa: BLE001 - any loading failure is a bad --model, reported on one line
            raise ValueError(f"--model {args.model}: diffusers could not load it as a pipeline "
                             f"({type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''})"
                             ) from None
        source = f"local model {args.model} ({type(pipe).__name__})"
    else:
        pipe = build_offline_pipeline()
        model = pipe.unet
        source = (f"DDPMPipeline + GlyphDenoiser (exact posterior-mean denoiser of {len(model.config.glyphs)} "
                  f"glyphs drawn with Pillow's font, {model.config.sample_size}x{model.config.sample_size}; no weights)")
    denoiser = _denoiser(pipe)
    glyphs = len(denoiser.config.glyphs) if isinstance(denoiser, GlyphDenoiser) else None
    threads = detnoise.get_num_threads()
    gpu_name = torch.cuda.get_device_name(gpu) if gpu is not None and gpu.type == "cuda" else (str(gpu) if gpu else None)
    this_config = cpu_configuration_label(threads, detnoise.get_cpu_path())
    other_path = detnoise.cpu_paths()[0]  # the simplest kernel path, against the fastest that "auto" picks
    other_config = cpu_configuration_label(1, other_path)
    print(f"detnoise {detnoise.__version__} demo: {source}")
    print(f"  {args.steps} steps of {type(pipe.scheduler).__name__}, seeds {seeds}, one generator per image; "
          f"CPU: {threads} threads; GPU: {gpu_name or 'none'}")
    if gpu is None:
        print(f"  no GPU here: the figure's last two columns show each seed run alone, and the batch run again with "
              f"detnoise's CPU kernels on {other_config} (the main run: {this_config})")

    default = run_pipeline(pipe, "diffusers default", best, seeds, "cpu", args.steps, args.prompt, patched=False)
    cpu = run_pipeline(pipe, "detnoise on cpu", torch.device("cpu"), seeds, "cpu", args.steps, args.prompt, patched=True)
    gpu_run = (run_pipeline(pipe, f"detnoise on {gpu.type}", gpu, seeds, gpu.type, args.steps, args.prompt, patched=True)
               if gpu is not None else None)
    other = None
    if gpu_run is None:
        with cpu_configuration(1, other_path):
            other = run_pipeline(pipe, f"detnoise, {other_config}", torch.device("cpu"), seeds, "cpu", args.steps,
                                 args.prompt, patched=True)
    batch = gpu_run or cpu
    singles = [run_pipeline(pipe, f"seed {seed} alone", best, [seed], best.type, args.steps, args.prompt, patched=True)
               for seed in seeds]
    initial = cpu.draws[0]
    default_noise = default_path_noise(tuple(initial.shape), seeds, initial.dtype)
    model_gap = model_batch_difference(pipe, batch.draws[0], best, args.steps)
    draws = len(cpu.draws)
    noise_claims: list[str] = []
    image_claims: list[str] = []

    print("\nwhat matched, bit for bit:")
    ok = True
    bad_seeds = reference_mismatches(initial, seeds)
    ok &= not bad_seeds
    noise_claims.append(f"detnoise = numpy reference of stream v1: {_verdict(not bad_seeds)}")
    print("  " + _say(not bad_seeds, "initial noise of every seed equals the numpy reference of stream v1 (docs/SPEC.md): yes",
                      f"initial noise DIFFERS from the numpy reference of stream v1 for seeds {bad_seeds}"))
    if gpu_run is not None:
        differing = draws_differing(cpu.draws, gpu_run.draws)
        ok &= differing == 0
        print("  " + _say(differing == 0, f"CPU vs {gpu_name}: all {draws} noise draws (initial + scheduler) identical: yes",
                          f"CPU vs {gpu_name}: {differing} of {draws} noise draws DIFFER"))
        image_gap = _max_difference(cpu.images, gpu_run.images)
        print("  " + _say(image_gap == 0, f"CPU vs {gpu_name}: images identical: yes",
                          f"CPU vs {gpu_name}: images differ by at most {image_gap:.2e}"
                          + (" (the noise was identical; the model's arithmetic on the GPU rounds differently)"
                             if differing == 0 else " (the noise differed)")))
        noise_claims.append(f"CPU = GPU: {_verdict(differing == 0)} ({draws} draws)")
        image_claims.append(f"CPU = GPU: {_verdict(image_gap == 0, image_gap)}")
    else:
        print("  CPU vs GPU: not checked, no GPU here (on a GPU machine the same command compares them; the noise "
              "fingerprints below must match there; image ones also depend on the model's arithmetic and, for "
              "the glyph model, on Pillow's font rendering)")
        assert other is not None
        differing = draws_differing(cpu.draws, other.draws)
        ok &= differing == 0
        print("  " + _say(differing == 0,
                          f"detnoise's CPU kernels on {other_config} vs {this_config}: all {draws} noise draws identical: yes",
                          f"detnoise's CPU kernels on {other_config} vs {this_config}: {differing} of {draws} noise "
                          f"draws DIFFER"))
        other_gap = _max_difference(cpu.images, other.images)
        print("  " + _say(other_gap == 0, f"{other_config} vs {this_config}: images identical: yes",
                          f"{other_config} vs {this_config}: images differ by up to {other_gap:.2e}"))
        noise_claims.append(f"{other_config} = {this_config}: {_verdict(differing == 0)} ({draws} draws)")
        image_claims.append(f"{other_config} = {this_config}: {_verdict(other_gap == 0, other_gap)}")
    single_failures = [seed for row, (seed, single) in enumerate(zip(seeds, singles))
                       if draws_differing(batch.draws, single.draws, row)]
    ok &= not single_failures
    print("  " + _say(not single_failures,
                      f"batch invariance: row i of every noise draw equals image i's single run ({len(seeds)} rows x "
                      f"{len(batch.draws)} draws): yes",
                      f"batch invariance: the noise of seeds {single_failures} DIFFERS between the batch and single runs"))
    batch_gap = max(_max_difference(batch.images[i], single.images[0]) for i, single in enumerate(singles))
    noise_claims.insert(1, f"batch row = seed alone: {_verdict(not single_failures)} ({len(seeds)} rows x "
                           f"{len(batch.draws)} draws)")
    image_claims.insert(0, f"batch row = seed alone: {_verdict(batch_gap == 0, batch_gap)}")
    if batch_gap == 0:
        explanation = "images of the batch equal the single runs bit for bit (largest difference 0)"
        if model_gap == 0:
            explanation += ("; the denoiser alone also gives the same bits for a batch and for its rows here "
                            "(checked on the initial noise at every timestep of the run)")
        elif model_gap is not None:
            explanation += (f", although the denoiser alone differs by up to {model_gap:.1e} between a batch and "
                            f"its rows (its batched matrix products round differently): those differences did not "
                            f"reach the final pixels in this run")
    elif single_failures:
        explanation = f"images of the batch differ from the single runs by up to {batch_gap:.2e}: the noise differed"
    elif model_gap:
        explanation = (f"images of the batch differ from the single runs by up to {batch_gap:.2e}: the noise was "
                       f"identical, and the model alone, given the same input as a batch and row by row, already "
                       f"differs by up to {model_gap:.2e}: its batched arithmetic (matrix products, softmax) rounds "
                       f"differently, not the noise")
    else:
        explanation = (f"images of the batch differ from the single runs by up to {batch_gap:.2e} with identical "
                       f"noise: the model's batched arithmetic"
                       + ("" if model_gap is None else " (not reproduced by the denoiser alone: check the scheduler)"))
    print("  " + explanation)
    distinct = len({fingerprint(torch.from_numpy(image)) for image in cpu.images})
    print(f"  {len(seeds)} seeds gave {distinct} different images")
    repeats = repeat_explanation({"diffusers default": repeated_images(default.images, seeds),
                                  "detnoise": repeated_images(cpu.images, seeds)}, glyphs, len(seeds))
    if repeats:
        print(f"  {repeats}")
    same_as_default = same_bits(default_noise, initial)
    print("  " + _say(same_as_default, "diffusers' default path drew the same noise (unexpected)",
                      "diffusers' default path (torch CPU generator) draws other numbers: its images are others, "
                      "and reproducible only by drawing on the CPU and copying"))

    print("\nfingerprints (SHA-256 of the bytes, first 16 hex digits):")
    for i, seed in enumerate(seeds):
        line = (f"  seed {seed}: noise {fingerprint(initial[i])[:16]}  image cpu "
                f"{fingerprint(torch.from_numpy(cpu.images[i]))[:16]}")
        if gpu_run is not None:
            line += f"  image {gpu.type} {fingerprint(torch.from_numpy(gpu_run.images[i]))[:16]}"
        else:
            line += (f"  alone {fingerprint(torch.from_numpy(singles[i].images[0]))[:16]}"
                     f"  {other_config} {fingerprint(torch.from_numpy(other.images[i]))[:16]}")
        print(line)

    if not args.no_timing:
        latents = tuple(initial.shape)
        shapes = [(latents, initial.dtype, f"this run's latents, {len(seeds)} seeds")]
        if len(seeds) > 1:
            shapes.append(((1, *latents[1:]), initial.dtype, "one seed's latents"))
        print("\nnoise timing of the latents this run drew (each step draws the same shape again), plain calls "
              "(a new tensor each call; randn_tensor has no out=), side by side: median of 15 repeats "
              "(interquartile range), device and threads:")
        devices = [torch.device("cpu")] + ([gpu] if gpu is not None else [])
        bar = lambda cases: tqdm(cases, desc="timing", leave=False)  # noqa: E731
        for line in timing_lines(devices, shapes, bar):
            print(line)

    print("\ndeterminism switches (they matter for the model's arithmetic, not for detnoise's noise):")
    for line in determinism_table():
        print("  " + line)

    title = (f"detnoise {detnoise.__version__}: {type(pipe).__name__}, {args.steps} steps, one generator per seed"
             f"{'' if args.model else ', glyph denoiser'}; CPU {threads} threads; GPU: {gpu_name or 'none'}")
    footer = [
        "captions: SHA-256 fingerprint (first 12 hex digits) of the noise or image bytes"
        + ("" if gpu_run is not None else "; white on black: what this run measured against the batch column"),
        "noise identical, bit for bit: " + ";  ".join(noise_claims),
        "images identical, bit for bit: " + ";  ".join(image_claims),
    ]
    if repeats:
        footer.append(repeats)
    footer.append("diffusers' default path uses torch's CPU generator: other numbers, other images")
    if gpu_run is not None:
        footer.append("|CPU - GPU| panel: black where the bits are equal; dark red (1e-9) to yellow (1) where not")
        columns = COLUMNS
    else:
        footer.append("no GPU here: on a GPU machine the last two columns show the GPU's images and |CPU - GPU|")
        columns = tuple(column.format(rows=len(seeds), this=this_config, other=other_config) for column in CPU_COLUMNS)
    footer = [wrapped for line in footer for wrapped in textwrap.wrap(line, 175, subsequent_indent="    ")]
    panels = figure_panels(seeds, default_noise, default, cpu, gpu_run, singles, other)
    layout = render_figure(panels, seeds, "\n".join(textwrap.wrap(title, 110)), footer, Path(args.out),
                           backend=args.figure, gpu_name=gpu_name, columns=columns)
    print(f"\nwrote {layout.path}: {layout.rows} seeds x {layout.columns} panels, {layout.size[0]}x{layout.size[1]} "
          f"pixels ({layout.backend})")
    print("result: " + _say(ok, "every bit-for-bit check held", "a bit-for-bit check FAILED (see above)"))
    return 0 if ok else 1
