"""The degradation estimator `F`: a low-quality image of any size -> embedding `gamma` (DESIGN section 1).

A small CNN with global pooling, plus classic robust statistics that a CNN with global pooling finds hard
to learn from a few thousand photos: the noise level from the median absolute Haar diagonal coefficient
(Donoho's estimator) at two scales, the detail energy per scale (sharpness, i.e. blur) and JPEG-grid
statistics (JPEG artefacts sit on the 8x8 block grid anchored at the image origin, which strided
convolutions cannot see). An auxiliary head predicts the degradation parameters from `gamma`.

What the user is shown is measured, not regressed, where that is exact: the JPEG quality is read off the
quantisation lattice of the image's 8x8 DCT coefficients (`jpeg_quality`), the head's guess correlating only
at r = 0.64 with the truth on the evaluation set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn as nn

from latentindigo.inn import haar_split

# crop large inputs: noise, blur and JPEG are local statistics, and a 4K photo would cost seconds
MAX_SIDE = 384


@dataclass
class Estimate:
    """The degradation of an input, in user units. `jpeg` is measured (`jpeg_quality`); the sampler sets `scale`
    to the output's over the input's size; `blur` and `noise` are the head's guesses, which correlate with the
    truth at r = 0.44 and 0.49 on the evaluation set (JPEG: 0.999), so they are not shown (str) to users."""

    scale: float
    blur: float  # Gaussian sigma, high-quality pixels
    noise: float  # standard deviation, 8-bit levels
    jpeg: float  # quality, 100 = no JPEG

    def __str__(self) -> str:
        # no lattice is no proof of no JPEG: a JPEG resized or filtered after compression has lost its lattice
        jpeg = "unknown (no 8x8 quantisation found)" if self.jpeg >= 97 else f"quality {self.jpeg:.0f}"
        return f"scale x{self.scale:.1f}, JPEG {jpeg}"


# the JPEG standard's example luminance quantisation table (Annex K), which libjpeg scales by the quality
JPEG_LUMA = torch.tensor([
    [16, 11, 10, 16, 24, 40, 51, 61], [12, 12, 14, 19, 26, 58, 60, 55], [14, 13, 16, 24, 40, 57, 69, 56],
    [14, 17, 22, 29, 51, 87, 80, 62], [18, 22, 37, 56, 68, 109, 103, 77], [24, 35, 55, 64, 81, 104, 113, 92],
    [49, 64, 78, 87, 103, 121, 120, 101], [72, 92, 95, 98, 112, 100, 103, 99]], dtype=torch.float64)


def jpeg_steps(quality: torch.Tensor) -> torch.Tensor:
    """libjpeg's luminance quantisation steps (Q, 8, 8) for qualities (Q,) in 1-100."""
    q = quality.double().view(-1, 1, 1)
    scale = torch.where(q < 50, 5000 / q, 200 - 2 * q)
    return torch.floor((JPEG_LUMA * scale + 50) / 100).clamp(1, 255)


def _dct8() -> torch.Tensor:
    n = torch.arange(8, dtype=torch.float64)
    m = torch.cos(math.pi * (2 * n[None, :] + 1) * n[:, None] / 16) * math.sqrt(2 / 8)
    m[0] /= math.sqrt(2)
    return m


MAX_BLOCKS = 4096


def jpeg_quality(y: torch.Tensor) -> float:
    """The libjpeg quality an image was last saved at, or 100 when it shows no JPEG quantisation.

    A decoded JPEG's 8x8 block DCT coefficients (luma) sit near multiples of the quantisation steps. For each
    quality, the lowest 4x4 frequencies' coefficients that are not quantised to zero are scored by how close
    they sit to that quality's lattice (the mean of cos(2 pi c / step)); the answer is the lowest quality whose
    lattice fits (a finer lattice also contains the points of a coarser one), averaged over the qualities with
    the same steps. The block grid is found first: a JPEG cropped at an offset that is not a multiple of 8 has
    its blocks at one of 64 phases, and only there do the coefficients sit on a lattice."""
    rgb = (y[0, :3].detach().cpu().double().clamp(0, 1) * 255).round()
    luma = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2] - 128
    # the grid: the phase whose blocks fit the coarsest lattice (off the grid, only fine lattices fit by chance),
    # the closest fit among equals
    fits = {phase: _lattice_fit(_blocks(luma, rgb, phase, PHASE_BLOCKS)) for phase in
            [(dy, dx) for dy in range(8) for dx in range(8)]}
    fits = {phase: found for phase, found in fits.items() if found is not None}
    if not fits:
        return 100.0
    grid = min(fits, key=lambda phase: (fits[phase][0], -fits[phase][1]))
    found = _lattice_fit(_blocks(luma, rgb, grid, MAX_BLOCKS))
    return 100.0 if found is None else found[0]


PHASE_BLOCKS = 64  # blocks per phase while looking for the grid (enough to tell a lattice from chance)


def _blocks(luma: torch.Tensor, rgb: torch.Tensor, phase: tuple[int, int], limit: int) -> torch.Tensor:
    """The whole 8x8 blocks of `luma` on the grid starting at `phase` (row, column), at most `limit` of them
    spread evenly, leaving out blocks with clipped pixels (black or white are off the lattice)."""
    dy, dx = phase
    luma, rgb = luma[dy:, dx:], rgb[:, dy:, dx:]
    H, W = luma.shape[0] // 8 * 8, luma.shape[1] // 8 * 8
    if H == 0 or W == 0:
        return luma.new_zeros(0, 8, 8)
    blocks = luma[:H, :W].reshape(H // 8, 8, W // 8, 8).permute(0, 2, 1, 3).reshape(-1, 8, 8)
    clipped = ((rgb[:, :H, :W] == 0) | (rgb[:, :H, :W] == 255)).any(dim=0)
    blocks = blocks[~clipped.reshape(H // 8, 8, W // 8, 8).any(dim=(1, 3)).flatten()]
    if len(blocks) > limit:  # evenly spread blocks tell the lattice as well; all of a large photo take GBs
        blocks = blocks[torch.linspace(0, len(blocks) - 1, limit).long()]
    return blocks


def _lattice_fit(blocks: torch.Tensor) -> tuple[float, float] | None:
    """(quality, fit ratio) of the coarsest quantisation lattice these blocks' coefficients sit on, or None."""
    if len(blocks) == 0:
        return None
    dct = _dct8()
    coefficients = (dct @ blocks @ dct.T)[:, :4, :4].reshape(len(blocks), 16)[:, 1:]  # (N, 15) AC
    qualities = torch.arange(1, 101)
    steps = jpeg_steps(qualities)[:, :4, :4].reshape(100, 16)[:, 1:]  # (100, 15)
    c, s = coefficients[None], steps[:, None]  # (1, N, 15), (100, 1, 15)
    counted = (c.abs() > 0.5 * s) & (s >= 4)  # zeros fit every lattice; steps under 4 drown in rounding
    fit = torch.where(counted, torch.cos(2 * math.pi * c / s), 0.0).sum(dim=(1, 2))
    n = counted.sum(dim=(1, 2))
    fits = (n >= 12) & (fit > 0.5 * n)
    if not fits.any():
        return None
    lowest = int(fits.nonzero()[0])
    same = (steps == steps[lowest]).all(dim=1)
    return float(qualities[same].double().mean()), float(fit[lowest] / n[lowest])


def encode_targets(scale: float, blur: float, noise: float, jpeg: float) -> list[float]:
    """Degradation parameters -> the head's regression targets, each roughly in [0, 1]."""
    return [math.log2(max(scale, 1.0)) / 3, blur / 3, noise / 25, (100 - jpeg) / 70]


def decode_targets(t: torch.Tensor) -> Estimate:
    t = t.detach().float().flatten().tolist()
    return Estimate(scale=2 ** max(0.0, 3 * t[0]), blur=max(0.0, 3 * t[1]), noise=max(0.0, 25 * t[2]),
                    jpeg=float(min(100.0, max(1.0, 100 - 70 * t[3]))))


def jpeg_grid_features(y: torch.Tensor) -> torch.Tensor:
    """Mean absolute horizontal/vertical differences by position modulo 8, relative to their mean (B, 16)."""
    gray = y.mean(dim=1)
    feats = []
    for diff, axis in ((gray[:, :, 1:] - gray[:, :, :-1], 2), (gray[:, 1:, :] - gray[:, :-1, :], 1)):
        energy = diff.abs().mean(dim=3 - axis)  # (B, length)
        length = energy.shape[1] // 8 * 8
        if length == 0:
            feats.append(torch.ones(y.shape[0], 8, device=y.device, dtype=y.dtype))
            continue
        by_phase = energy[:, :length].reshape(energy.shape[0], -1, 8).mean(dim=1)
        feats.append(by_phase / (by_phase.mean(dim=1, keepdim=True) + 1e-6))
    return torch.cat(feats, dim=1)


def wavelet_statistics(y: torch.Tensor, levels: int = 2) -> torch.Tensor:
    """Per Haar level: log of the noise estimate median(|HH|) / 0.6745 of each channel and of the mean
    absolute detail of each band and channel (B, (C + 3C) * levels)."""
    feats, x = [], y
    for _ in range(levels):
        x, details = haar_split(x)
        diagonal = details[:, 2 * y.shape[1]:]
        noise = diagonal.flatten(2).abs().median(dim=2).values / 0.6745
        energy = details.flatten(2).abs().mean(dim=2)
        feats += [torch.log(noise + 1e-4), torch.log(energy + 1e-4)]
    return torch.cat(feats, dim=1)


class DegradationEstimator(nn.Module):
    def __init__(self, gamma_dim: int = 64, width: int = 32):
        super().__init__()
        self.config = dict(gamma_dim=gamma_dim, width=width)
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(3, w, 3, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(w, w, 3, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(w, 2 * w, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * w, 2 * w, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * w, 4 * w, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
        )
        self.embed = nn.Sequential(nn.Linear(8 * w + 16 + 24, 128), nn.LeakyReLU(0.2), nn.Linear(128, gamma_dim))
        self.head = nn.Sequential(nn.Linear(gamma_dim, 64), nn.LeakyReLU(0.2), nn.Linear(64, 4))

    def forward(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """y (B, 3, h, w) in [0, 1] -> (gamma (B, gamma_dim), parameter predictions (B, 4))."""
        y = centre_crop(y, MAX_SIDE)
        h = self.features(y * 2 - 1)
        pooled = torch.cat([h.mean(dim=(2, 3)), h.std(dim=(2, 3), unbiased=False)], dim=1)
        gamma = self.embed(torch.cat([pooled, jpeg_grid_features(y), wavelet_statistics(y)], dim=1))
        return gamma, self.head(gamma)

    @torch.no_grad()
    def estimate(self, y: torch.Tensor) -> tuple[torch.Tensor, Estimate]:
        gamma, params = self(y)
        return gamma, replace(decode_targets(params[0]), jpeg=jpeg_quality(y))


def centre_crop(y: torch.Tensor, side: int) -> torch.Tensor:
    """Crop to at most side x side, at offsets that are multiples of 8 so the JPEG grid stays aligned."""
    H, W = y.shape[-2:]
    top = max(0, (H - side) // 2) // 8 * 8
    left = max(0, (W - side) // 2) // 8 * 8
    return y[..., top : top + side, left : left + side]
