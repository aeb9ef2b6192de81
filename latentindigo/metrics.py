"""Image quality numbers that need no downloaded weights: PSNR, SSIM, measurement consistency, detail (how much)
and detail correlation (whether it is in the right place).

Images are float tensors (1, 3, H, W) in [0, 1]. (Learned metrics such as LPIPS need weight downloads
and are not used here.)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from latentindigo.degradations import gaussian_kernel, resize


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB (capped at 100 for identical images)."""
    mse = F.mse_loss(a.clamp(0, 1).float(), b.clamp(0, 1).float()).item()
    return min(100.0, 10 * math.log10(1 / max(mse, 1e-10)))


def ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    """Structural similarity (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5) on the luma channel."""
    weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    x, y = (t.clamp(0, 1).float().mul(weights).sum(1, keepdim=True) for t in (a, b))
    window = gaussian_kernel(1.5)
    size = min(window.shape[-1], *x.shape[-2:])
    window = gaussian_kernel(1.5 * size / window.shape[-1]) if size < window.shape[-1] else window
    window = window[None, None]

    def filt(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, window)

    c1, c2 = 0.01**2, 0.03**2
    mx, my = filt(x), filt(y)
    sxx, syy, sxy = filt(x * x) - mx**2, filt(y * y) - my**2, filt(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))
    return float(s.mean())


def consistency(output: torch.Tensor, low_quality: torch.Tensor) -> float:
    """PSNR between the low-quality input and the output re-degraded to its size (bicubic, anti-aliased)."""
    return psnr(resize(output, tuple(low_quality.shape[-2:]), "bicubic"), low_quality)


def image_gradients(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Horizontal and vertical differences of neighbouring pixels."""
    return x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]


def gradient_energy(x: torch.Tensor) -> float:
    gx, gy = image_gradients(x)
    return float(gx.pow(2).mean() + gy.pow(2).mean())


def detail(output: torch.Tensor, ground_truth: torch.Tensor) -> float:
    """Gradient energy of the output over that of the ground truth: 1 = as much detail, 0 = flat."""
    return gradient_energy(output) / max(gradient_energy(ground_truth), 1e-12)


LAPLACIAN = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])[None, None]


def detail_correlation(output: torch.Tensor, ground_truth: torch.Tensor) -> float:
    """Pearson correlation of the output's and the ground truth's luma Laplacians: 1 = the fine detail is where
    the ground truth's is, 0 = unrelated to it (invented texture, noise). Blind to how much there is: `detail`."""
    weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    a, b = (F.conv2d(t.clamp(0, 1).float().cpu().mul(weights).sum(1, keepdim=True), LAPLACIAN).flatten()
            for t in (output, ground_truth))
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / ((a.norm() * b.norm()).clamp(min=1e-12)))
