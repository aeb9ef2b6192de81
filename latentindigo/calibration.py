"""The calibrated LatentINN of a VAE: where it is cached, and the calibration that puts it there.

A prior whose folder carries no LatentINN is calibrated once per VAE (`load_prior` does it on first use on a
GPU; `python -m latentindigo calibrate` anywhere). This is the runtime's one way into `latentindigo.training`,
and it is taken only when a calibration runs.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from latentindigo.estimator import DegradationEstimator
from latentindigo.settings import ASSETS
from latentindigo.weights import load_weights

if TYPE_CHECKING:
    from latentindigo.priors import Prior

# the bundled estimator F, as `sampler.load_pixel_models` loads it (the sampler imports priors, which imports this)
ESTIMATOR_WEIGHTS = ASSETS / "inn" / "estimator.safetensors"


def vae_fingerprint(vae: torch.nn.Module) -> str:
    """A hash of a VAE's config and weights: the key of its calibrated LatentINN in the cache."""
    # (config keys starting with "_" are diffusers' bookkeeping, e.g. a set whose order changes per process)
    config = {k: v for k, v in dict(vae.config).items() if not k.startswith("_")}
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    for name, tensor in sorted(vae.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:32]


def latent_inn_cache_path(vae: torch.nn.Module) -> Path:
    """Where `calibrate_latent_inn` stores the LatentINN of this VAE: in the Hugging Face cache folder."""
    from huggingface_hub.constants import HF_HOME

    return Path(HF_HOME) / "latentindigo" / "latent_inn" / f"{vae_fingerprint(vae)}.safetensors"


def calibrate_latent_inn(prior: Prior, data: Path | None = None, steps: int = 600, batch: int = 8, crop: int = 128,
                         progress: Callable[[int, int], None] | None = None) -> Path:
    """Train the LatentINN of a prior's VAE on the compact calibration set and cache it where `load_prior`
    looks (`latent_inn_cache_path`); an interrupted calibration resumes. Returns the cached file."""
    from latentindigo.training.latent_inn import train_latent_inn  # (the trainers load only when one runs)

    target = latent_inn_cache_path(prior.vae)
    run_folder = target.with_suffix(".run")  # checkpoints
    estimator = load_weights(DegradationEstimator, ESTIMATOR_WEIGHTS)
    info = train_latent_inn(prior, data or ASSETS / "calibration", run_folder, estimator, steps=steps, batch=batch,
                            crop=crop, every=max(1, steps // 4), progress=progress)
    shutil.move(run_folder / "latent_inn.safetensors", target)
    shutil.rmtree(run_folder)
    final = info["final"]
    print(f"{target}: LatentINN error {final['error']:.4f} (Haar initialisation {final['haar_error']:.4f})")
    return target
