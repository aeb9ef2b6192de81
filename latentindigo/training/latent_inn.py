"""The LatentINN of one VAE, fitted with the estimator `F` frozen; `latentindigo.calibration` runs it on a
prior's first use."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from latentindigo.estimator import DegradationEstimator
from latentindigo.inn import LiftingINN, levels_for_scale
from latentindigo.training.data import PhotoCrops, degraded_batch
from latentindigo.training.loop import run_loop
from latentindigo.weights import save_weights


def train_latent_inn(prior, data: Path, out: Path, estimator: DegradationEstimator, steps: int = 1500,
                     batch: int = 8, crop: int = 128, lr: float = 5e-4, detail_weight: float = 0.01, seed: int = 0,
                     every: int = 250, progress=None) -> dict:
    """Fit the LatentINN to one VAE: || g_c(E(x), F(y)) - E(y_J) ||_1 with F frozen (shared with the PixelINN).

    `data` is a folder of photos (the training split, or the compact calibration set in assets/)."""
    torch.manual_seed(seed)
    inn = LiftingINN(channels=prior.latent_channels, gamma_dim=estimator.config["gamma_dim"]).to(prior.device)
    crops = PhotoCrops(data, crop)
    rng = np.random.default_rng(seed)
    estimator = estimator.to(prior.device).eval().requires_grad_(False)
    val_rng = np.random.default_rng(seed + 1)
    val_batches = [latent_pairs(prior, crops, estimator, val_rng, batch, scale) for scale in (2, 4)]
    optimizer = torch.optim.Adam(inn.parameters(), lr=lr)

    def loss_fn(step: int):
        scale = int(rng.choice([2, 4]))
        z, z_y, gamma = latent_pairs(prior, crops, estimator, rng, batch, scale)
        c, details = inn(z, gamma, levels=levels_for_scale(scale))
        fit = F.l1_loss(c, z_y)
        detail = sum(d.abs().mean() for d in details) / len(details)
        return fit + detail_weight * detail, {"fit": fit.item(), "detail": detail.item()}

    def validate() -> dict:
        return latent_fit(inn, val_batches)

    settings = dict(batch=batch, crop=crop, lr=lr, detail_weight=detail_weight, seed=seed, inn=inn.config,
                    prior=prior.name)
    info = run_loop(out, {"inn": inn}, optimizer, steps, loss_fn, settings, validate, every, progress)
    info["final"] = latent_fit(inn.eval(), val_batches)
    save_weights(inn, out / "latent_inn.safetensors", steps=info["step"], validation=info["final"])
    return info


def latent_pairs(prior, crops: PhotoCrops, estimator: DegradationEstimator, rng: np.random.Generator, batch: int,
                 scale: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(E(x), E(y_J), F(y)) for a batch of random crops under random degradations."""
    b = degraded_batch(crops, rng, batch, scale)
    with torch.no_grad():
        gamma, _ = estimator(b["y"].to(prior.device))
        return prior.encode(b["x"]), prior.encode(b["y_coarse"]), gamma


def latent_fit(inn: LiftingINN, batches: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> dict:
    """Mean absolute error of the forward coarse part against E(y_J): trained network and Haar start."""
    haar = LiftingINN(**inn.config).to(next(inn.parameters()).device).eval()
    trained, plain = [], []
    with torch.no_grad():
        for z, z_y, gamma in batches:
            levels = levels_for_scale(z.shape[-1] / z_y.shape[-1])
            trained.append(F.l1_loss(inn(z, gamma, levels=levels)[0], z_y).item())
            plain.append(F.l1_loss(haar(z, levels=levels)[0], z_y).item())
    return {"error": round(float(np.mean(trained)), 5), "haar_error": round(float(np.mean(plain)), 5)}
