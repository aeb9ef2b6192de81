"""The first-stage restorer `R` (DESIGN section 6): a low-quality image -> a clean, PSNR-oriented estimate at
the output size, for any scale (1-8x) and any size. The sampler starts from it and takes its colours.

The image is upscaled (bicubic) to the output size first, so one network serves every scale; the scale, as
a constant input channel, tells the network how blurred an upscale of that factor looks. A small U-Net then
predicts the correction to the upscale: thin layers at full resolution, where noise and JPEG blocks live
pixel by pixel, and most of its weights at a quarter of the resolution, where they are cheap and see far
(blur and 8x8 blocks spread over many pixels). Working at a quarter resolution alone, on 4x4 blocks folded
into channels, was measured and did not denoise (26.9 dB against 29.9 dB for this U-Net after one minute of
training on noise 15). Pixels in, pixels out: one set of weights for every prior.
"""

from __future__ import annotations

import math
from functools import cache
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from latentindigo.degradations import pad_edges, resize
from latentindigo.estimator import jpeg_quality
from latentindigo.settings import ASSETS
from latentindigo.weights import load_weights

WEIGHTS = ASSETS / "restorer" / "restorer.safetensors"


class ResidualBlock(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.conv2(F.relu(self.conv1(h)))


def _blocks(width: int, count: int) -> nn.Sequential:
    return nn.Sequential(*(ResidualBlock(width) for _ in range(count)))


JPEG_PERIODS = (8, 16)  # JPEG's luma blocks and its 4:2:0 chroma blocks, in input pixels
GRID_CHANNELS = 4 * len(JPEG_PERIODS) + 1


def jpeg_grid(low: tuple[int, int], size: tuple[int, int], quality: float,
              window: tuple[int, int, int, int] | None = None) -> torch.Tensor:
    """(1, GRID_CHANNELS, height, width): where each output pixel falls in the input's JPEG blocks (cos and sin
    of its phase along rows and columns, for each block period) and how hard the input was compressed ((100 -
    quality) / 100; 0 without JPEG), for an upscale of `low` to `size`, or for the `window` (top, left, height,
    width) of it. A blind network must find the blocks' edges from their artefacts; told where they are and
    how coarse the quantisation was, it can undo them (on the evaluation set JPEG costs bicubic 0.9-1.3 dB,
    noise 0.1-0.5 dB)."""
    top, left, height, width = window or (0, 0, *size)
    channels = []
    for period in JPEG_PERIODS:
        for n_low, n_out, start, count, shape in ((low[0], size[0], top, height, (1, 1, height, 1)),
                                                  (low[1], size[1], left, width, (1, 1, 1, width))):
            # the input-pixel coordinate of each output pixel's centre (align_corners=False), from a block's edge
            u = (torch.arange(start, start + count, dtype=torch.float32) + 0.5) * n_low / n_out
            angle = 2 * math.pi * u / period
            channels += [torch.cos(angle).reshape(shape).expand(1, 1, height, width),
                         torch.sin(angle).reshape(shape).expand(1, 1, height, width)]
    channels.append(torch.full((1, 1, height, width), (100 - quality) / 100))
    return torch.cat(channels, dim=1)


class Restorer(nn.Module):
    """Restorer: bicubic upscale -> three-level U-Net (full, 1/2, 1/4 resolution) -> correction added to the
    upscale. Blind to blur and noise; told the scale and the input's JPEG grid and quality (`jpeg_grid`)."""

    def __init__(self, widths: tuple[int, int, int] = (24, 48, 96), blocks: tuple[int, int, int] = (1, 1, 11)):
        super().__init__()
        self.config = dict(widths=list(widths), blocks=list(blocks))
        w0, w1, w2 = widths
        self.inp = nn.Conv2d(4 + GRID_CHANNELS, w0, 3, padding=1)
        self.encode0, self.down1 = _blocks(w0, blocks[0]), nn.Conv2d(w0, w1, 2, stride=2)
        self.encode1, self.down2 = _blocks(w1, blocks[1]), nn.Conv2d(w1, w2, 2, stride=2)
        self.middle = _blocks(w2, blocks[2])
        self.up2, self.decode1 = nn.ConvTranspose2d(w2, w1, 2, stride=2), _blocks(w1, blocks[1])
        self.up1, self.decode0 = nn.ConvTranspose2d(w1, w0, 2, stride=2), _blocks(w0, blocks[0])
        self.out = nn.Conv2d(w0, 3, 3, padding=1)
        # a fresh restorer is the bicubic upscale: training starts from the baseline, not from noise
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, upscaled: torch.Tensor, scale: float | torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        """upscaled (B, 3, H, W): the input resized (bicubic) to the output size; scale: output / input size
        (a number or one per image); grid (1 or B, GRID_CHANNELS, H, W): `jpeg_grid`. Returns the restored
        (B, 3, H, W), not clamped."""
        H, W = upscaled.shape[-2:]
        pads = (0, -W % 4, 0, -H % 4)  # two halvings
        x = pad_edges(upscaled, pads)
        scale = torch.as_tensor(scale, dtype=x.dtype, device=x.device).reshape(-1, 1, 1, 1)
        level = (torch.log2(scale.clamp(min=1)) / 3).expand(x.shape[0], 1, *x.shape[-2:])
        grid = pad_edges(grid.to(x), pads).expand(x.shape[0], -1, -1, -1)
        h0 = self.encode0(F.relu(self.inp(torch.cat([x * 2 - 1, level, grid], dim=1))))
        h1 = self.encode1(F.relu(self.down1(h0)))
        h2 = self.middle(F.relu(self.down2(h1)))
        d1 = self.decode1(self.up2(h2) + h1)
        d0 = self.decode0(self.up1(d1) + h0)
        return (x + self.out(F.relu(d0)) / 2)[..., :H, :W]


TILE, OVERLAP = 768, 64  # larger outputs are restored in overlapping tiles: memory grows with the tile only


def restore_first_stage(restorer: Restorer, y: torch.Tensor, size: tuple[int, int],
                        quality: float | None = None) -> torch.Tensor:
    """R(y): the low-quality image y (1, 3, h, w) in [0, 1] restored at `size` (height, width), in [0, 1];
    `quality`: y's JPEG quality (100: none), read off y (`jpeg_quality`) when not given.

    Outputs larger than TILE x TILE are restored tile by tile (its full-resolution layers would take gigabytes
    at 4096 x 4096), each tile's weight ramping down over the overlap so that no seam shows."""
    scale = math.sqrt(size[0] * size[1] / (y.shape[-2] * y.shape[-1]))
    upscaled = resize(y, size, "bicubic")
    low, quality = tuple(y.shape[-2:]), jpeg_quality(y) if quality is None else quality
    with torch.no_grad():
        if size[0] <= TILE and size[1] <= TILE:
            return restorer(upscaled, scale, jpeg_grid(low, size, quality).to(y.device)).clamp(0, 1)
        out, weight = torch.zeros_like(upscaled), upscaled.new_zeros(1, 1, *size)
        for top, bottom in _tiles(size[0]):
            for left, right in _tiles(size[1]):
                tile = upscaled[..., top:bottom, left:right]
                ramp = _ramp(tile.shape[-2], tile.device)[:, None] * _ramp(tile.shape[-1], tile.device)[None, :]
                # the grid of this tile only: the whole one would take 9 full-size channels
                tile_grid = jpeg_grid(low, size, quality, (top, left, *tile.shape[-2:])).to(y.device)
                out[..., top:bottom, left:right] += restorer(tile, scale, tile_grid) * ramp
                weight[..., top:bottom, left:right] += ramp
        return (out / weight).clamp(0, 1)


def _tiles(length: int) -> list[tuple[int, int]]:
    """(start, end) of each tile along one axis: as few tiles of about TILE as cover `length` overlapping by about
    OVERLAP, shrunk to share it evenly (two tiles of 768 for 1024 pixels did 2.25x the work of one pass). They
    start at multiples of 4, on the untiled pass's grid of two halvings: tiles that started between them halved
    other pixel pairs and disagreed over their whole overlaps (the bundled restorer, 240 x 320 pixels in tiles of
    96: 0.00048 from the untiled result on average, 0.00027 with these starts; tests/test_tiles.py)."""
    if length <= TILE:
        return [(0, length)]
    count = math.ceil((length - OVERLAP) / (TILE - OVERLAP))
    size = min(TILE, math.ceil((length + (count - 1) * OVERLAP) / count / 8) * 8)
    starts = [round(i * (length - size) / (count - 1) / 4) * 4 for i in range(count)]
    return [(start, start + size) for start in starts[:-1]] + [(starts[-1], length)]


def _ramp(length: int, device: torch.device) -> torch.Tensor:
    i = torch.arange(length, device=device, dtype=torch.float32)
    return (torch.minimum(i + 1, length - i) / OVERLAP).clamp(max=1)


@cache
def load_restorer(path: Path = WEIGHTS) -> Restorer:
    """The bundled, trained restorer (loaded once per process)."""
    # channels-last: oneDNN's convolutions ran it in 0.33 s against 0.52 s at 128 -> 512 on the 2-core CPU,
    # the same result to 3e-7 (as for the prior's networks and Real-ESRGAN)
    return load_weights(Restorer, path).to(memory_format=torch.channels_last)
