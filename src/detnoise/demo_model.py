"""The demo's diffusion model: the exact optimal denoiser of a small set of glyph images.

``detnoise demo`` needs a model that turns noise into recognisable pictures without weights to
download. For a training set of N images with equal weight, the best possible denoiser (the one a
network trained to convergence approximates) has a closed form: given x_t = sqrt(a_t) x_0 +
sqrt(1 - a_t) e, the posterior mean of x_0 is a softmax-weighted average of the training images,
with weights proportional to exp(-|x_t - sqrt(a_t) x_i|^2 / (2 (1 - a_t))). Sampling with it ends
on one of the training images, chosen by the noise: different seeds give different glyphs.

The training set is drawn here with Pillow's built-in font (digits and capital letters, one colour
each), so nothing is shipped or downloaded.
"""

from __future__ import annotations

import colorsys

import numpy as np
import torch
from diffusers import DDPMScheduler
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.unets.unet_2d import UNet2DOutput

GLYPHS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_BACKGROUND = (0.08, 0.09, 0.16)


def glyph_images(glyphs: str = GLYPHS, size: int = 32) -> torch.Tensor:
    """(len(glyphs), 3, size, size) float32 images in [-1, 1]: each glyph centred, in its own hue.

    >>> glyph_images("AB", 16).shape
    torch.Size([2, 3, 16, 16])
    """
    from PIL import Image, ImageDraw, ImageFont

    try:
        font = ImageFont.load_default(size=round(size * 0.8))
        small_font = not isinstance(font, ImageFont.FreeTypeFont)  # Pillow without FreeType: a bitmap font
    except TypeError:  # Pillow < 10.1: no size to ask for
        font, small_font = ImageFont.load_default(), True
    images = []
    for index, glyph in enumerate(glyphs):
        canvas = Image.new("L", (size * 2, size * 2), 0)
        ImageDraw.Draw(canvas).text((size // 2, size // 2), glyph, fill=255, font=font)
        box = canvas.getbbox()
        mask = Image.new("L", (size, size), 0)
        if box is not None:
            shape = canvas.crop(box)
            if small_font:
                factor = 0.75 * size / max(shape.size)
                shape = shape.resize((max(1, round(shape.width * factor)), max(1, round(shape.height * factor))),
                                     Image.BILINEAR)
            mask.paste(shape, ((size - shape.width) // 2, (size - shape.height) // 2))
        alpha = np.asarray(mask, dtype=np.float32)[None] / 255.0
        colour = np.array(colorsys.hsv_to_rgb(index / len(glyphs), 0.75, 1.0), dtype=np.float32)[:, None, None]
        background = np.array(_BACKGROUND, dtype=np.float32)[:, None, None]
        images.append((background * (1 - alpha) + colour * alpha) * 2 - 1)
    return torch.from_numpy(np.stack(images))


class GlyphDenoiser(ModelMixin, ConfigMixin):
    """The exact posterior-mean denoiser of the glyph set, predicting the noise like a DDPM UNet.

    Called as ``model(sample, timestep).sample`` (UNet2DModel's output type), so any diffusers
    pipeline built for ``UNet2DModel`` with an epsilon-predicting scheduler (DDPM, DDIM) runs it.
    The noise schedule comes from a ``DDPMScheduler`` with the same settings, so the model and the
    pipeline's scheduler agree on a_t.

    Its arithmetic is a batched matrix product and a softmax: like any batched network, a batch of
    rows may round differently from the same rows one at a time (``detnoise demo`` measures this).
    """

    @register_to_config
    def __init__(self, sample_size: int = 32, in_channels: int = 3, glyphs: str = GLYPHS,
                 num_train_timesteps: int = 1000, beta_schedule: str = "linear",
                 beta_start: float = 0.0001, beta_end: float = 0.02) -> None:
        super().__init__()
        if in_channels != 3:
            raise ValueError(f"GlyphDenoiser draws RGB glyphs: in_channels must be 3, got {in_channels}")
        schedule = DDPMScheduler(num_train_timesteps=num_train_timesteps, beta_schedule=beta_schedule,
                                 beta_start=beta_start, beta_end=beta_end)
        images = glyph_images(glyphs, sample_size).reshape(len(glyphs), -1)
        self.register_buffer("images", images)
        self.register_buffer("half_squared_norms", 0.5 * (images * images).sum(dim=1))
        self.register_buffer("alphas_cumprod", schedule.alphas_cumprod.to(torch.float32))

    def scheduler(self) -> DDPMScheduler:
        """A DDPMScheduler with this model's noise schedule."""
        config = self.config
        return DDPMScheduler(num_train_timesteps=config.num_train_timesteps, beta_schedule=config.beta_schedule,
                             beta_start=config.beta_start, beta_end=config.beta_end)

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor | int, return_dict: bool = True
                ) -> UNet2DOutput | tuple[torch.Tensor]:
        rows = sample.shape[0]
        steps = torch.as_tensor(timestep, device=sample.device).long().reshape(-1).expand(rows)
        alpha = self.alphas_cumprod[steps].to(sample.dtype)[:, None]
        scale = alpha.sqrt()
        variance = 1 - alpha
        flat = sample.reshape(rows, -1)
        images = self.images.to(sample.dtype)
        # log p(x_t | x_i) up to a per-row constant: (scale <x_t, x_i> - scale^2 |x_i|^2 / 2) / variance
        logits = (scale * (flat @ images.T) - scale * scale * self.half_squared_norms.to(sample.dtype)) / variance
        weights = torch.softmax(logits, dim=1)
        clean = weights @ images
        noise = (flat - scale * clean) / variance.sqrt()
        output = noise.reshape(sample.shape)
        if not return_dict:
            return (output,)
        return UNet2DOutput(sample=output)
