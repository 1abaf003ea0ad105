"""`detnoise demo`: a real diffusers pipeline, a labelled figure, and claims computed from the runs."""

from __future__ import annotations

import ctypes
import re

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")

import detnoise  # noqa: E402
from detnoise import _core, _native, cli, demo  # noqa: E402
from detnoise.demo_model import GLYPHS, GlyphDenoiser, glyph_images  # noqa: E402

_LAYOUT = re.compile(r"wrote (.+): (\d+) seeds x (\d+) panels, (\d+)x(\d+) pixels \((\w+)\)")


def _run_demo(capsys, *arguments: str) -> tuple[int, str, str, re.Match]:
    status = cli.main(["demo", *arguments])
    captured = capsys.readouterr()
    layout = _LAYOUT.search(captured.out)
    assert layout is not None, captured.out
    return status, captured.out, captured.err, layout


def _panels_drawn(path, rows: int, columns: int) -> int:
    """Counts the Pillow figure's cells that hold a picture or a grey note (not the white page)."""
    from PIL import Image

    with Image.open(path) as figure:
        pixels = np.asarray(figure.convert("RGB"))
    cell, gap, left, top, line = 128, 14, 64, 24 + 2 * 14 + 8, 14
    drawn = 0
    for r in range(rows):
        for c in range(columns):
            y0, x0 = top + r * (cell + line + gap), left + c * (cell + gap)
            block = pixels[y0 + 4 : y0 + cell - 4, x0 + 4 : x0 + cell - 4]
            drawn += bool((block != 255).any())
    return drawn


def test_the_default_demo_writes_the_figure_and_every_check_holds(tmp_path, capsys) -> None:
    out = tmp_path / "demo.png"
    status, text, errors, layout = _run_demo(capsys, "--out", str(out), "--figure", "pillow")
    assert status == 0, text
    rows, columns, width, height = (int(layout.group(i)) for i in (2, 3, 4, 5))
    assert (rows, columns) == (4, len(demo.COLUMNS if demo.gpu_device() else demo.CPU_COLUMNS))
    from PIL import Image

    with Image.open(out) as figure:
        assert figure.size == (width, height)
    assert _panels_drawn(out, rows, columns) == rows * columns
    assert "equals the numpy reference of stream v1 (docs/SPEC.md): yes" in text
    assert "batch invariance: row i of every noise draw equals image i's single run (4 rows x 25 draws): yes" in text
    assert "4 seeds gave 4 different images" in text
    assert "median of 15 repeats" in text and "IQR" in text
    threads = detnoise.get_num_threads()
    assert f"4x3x32x32 float32 (this run's latents, 4 seeds) on cpu, {threads} thread" in text
    assert "1x3x32x32 float32 (one seed's latents) on cpu, " in text
    assert "result: every bit-for-bit check held" in text
    for phase in ("diffusers default", "detnoise on cpu", "seed 0 alone", "seed 3 alone", "timing"):
        assert phase in errors, f"no progress bar for {phase}"


def test_the_demo_reports_broken_noise(tmp_path, capsys, monkeypatch) -> None:
    """Break the batched CPU draw (row 0, element 0) and the demo must say what no longer matches."""
    original = _core.fill_cpu_rows

    def broken(kind, dtype, out, row_elements, seeds, *rest):
        original(kind, dtype, out, row_elements, seeds, *rest)
        if dtype == 1 and len(seeds) > 1:  # float32 batches only: single runs stay right
            cell = ctypes.c_float.from_address(out)
            cell.value += 1.0

    monkeypatch.setattr(_core, "fill_cpu_rows", broken)
    status, text, _, _ = _run_demo(capsys, "--images", "2", "--steps", "3", "--no-timing", "--figure", "pillow",
                                   "--out", str(tmp_path / "broken.png"))
    assert status == 1
    assert "initial noise DIFFERS from the numpy reference of stream v1 for seeds [0]" in text
    assert "batch invariance: the noise of seeds [0] DIFFERS between the batch and single runs" in text
    assert "a bit-for-bit check FAILED" in text


def test_the_gpu_column_compares_devices(tmp_path, capsys, monkeypatch) -> None:
    """Without a GPU, a second CPU run stands in for one: the comparison code runs and finds equality."""
    if demo.gpu_device() is None:
        monkeypatch.setattr(demo, "gpu_device", lambda: torch.device("cpu"))
    status, text, _, layout = _run_demo(capsys, "--images", "2", "--steps", "3", "--no-timing",
                                        "--out", str(tmp_path / "devices.png"))
    assert status == 0, text
    assert re.search(r"CPU vs .+: all 3 noise draws \(initial \+ scheduler\) identical: yes", text)
    assert int(layout.group(3)) == len(demo.COLUMNS)


def test_a_local_model_directory_runs(tmp_path, capsys) -> None:
    saved = tmp_path / "glyph-pipeline"
    demo.build_offline_pipeline(sample_size=16).save_pretrained(saved)
    status, text, _, _ = _run_demo(capsys, "--model", str(saved), "--images", "2", "--steps", "2", "--no-timing",
                                   "--figure", "pillow", "--out", str(tmp_path / "local.png"))
    assert status == 0, text
    assert f"local model {saved}" in text


def test_glyph_denoiser_recovers_a_training_image_from_light_noise() -> None:
    model = GlyphDenoiser(sample_size=16)
    images = glyph_images(GLYPHS, 16)
    assert images.shape == (len(GLYPHS), 3, 16, 16) and images.min() >= -1 and images.max() <= 1
    timestep = 50
    alpha = model.alphas_cumprod[timestep]
    noise = torch.randn(images[:3].shape, generator=torch.Generator().manual_seed(0))
    noisy = alpha.sqrt() * images[:3] + (1 - alpha).sqrt() * noise
    predicted = model(noisy, torch.tensor(timestep)).sample
    clean = (noisy - (1 - alpha).sqrt() * predicted) / alpha.sqrt()
    torch.testing.assert_close(clean, images[:3], atol=1e-4, rtol=0)


def test_same_bits_tells_negative_zero_apart() -> None:
    assert demo.same_bits(torch.tensor([0.0]), torch.tensor([0.0]))
    assert not demo.same_bits(torch.tensor([0.0]), torch.tensor([-0.0]))
    assert not demo.same_bits(torch.tensor([1.0]), torch.tensor([1.0], dtype=torch.float64))


def test_asking_for_a_gpu_that_cannot_run_names_the_fix(capsys) -> None:
    if demo.gpu_device() is not None:
        pytest.skip("CUDA works here")
    assert cli.main(["demo", "--device", "cuda", "--no-timing"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("detnoise: error: --device cuda: ")
    assert any(fix in error for fix in ("install a CUDA build of torch", "reinstall from source", "nvidia-smi"))


def _refused_before_any_work(capsys, monkeypatch, *arguments: str) -> str:
    """Runs `detnoise demo` with arguments it must refuse up front: exit code 2, one error line, no run."""
    def no_run(args):
        raise AssertionError("the demo ran before refusing its arguments")

    monkeypatch.setattr(demo, "main", no_run)
    assert cli.main(["demo", *arguments]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "Traceback" not in captured.err
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("detnoise: error: "), lines
    return lines[0]


def test_an_output_path_that_cannot_be_written_is_refused_up_front(tmp_path, capsys, monkeypatch) -> None:
    assert "does not exist" in _refused_before_any_work(capsys, monkeypatch, "--out", "/nonexistent/dir/x.png")
    assert "is a folder" in _refused_before_any_work(capsys, monkeypatch, "--out", str(tmp_path))
    assert "ending in .png" in _refused_before_any_work(capsys, monkeypatch, "--out", str(tmp_path / "x.txt"))


def test_a_missing_figure_backend_is_refused_up_front(capsys, monkeypatch) -> None:
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *rest: None if name == "matplotlib" else find_spec(name, *rest))
    line = _refused_before_any_work(capsys, monkeypatch, "--figure", "matplotlib")
    assert "matplotlib is not installed" in line and "--figure pillow" in line


def test_a_model_path_that_is_not_a_pipeline_is_refused_up_front(tmp_path, capsys, monkeypatch) -> None:
    assert "no such folder" in _refused_before_any_work(capsys, monkeypatch, "--model", str(tmp_path / "nothing"))
    assert "no model_index.json" in _refused_before_any_work(capsys, monkeypatch, "--model", str(tmp_path))


def test_without_a_gpu_every_panel_holds_a_picture_and_its_fingerprint(tmp_path, capsys, monkeypatch) -> None:
    """No placeholder: the GPU columns show each seed alone and a second CPU configuration, each with
    what was measured printed in it; the footer keeps noise and images apart, each claim computed."""
    monkeypatch.setattr(demo, "gpu_device", lambda: None)
    drawn = {}
    render = demo.render_figure

    def keep(panels, seeds, title, footer, path, **kwargs):
        drawn.update(panels=panels, footer=footer, columns=kwargs["columns"])
        return render(panels, seeds, title, footer, path, **kwargs)

    monkeypatch.setattr(demo, "render_figure", keep)
    status, text, _, _ = _run_demo(capsys, "--images", "3", "--steps", "3", "--no-timing", "--figure", "pillow",
                                   "--out", str(tmp_path / "cpu.png"))
    assert status == 0, text
    other = f"1 thread, {detnoise.cpu_paths()[0]} path"
    assert drawn["columns"][4].startswith("each seed alone") and other in drawn["columns"][5]
    for row in drawn["panels"]:
        assert all(panel.pixels is not None and re.fullmatch(r"[0-9a-f]{12}( .*)?", panel.caption) for panel in row)
        assert [panel.note for panel in row[4:]] == ["noise same as batch\n|image - batch| 0"] * 2
        assert row[3].caption == row[4].caption == row[5].caption  # the same image bytes
    footer = "\n".join(drawn["footer"])
    assert "noise identical, bit for bit: detnoise = numpy reference of stream v1: yes;  batch row = seed alone: yes" in footer
    assert f"{other} = " in footer and "images identical, bit for bit: batch row = seed alone: yes" in footer
    assert f"detnoise's CPU kernels on {other} vs " in text and "all 3 noise draws identical: yes" in text
    assert detnoise.get_cpu_path() == "auto" and _native._num_threads is None  # the configuration is restored


def test_repeated_pictures_are_found_and_explained() -> None:
    images = np.zeros((4, 2, 2, 3), dtype=np.float32)
    images[1] += 1
    images[2] += 0.5
    assert demo.repeated_images(images, [0, 1, 2, 3]) == [[0, 3]]
    assert abs(demo.chance_of_a_repeat(36, 4) - (1 - 35 * 34 * 33 / 36**3)) < 1e-12
    assert demo.chance_of_a_repeat(2, 3) == 1.0
    line = demo.repeat_explanation({"diffusers default": [[0, 3]], "detnoise": []}, 36, 4)
    assert line == ("same glyph for seeds 0 and 3 (diffusers default): the glyph denoiser ends every run on one of "
                    "its 36 glyphs, so 4 seeds share one by chance (16% if all were equally likely)")
    assert demo.repeat_explanation({"detnoise": []}, 36, 4) is None


def test_the_pillow_figure_keeps_its_spaces() -> None:
    """The default font's own space is 2 pixels wide: "no GPU" read as "noGPU"."""
    from PIL import Image, ImageDraw, ImageFont

    try:
        font = ImageFont.load_default(size=10)
    except TypeError:
        pytest.skip("Pillow < 10.1 has one bitmap font with wide spaces")

    def widest_gap(draw) -> int:
        canvas = Image.new("L", (120, 20), 255)
        draw(ImageDraw.Draw(canvas))
        ink = (np.asarray(canvas) < 128).any(axis=0).nonzero()[0]
        return int(np.diff(ink).max()) - 1

    spaced = widest_gap(lambda pen: demo._draw_text(pen, (2, 2), "no GPU", font))
    assert spaced >= 4 and spaced > widest_gap(lambda pen: pen.text((2, 2), "no GPU", fill="black", font=font))


def test_a_pipeline_folder_that_does_not_load_is_one_error_line(tmp_path, capsys) -> None:
    (tmp_path / "model_index.json").write_text('{"_class_name": "DDPMPipeline", "unet": ["diffusers", "UNet2DModel"], '
                                               '"scheduler": ["diffusers", "DDPMScheduler"]}')
    assert cli.main(["demo", "--model", str(tmp_path), "--no-timing", "--out", str(tmp_path / "x.png")]) == 2
    error = capsys.readouterr().err
    assert "Traceback" not in error
    assert error.splitlines()[-1].startswith(f"detnoise: error: --model {tmp_path}: diffusers could not load it")
