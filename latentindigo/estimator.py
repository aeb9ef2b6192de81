"""The degradation estimator `F`: a low-quality image of any size -> embedding `gamma` (DESIGN section 1).

A small CNN with global pooling, plus classic robust statistics that a CNN with global pooling finds hard
to learn from a few thousand photos: the noise level from the median absolute Haar diagonal coefficient
(Donoho's estimator) at two scales, the detail energy per scale (sharpness, i.e. blur) and JPEG-grid
statistics (JPEG artefacts sit on the 8x8 block grid anchored at the image origin, which strided
convolutions cannot see). An auxiliary head predicts the degradation parameters from `gamma`, so the UI
can show what was estimated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn

from latentindigo.inn import haar_split

# crop large inputs: noise, blur and JPEG are local statistics, and a 4K photo would cost seconds
MAX_SIDE = 384


@dataclass
class Estimate:
    """Degradation parameters predicted by `F`, in user units."""

    scale: float
    blur: float  # Gaussian sigma, high-quality pixels
    noise: float  # standard deviation, 8-bit levels
    jpeg: float  # quality, 100 = no JPEG

    def __str__(self) -> str:
        jpeg = "none" if self.jpeg >= 97 else f"quality {self.jpeg:.0f}"
        return f"scale x{self.scale:.1f}, blur {self.blur:.1f}, noise {self.noise:.1f}/255, JPEG {jpeg}"


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
        return gamma, decode_targets(params[0])


def centre_crop(y: torch.Tensor, side: int) -> torch.Tensor:
    """Crop to at most side x side, at offsets that are multiples of 8 so the JPEG grid stays aligned."""
    H, W = y.shape[-2:]
    top = max(0, (H - side) // 2) // 8 * 8
    left = max(0, (W - side) // 2) // 8 * 8
    return y[..., top : top + side, left : left + side]
