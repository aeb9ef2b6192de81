"""Validation numbers of the trained PixelINN and estimator for the model card (assets/inn/MODEL_CARD.md).

    python -m scripts.validate_inn [--folder assets/inn] [--photos data/photos/val]

On the validation photos (never trained on), with degradations drawn from seeds training never used:
PSNR of the forward model's coarse part against noise-free blur + downsampling (x2, x4), for the trained
network and the fresh Haar one; Pearson r of the estimated noise level and JPEG quality against the truth.
"""

import argparse
import json
from pathlib import Path

import torch

from latentindigo.sampler import load_pixel_models
from latentindigo.training.data import load_photos
from latentindigo.training.pixel_inn import estimator_correlation, inn_validation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=Path("assets/inn"))
    parser.add_argument("--photos", type=Path, default=Path("data/photos/val"))
    args = parser.parse_args()
    models = load_pixel_models(args.folder)
    photos = load_photos(args.photos)
    with torch.no_grad():
        forward = inn_validation(models.inn, models.estimator, photos, seeds=range(50_000, 50_005))
        estimator = estimator_correlation(models.estimator, photos, seeds=range(60_000, 60_200))
    print(json.dumps({**forward, **estimator}))
    print("| forward model, noise-free blur + downsampling | x2 PSNR | x4 PSNR |\n|---|---|---|")
    print(f"| trained PixelINN | {forward['x2']:.2f} dB | {forward['x4']:.2f} dB |")
    print(f"| fresh network (Haar) | {forward['x2_haar']:.2f} dB | {forward['x4_haar']:.2f} dB |")
    print(f"\nestimator, Pearson r on 200 random degradations: noise {estimator['noise_r']:.3f}, "
          f"JPEG quality {estimator['jpeg_r']:.3f}")


if __name__ == "__main__":
    main()
