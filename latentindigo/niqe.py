"""NIQE, the "completely blind" naturalness score (Mittal, Soundararajan and Bovik, 2012): lower is more natural.

A re-implementation of the official MATLAB release (niqe_release: computequality.m, computefeature.m,
estimateaggdparam.m) in numpy and scipy, with MATLAB's rgb2gray, imfilter('replicate') and imresize(0.5,
bicubic with antialiasing) written out, so that its scores match MATLAB's (`scripts/validate_niqe.py`). The
pristine model (mean and covariance of 36 patch features over pristine photos, and the 7x7 Gaussian window) is
the official one, shipped in `assets/niqe/` (see its README for provenance).

`niqe_pooled` fits one Gaussian over the patches of a whole set of images: per-image NIQE on 256x256 crops
(four 96x96 patches each) rests on too few patches to be stable.
"""

from __future__ import annotations

from functools import cache

import numpy as np
from scipy.ndimage import correlate
from scipy.special import gamma

from latentindigo.settings import ASSETS

PATCH = 96  # the official patch size; scale 2 uses 48
ALPHAS = np.arange(0.2, 10.001, 0.001)  # MATLAB's 0.2:0.001:10, the shapes the AGGD fit chooses from
RHO = gamma(2 / ALPHAS) ** 2 / (gamma(1 / ALPHAS) * gamma(3 / ALPHAS))
GREY = np.array([0.298936021293775, 0.587043074451121, 0.114020904255103])  # MATLAB's rgb2gray


@cache
def pristine() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean (36,), covariance (36, 36), Gaussian window (7, 7)) of the official pristine model."""
    with np.load(ASSETS / "niqe" / "niqe_pris_params.npz") as params:
        return params["mu_pris_param"].ravel(), params["cov_pris_param"], params["gaussian_window"]


def grey(image: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) or (H, W) -> float64 grey levels 0..255, rounded as MATLAB's rgb2gray rounds uint8."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError(f"NIQE takes uint8 (H, W) or (H, W, 3) images, not {image.dtype} {image.shape}")
    if image.ndim == 3:
        return np.round(image[..., :3].astype(np.float64) @ GREY)
    return image.astype(np.float64)


def _cubic(x: np.ndarray) -> np.ndarray:
    x = np.abs(x)
    return ((1.5 * x**3 - 2.5 * x**2 + 1) * (x <= 1)
            + (-0.5 * x**3 + 2.5 * x**2 - 4 * x + 2) * ((x > 1) & (x <= 2)))


def _halve_axis(image: np.ndarray, axis: int) -> np.ndarray:
    """MATLAB's imresize by 0.5 along one axis: the bicubic kernel stretched by 2 (antialiasing), mirrored
    borders."""
    n = image.shape[axis]
    out_n = int(np.ceil(n / 2))
    u = (np.arange(1, out_n + 1) / 0.5 + 0.5 * (1 - 1 / 0.5))  # output centres in 1-based input coordinates
    width = 4 / 0.5
    left = np.floor(u - width / 2)
    taps = int(np.ceil(width)) + 2
    indices = left[:, None] + np.arange(taps)[None]
    weights = 0.5 * _cubic(0.5 * (u[:, None] - indices))
    weights /= weights.sum(axis=1, keepdims=True)
    mirror = np.concatenate([np.arange(n), np.arange(n - 1, -1, -1)])
    indices = mirror[(indices.astype(int) - 1) % (2 * n)]
    moved = np.moveaxis(image, axis, 0)
    out = np.einsum("ot,ot...->o...", weights, moved[indices])
    return np.moveaxis(out, 0, axis)


def halve(image: np.ndarray) -> np.ndarray:
    """MATLAB's imresize(image, 0.5) on a double image (rows first, then columns)."""
    return _halve_axis(_halve_axis(image, 0), 1)


def _aggd(values: np.ndarray) -> tuple[float, float, float]:
    """Shape and left / right scales of an asymmetric generalised Gaussian fitted by moment matching."""
    left = np.sqrt(np.mean(values[values < 0] ** 2))
    right = np.sqrt(np.mean(values[values > 0] ** 2))
    ratio = left / right
    rhat = np.mean(np.abs(values)) ** 2 / np.mean(values**2)
    rhat_norm = rhat * (ratio**3 + 1) * (ratio + 1) / (ratio**2 + 1) ** 2
    alpha = ALPHAS[np.argmin((RHO - rhat_norm) ** 2)]
    spread = np.sqrt(gamma(1 / alpha) / gamma(3 / alpha))
    return alpha, left * spread, right * spread


def _patch_features(block: np.ndarray) -> list[float]:
    """The 18 features of one normalised patch: its AGGD, and that of each neighbour product (4 directions)."""
    alpha, beta_l, beta_r = _aggd(block.ravel())
    features = [alpha, (beta_l + beta_r) / 2]
    for shift in ((0, 1), (1, 0), (1, 1), (-1, 1)):
        alpha, beta_l, beta_r = _aggd((block * np.roll(block, shift, axis=(0, 1))).ravel())
        features += [alpha, (beta_r - beta_l) * gamma(2 / alpha) / gamma(1 / alpha), beta_l, beta_r]
    return features


def patch_features(image: np.ndarray) -> np.ndarray:
    """(patches, 36) features of a uint8 image's whole 96x96 patches at two scales; (0, 36) for smaller images."""
    window = pristine()[2]
    g = grey(image)
    rows, cols = g.shape[0] // PATCH, g.shape[1] // PATCH
    g = g[: rows * PATCH, : cols * PATCH]
    scales = []
    for size in (PATCH, PATCH // 2):
        mu = correlate(g, window, mode="nearest")
        sigma = np.sqrt(np.abs(correlate(g * g, window, mode="nearest") - mu * mu))
        normalised = (g - mu) / (sigma + 1)
        # in flat areas g - mu is the filter's rounding noise (~1e-13), whose signs would decide the AGGD fits
        # there; MATLAB's filter gives exact zeros, and so does snapping the noise (I19 of the validation set)
        normalised[np.abs(normalised) < 1e-6] = 0
        scales.append([_patch_features(normalised[r * size:(r + 1) * size, c * size:(c + 1) * size])
                       for c in range(cols) for r in range(rows)])
        g = halve(g)
    return np.concatenate([np.array(s, dtype=np.float64).reshape(-1, 18) for s in scales], axis=1)


def _distance(features: np.ndarray) -> float:
    """The distance between the pristine Gaussian and one fitted to these patch features."""
    if len(features) < 2:
        raise ValueError("NIQE needs at least two 96x96 patches")
    mu_p, cov_p, _ = pristine()
    mu = np.nanmean(features, axis=0)
    cov = np.cov(features[~np.isnan(features).any(axis=1)], rowvar=False)
    d = mu_p - mu
    return float(np.sqrt(d @ np.linalg.pinv((cov_p + cov) / 2) @ d))


def niqe(image: np.ndarray) -> float:
    """NIQE of one uint8 image (at least 96x192 pixels), as MATLAB's niqe_release computes it."""
    return _distance(patch_features(image))


def niqe_pooled(images: list[np.ndarray]) -> float:
    """NIQE of a set of uint8 images: one Gaussian fitted over all their patches."""
    return _distance(np.concatenate([patch_features(image) for image in images]))
