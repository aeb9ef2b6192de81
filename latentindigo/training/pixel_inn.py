"""The PixelINN and the degradation estimator `F`, trained together, and their validation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from latentindigo.degradations import Degradation, Summary, degrade, random_degradation
from latentindigo.estimator import DegradationEstimator
from latentindigo.inn import LiftingINN, levels_for_scale
from latentindigo.metrics import psnr
from latentindigo.training.data import PhotoCrops, degraded_batch, load_photos
from latentindigo.training.loop import run_loop
from latentindigo.weights import save_weights


def validation_degradation(seed: int, scale: int) -> Degradation:
    """Noise-free blur + bicubic/bilinear downsampling, the case the forward model must reproduce."""
    rng = np.random.default_rng(seed)
    return Degradation(scale=scale, blur=float(rng.uniform(0.3, 2.0)), seed=seed,
                       resize_mode=str(rng.choice(["bicubic", "bilinear"])))


def inn_validation(inn: LiftingINN, estimator: DegradationEstimator, photos: list[torch.Tensor],
                   scales: tuple[int, ...] = (2, 4), seeds: range = range(10_000, 10_004)) -> dict:
    """Mean PSNR of the forward coarse part against unseen noise-free degradations, for the trained
    network and for the fresh (Haar) one."""
    haar = LiftingINN(**inn.config).eval()
    out = {}
    for scale in scales:
        levels = levels_for_scale(scale)
        trained, plain = [], []
        for i, x in enumerate(photos):
            for seed in seeds:
                y = degrade(x, validation_degradation(seed * 100 + i, scale))
                gamma, _ = estimator(y)
                trained.append(psnr(inn(x, gamma, levels=levels)[0], y))
                plain.append(psnr(haar(x, levels=levels)[0], y))
        out[f"x{scale}"] = round(float(np.mean(trained)), 2)
        out[f"x{scale}_haar"] = round(float(np.mean(plain)), 2)
    return out


def estimator_correlation(estimator: DegradationEstimator, photos: list[torch.Tensor],
                          seeds: range = range(20_000, 20_040)) -> dict:
    """Pearson r between predicted and true noise level and JPEG quality, on unseen random degradations."""
    truth, predicted = [], []
    for seed in seeds:
        x = photos[seed % len(photos)]
        d = random_degradation(seed, second_order=seed % 3 == 0)
        _, estimate = estimator.estimate(degrade(x, d))
        s = Summary.of(d, tuple(x.shape[-2:]))
        truth.append((s.noise, s.jpeg))
        predicted.append((estimate.noise, estimate.jpeg))
    t, p = np.array(truth), np.array(predicted)
    return {"noise_r": round(float(np.corrcoef(t[:, 0], p[:, 0])[0, 1]), 3),
            "jpeg_r": round(float(np.corrcoef(t[:, 1], p[:, 1])[0, 1]), 3)}


def pixel_inn_loss(inn: LiftingINN, estimator: DegradationEstimator, batch: dict, detail_weight: float = 0.01,
                   aux_weight: float = 0.1) -> tuple[torch.Tensor, dict]:
    """|| g_c(x, F(y)) - y_J ||_1 + a penalty on detail magnitudes + the parameter head's regression."""
    gamma, predicted = estimator(batch["y"])
    c, details = inn(batch["x"], gamma, levels=batch["levels"])
    fit = F.l1_loss(c, batch["y_coarse"])
    detail = sum(d.abs().mean() for d in details) / len(details)
    aux = F.mse_loss(predicted, batch["targets"])
    loss = fit + detail_weight * detail + aux_weight * aux
    return loss, {"fit": fit.item(), "detail": detail.item(), "aux": aux.item()}


def train_pixel_inn(data: Path, out: Path, steps: int = 4000, batch: int = 12, crop: int = 96,
                    lr: float = 5e-4, detail_weight: float = 0.01, aux_weight: float = 0.5, seed: int = 0,
                    every: int = 250, inn_config: dict | None = None) -> dict:
    """Train F and the PixelINN together: || g_c(x, F(y)) - y_J ||_1 + detail penalty + parameter head."""
    torch.manual_seed(seed)
    inn = LiftingINN(**(inn_config or {"channels": 3}))
    estimator = DegradationEstimator(gamma_dim=inn.gamma_dim)
    train = PhotoCrops(data / "train", crop)
    val_photos = load_photos(data / "val", side=192)
    rng = np.random.default_rng(seed)
    params = list(inn.parameters()) + list(estimator.parameters())
    optimizer = torch.optim.Adam(params, lr=lr)

    def loss_fn(step: int):
        scale = float(rng.choice([2, 2, 3, 4, 4]))
        # half the batches are noise-free: noise cannot be predicted, and without it the residual is exactly
        # the forward model's error, which pins down the blur and resampling kernels precisely
        batch_data = degraded_batch(train, rng, batch, scale, clean=rng.random() < 0.5)
        return pixel_inn_loss(inn, estimator, batch_data, detail_weight, aux_weight)

    def validate() -> dict:
        return {**inn_validation(inn, estimator, val_photos, seeds=range(10_000, 10_002)),
                **estimator_correlation(estimator, val_photos, seeds=range(20_000, 20_024))}

    settings = dict(batch=batch, crop=crop, lr=lr, detail_weight=detail_weight, aux_weight=aux_weight, seed=seed,
                    inn=inn.config, estimator=estimator.config)
    info = run_loop(out, {"inn": inn, "estimator": estimator}, optimizer, steps, loss_fn, settings, validate,
                     every)
    save_weights(inn, out / "pixel_inn.safetensors", steps=info["step"])
    save_weights(estimator, out / "estimator.safetensors", steps=info["step"])
    return info
