"""Seeded, reproducible image degradations: resampling, blur (Gaussian, motion, defocus), Gaussian/Poisson
noise and JPEG.

Images are float tensors (1, 3, H, W) in [0, 1]. Every function that draws random numbers takes a seed,
and `degrade` / `random_degradation` return the degraded image with the parameters they used, so that a
degradation can be repeated, shown to the user and used as a training target.
"""

from __future__ import annotations

import io
import math
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

RESIZE_MODES = ("bicubic", "bilinear", "area")
BLUR_KERNELS = ("gaussian", "motion", "defocus")


def gaussian_kernel(sigma_x: float, sigma_y: float | None = None, theta: float = 0.0) -> torch.Tensor:
    """A normalised 2-D Gaussian kernel, anisotropic when sigma_y differs, rotated by theta (radians)."""
    sigma_y = sigma_x if sigma_y is None else sigma_y
    radius = max(1, math.ceil(3 * max(sigma_x, sigma_y)))
    r = torch.arange(-radius, radius + 1, dtype=torch.float64)
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    c, s = math.cos(theta), math.sin(theta)
    u, v = c * xx + s * yy, -s * xx + c * yy
    kernel = torch.exp(-0.5 * ((u / sigma_x) ** 2 + (v / sigma_y) ** 2))
    return (kernel / kernel.sum()).float()


def motion_kernel(length: float, theta: float = 0.0) -> torch.Tensor:
    """A straight camera shake of `length` pixels at angle theta: an anti-aliased line segment, normalised."""
    radius = max(1, math.ceil(length / 2 + 1))
    r = torch.arange(-radius, radius + 1, dtype=torch.float64)
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    along, across = math.cos(theta) * xx + math.sin(theta) * yy, -math.sin(theta) * xx + math.cos(theta) * yy
    kernel = (1 - across.abs()).clamp(min=0) * (length / 2 + 0.5 - along.abs()).clamp(0, 1)
    return (kernel / kernel.sum()).float()


def defocus_kernel(radius: float) -> torch.Tensor:
    """An out-of-focus lens: a uniform disk of `radius` pixels with an anti-aliased rim, normalised."""
    size = max(1, math.ceil(radius + 1))
    r = torch.arange(-size, size + 1, dtype=torch.float64)
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    kernel = (radius + 0.5 - (xx**2 + yy**2).sqrt()).clamp(0, 1)
    return (kernel / kernel.sum()).float()


def blur_kernel(sigma_x: float, sigma_y: float | None = None, theta: float = 0.0,
                kind: str = "gaussian") -> torch.Tensor:
    """A blur kernel whose spread along its main axis is sigma_x pixels (standard deviation), whatever its kind:
    a motion line of that spread is sqrt(12) sigma long, a defocus disk 2 sigma in radius."""
    if kind == "motion":
        return motion_kernel(math.sqrt(12) * sigma_x, theta)
    if kind == "defocus":
        return defocus_kernel(2 * sigma_x)
    if kind != "gaussian":
        raise ValueError(f"blur kernel must be one of {', '.join(BLUR_KERNELS)}, not {kind!r}")
    return gaussian_kernel(sigma_x, sigma_y, theta)


def blur(x: torch.Tensor, sigma_x: float, sigma_y: float | None = None, theta: float = 0.0,
         kind: str = "gaussian") -> torch.Tensor:
    if sigma_x <= 0:
        return x
    kernel = blur_kernel(sigma_x, sigma_y, theta, kind)
    pad = kernel.shape[-1] // 2
    channels = x.shape[1]
    weight = kernel.expand(channels, 1, *kernel.shape).to(x)
    return F.conv2d(pad_edges(x, (pad, pad, pad, pad)), weight, groups=channels)


def pad_edges(x: torch.Tensor, pads: tuple[int, int, int, int]) -> torch.Tensor:
    """F.pad by (left, right, top, bottom), mirroring the image (no edge seams); repeating its border where the
    image is too small to mirror (reflect padding needs every pad below the size)."""
    if not any(pads):
        return x
    left, right, top, bottom = pads
    mirror = max(left, right) < x.shape[-1] and max(top, bottom) < x.shape[-2]
    return F.pad(x, pads, mode="reflect" if mirror else "replicate")


def resize(x: torch.Tensor, size: tuple[int, int], mode: str = "bicubic") -> torch.Tensor:
    """Resize to (height, width); anti-aliased when shrinking, as photo software does."""
    if mode not in RESIZE_MODES:
        raise ValueError(f"resize mode must be one of {', '.join(RESIZE_MODES)}, not {mode!r}")
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if mode == "area":
        return F.interpolate(x, size=size, mode="area")
    return F.interpolate(x, size=size, mode=mode, align_corners=False, antialias=True)


def scaled_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """Size of an image downscaled by `scale`, at least one pixel."""
    return max(1, round(height / scale)), max(1, round(width / scale))


def gaussian_noise(x: torch.Tensor, sigma: float, seed: int) -> torch.Tensor:
    """Add Gaussian noise of standard deviation `sigma` in 8-bit levels."""
    g = torch.Generator().manual_seed(seed)
    return x + torch.randn(x.shape, generator=g) * (sigma / 255)


def poisson_noise(x: torch.Tensor, peak: float, seed: int) -> torch.Tensor:
    """Shot noise: `peak` photons at white, so darker and brighter regions get different noise."""
    g = torch.Generator().manual_seed(seed)
    return torch.poisson(x.clamp(0, 1) * peak, generator=g) / peak


def poisson_sigma(peak: float) -> float:
    """Standard deviation in 8-bit levels that Poisson noise of this peak has at mid grey."""
    return 255 * math.sqrt(0.5 * peak) / peak


def jpeg(x: torch.Tensor, quality: int) -> torch.Tensor:
    array = (x[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=int(quality))
    decoded = np.asarray(Image.open(buffer).convert("RGB"))
    return torch.from_numpy(decoded.copy()).permute(2, 0, 1)[None].float() / 255


@dataclass
class Degradation:
    """One degradation pass; zeros and None mean 'off'. Blur sigmas are in pixels of the input image."""

    scale: float = 1.0
    resize_mode: str = "bicubic"
    blur: float = 0.0
    blur_y: float | None = None  # anisotropic blur when set
    blur_angle: float = 0.0
    blur_kernel: str = "gaussian"  # or "motion" (a line at blur_angle) or "defocus" (a disk); same spread
    noise: float = 0.0  # Gaussian, 8-bit levels
    poisson_peak: float = 0.0
    jpeg: int | None = None
    order: tuple[str, ...] = ("blur", "resize", "noise")
    second: Degradation | None = None
    seed: int = 0
    output_size: tuple[int, int] | None = None  # final (height, width); default: input size / scale

    @property
    def noise_level(self) -> float:
        """Noise of this pass in 8-bit levels (Poisson converted at mid grey), for display and targets."""
        return self.noise or (poisson_sigma(self.poisson_peak) if self.poisson_peak else 0.0)

    def to_dict(self) -> dict:
        return asdict(self)


def _apply(x: torch.Tensor, d: Degradation, size: tuple[int, int]) -> torch.Tensor:
    input_height = x.shape[-2]
    for step in d.order:
        if step == "blur":
            # sigmas are in pixels of this pass's input: after the resize they shrink with the image
            k = x.shape[-2] / input_height
            x = blur(x, d.blur * k, None if d.blur_y is None else d.blur_y * k, d.blur_angle, d.blur_kernel)
        elif step == "resize":
            x = resize(x, size, d.resize_mode)
        elif step == "noise":
            if d.noise:
                x = gaussian_noise(x, d.noise, d.seed)
            if d.poisson_peak:
                x = poisson_noise(x, d.poisson_peak, d.seed + 1)
    x = x.clamp(0, 1)
    return jpeg(x, d.jpeg) if d.jpeg else x


def degrade(x: torch.Tensor, d: Degradation) -> torch.Tensor:
    """Apply a degradation (and its second pass) to a (1, 3, H, W) image; the result is in [0, 1]."""
    height, width = x.shape[-2:]
    final = d.output_size or scaled_size(height, width, d.scale * (d.second.scale if d.second else 1.0))
    first = final if d.second is None else scaled_size(height, width, d.scale)
    x = _apply(x, d, first)
    if d.second is not None:
        x = _apply(x, d.second, final)
    return x


def random_degradation(seed: int, scale: float | None = None, second_order: bool = False,
                       noise: bool = True, jpeg: bool = True) -> Degradation:
    """Draw a Real-ESRGAN-style degradation: random blur, resampling, noise and JPEG in random order.

    `scale` fixes the total downscaling factor (a second pass shares it); `noise` / `jpeg` False switch
    those off, e.g. for the noise-free validation of the INN forward model.
    """
    rng = np.random.default_rng(seed)

    def one_pass(pass_scale: float, pass_seed: int, strength: float) -> Degradation:
        d = Degradation(scale=pass_scale, seed=pass_seed, resize_mode=str(rng.choice(RESIZE_MODES)))
        if rng.random() < 0.85:
            d.blur = float(rng.uniform(0.2, 3.0 * strength))
            kind = rng.random()
            if kind < 0.15:  # camera shake and out-of-focus lenses, as users' photos have them
                d.blur_kernel, d.blur_angle = "motion", float(rng.uniform(0, math.pi))
            elif kind < 0.3:
                d.blur_kernel = "defocus"
            elif kind < 0.5:
                d.blur_y = float(rng.uniform(0.2, 3.0 * strength))
                d.blur_angle = float(rng.uniform(0, math.pi))
        if noise and rng.random() < 0.7:
            if rng.random() < 0.7:
                d.noise = float(rng.uniform(1, 25 * strength))
            else:
                d.poisson_peak = float(10 ** rng.uniform(math.log10(30), 3))
        if jpeg and rng.random() < 0.6:
            d.jpeg = int(rng.integers(round(30 + 40 * (1 - strength)), 96))
        # random order of the pixel operations; JPEG stays last, as storing a photo is
        d.order = tuple(str(s) for s in rng.permutation(["blur", "resize", "noise"]))
        return d

    total = scale if scale is not None else float(rng.choice([1, 2, 3, 4]))
    if second_order:
        first_scale = float(rng.uniform(1, total)) if total > 1 else 1.0
        d = one_pass(first_scale, seed * 2 + 1, 1.0)
        d.second = one_pass(total / first_scale, seed * 2 + 2, 0.6)
        return d
    return one_pass(total, seed * 2 + 1, 1.0)


@dataclass
class Summary:
    """What the estimator learns to predict and the UI shows: the overall degradation of an image."""

    scale: float
    blur: float
    noise: float
    jpeg: float  # 100 for none

    @classmethod
    def of(cls, d: Degradation, size: tuple[int, int] = (64, 64)) -> Summary:
        """The summary of a degradation applied to an image of `size` (height, width)."""
        passes = [d] + ([d.second] if d.second else [])
        # blur adds in quadrature; a second pass blurs in units of the already-downscaled image
        blur2, scale = 0.0, 1.0
        for p in passes:
            sigma = math.sqrt(p.blur * (p.blur_y if p.blur_y is not None else p.blur))
            blur2 += (sigma * scale) ** 2
            scale *= p.scale
        # what is visible of JPEG: the last pass's, or the first's when the second pass does not resize it away
        last = d.second if d.second else d
        quality = last.jpeg or (d.jpeg if d.second and d.second.scale == 1 and d.jpeg else None) or 100
        return cls(scale=scale, blur=math.sqrt(blur2), noise=effective_noise(d, size), jpeg=float(quality))


def effective_noise(d: Degradation, size: tuple[int, int] = (64, 64)) -> float:
    """Noise standard deviation (8-bit levels) left in the output: noise added before a blur or a downscale
    is mostly averaged away, and JPEG smooths much of the rest, so the nominal level is not what an image
    shows. Measured by degrading a mid-grey image with and without the noise."""
    if not (d.noise_level or (d.second and d.second.noise_level)):
        return 0.0
    grey = torch.full((1, 3, *size), 0.5)

    def quiet(p: Degradation | None) -> Degradation | None:
        return p and replace(p, noise=0.0, poisson_peak=0.0, second=quiet(p.second))

    return float((degrade(grey, d) - degrade(grey, quiet(d))).std() * 255)


def low_band(x: torch.Tensor, levels: int) -> torch.Tensor:
    """What `levels` dilated 3x3 binomial blurs (dilations 1, 2, 4, ...) leave of x: a smooth wavelet low band
    (a Haar band would add block edges); x itself for 0 levels."""
    kernel = torch.tensor([1.0, 2.0, 1.0], device=x.device, dtype=x.dtype)
    kernel = (kernel[:, None] * kernel[None, :] / 16).expand(x.shape[1], 1, 3, 3)
    # channels-last: oneDNN's depthwise convolution gives the same bits 3.5x (2560 x 1920) to 12x (512 x 512) faster
    x = x.contiguous(memory_format=torch.channels_last)
    for level in range(levels):
        d = 2**level
        x = F.conv2d(pad_edges(x, (d, d, d, d)), kernel, groups=x.shape[1], dilation=d)
    return x.contiguous()
