"""What a restoration changed, as maps a user can lay over the result.

- Consistency map: the result passed through the INN's forward model (the simulated degradation; for the
  PixelINN the copy refined on this image) against the input, per input pixel, with its PSNR. Bright where
  the result disagrees with the photo.
- Invented-detail map: the high-pass part of what diffusion added over the first-stage estimate R(y), per
  output pixel. Dark where the result is R(y)'s; bright where the prior made detail up.

Both are drawn on fixed scales (FULL_SCALE), not per image, so that a result with nothing to show shows nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from latentindigo.degradations import low_band, resize
from latentindigo.imageio import save_png
from latentindigo.sampler import Done

FULL_SCALE = 0.1  # an RMS difference of 0.1 (25 levels of 255) is drawn at full strength


@dataclass
class Maps:
    consistency: torch.Tensor  # (h, w) at the input's size: RMS over channels of forward(result) - input
    consistency_psnr: float  # dB
    invented: torch.Tensor | None  # (H, W) at the output's size; None for methods without a first stage


def consistency_map(done: Done) -> tuple[torch.Tensor, float]:
    """(per-pixel RMS error at the input's size, PSNR in dB) of the forward model of the result against the
    input."""
    with torch.no_grad():
        coarse = done.forward_model(done.tensor.to(done.gamma.device), done.gamma, levels=done.levels)[0].cpu()
    y = done.measurement.cpu()
    if coarse.shape[-2:] != y.shape[-2:]:  # scales that are not a power of two: the coarse part is near y's size
        coarse = resize(coarse, tuple(y.shape[-2:]), "bicubic")
    error = (coarse - y).pow(2).mean(dim=1)[0]
    return error.sqrt(), min(100.0, -10 * math.log10(max(float(error.mean()), 1e-10)))


def invented_detail(result: torch.Tensor, first_stage: torch.Tensor) -> torch.Tensor:
    """(H, W): RMS over channels of the high frequencies (finer than 2 levels of the smooth wavelet) of
    result - first_stage. Zero where the result is the first-stage estimate; a smooth shift of colour, which
    the colour fix undoes anyway, does not count."""
    added = result.float() - first_stage.float()
    return (added - low_band(added, 2)).pow(2).mean(dim=1)[0].sqrt()


def maps(done: Done) -> Maps:
    error, psnr = consistency_map(done)
    invented = None if done.first_stage is None else invented_detail(done.tensor.cpu(), done.first_stage.cpu())
    return Maps(consistency=error, consistency_psnr=psnr, invented=invented)


def heatmap(values: torch.Tensor, size: tuple[int, int] | None = None) -> Image.Image:
    """A black-red-yellow-white heatmap of (h, w) values on FULL_SCALE, resized (nearest) to `size` (width,
    height)."""
    v = (values.float() / FULL_SCALE).clamp(0, 1).numpy()
    rgb = np.stack([np.clip(3 * v, 0, 1), np.clip(3 * v - 1, 0, 1), np.clip(3 * v - 2, 0, 1)], axis=-1)
    image = Image.fromarray((rgb * 255).round().astype(np.uint8))
    return image if size is None or image.size == size else image.resize(size, Image.Resampling.NEAREST)


def overlay(result: Image.Image, values: torch.Tensor) -> Image.Image:
    """The result, darkened, with the heatmap of `values` on top where they are large."""
    heat = heatmap(values, result.size)
    alpha = heat.convert("L").point(lambda p: min(255, 2 * p))
    base = Image.blend(Image.new("RGB", result.size), result.convert("RGB"), 0.45)
    return Image.composite(heat, base, alpha)


def save_maps(m: Maps, result: Image.Image, folder: Path, stem: str) -> dict[str, Path]:
    """Write the heatmaps and the overlays on `result` as PNGs in `folder`; {what: path}."""
    images = {"consistency": heatmap(m.consistency), "consistency-overlay": overlay(result, m.consistency)}
    if m.invented is not None:
        images |= {"invented": heatmap(m.invented), "invented-overlay": overlay(result, m.invented)}
    return {name: save_png(image, folder / f"{stem}-{name}.png") for name, image in images.items()}
