"""The training data: random crops of the photo set, whole validation photos, and degraded pairs of them."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from latentindigo.degradations import Degradation, Summary, degrade, random_degradation, resize
from latentindigo.estimator import encode_targets
from latentindigo.inn import coarse_size, levels_for_scale


def photo_paths(folder: str | Path) -> list[Path]:
    """The photos of a folder of the photo set: PNG as `build_photoset` writes them, or JPEG (a compact copy to
    carry to a GPU machine, `scripts/gpu_train_restorer.sh`)."""
    return sorted(p for p in Path(folder).glob("*") if p.suffix.lower() in (".png", ".jpg"))


class PhotoCrops:
    """Random square crops of a folder of photos, held in memory, at random zoom, flipped at random."""

    def __init__(self, folder: str | Path, size: int, zoom: tuple[float, float] = (0.5, 1.0)):
        paths = photo_paths(folder)
        if not paths:
            raise FileNotFoundError(f"no photos in {folder}: run python -m scripts.build_photoset first")
        self.photos = [Image.open(p).convert("RGB") for p in paths]
        self.names = [p.stem for p in paths]
        self.size = size
        self.zoom = zoom

    def crop(self, rng: np.random.Generator, size: int | None = None) -> Image.Image:
        size = size or self.size
        photo = self.photos[rng.integers(len(self.photos))]
        # zoom < 1 takes a larger region and shrinks it: more content per crop, sharper than the source
        zoom = math.exp(rng.uniform(math.log(self.zoom[0]), math.log(self.zoom[1])))
        side = min(round(size / zoom), photo.width, photo.height)
        x, y = rng.integers(photo.width - side + 1), rng.integers(photo.height - side + 1)
        crop = photo.crop((x, y, x + side, y + side)).resize((size, size), Image.Resampling.BICUBIC)
        if rng.random() < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return crop

    def batch(self, rng: np.random.Generator, n: int) -> torch.Tensor:
        arrays = np.stack([np.asarray(self.crop(rng)) for _ in range(n)])
        return torch.from_numpy(arrays).permute(0, 3, 1, 2).float() / 255


def load_photos(folder: Path, side: int | None = None) -> list[torch.Tensor]:
    """Photos as (1, 3, H, W) tensors, centre-cropped to side x side when given."""
    out = []
    for path in photo_paths(folder):
        image = Image.open(path).convert("RGB")
        if side:
            s = min(side, image.width, image.height)
            left, top = (image.width - s) // 2, (image.height - s) // 2
            image = image.crop((left, top, left + s, top + s))
        out.append(torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)[None].float() / 255)
    return out


def degraded_pair(x: torch.Tensor, scale: float, seed: int, second_order: bool = False, noise: bool = True,
                  jpeg: bool = True) -> tuple[torch.Tensor, torch.Tensor, Degradation]:
    """(y, y_J, degradation) for a clean (1, 3, H, W) image: y the low-quality image, y_J on the coarse grid."""
    d = random_degradation(seed, scale=scale, second_order=second_order, noise=noise, jpeg=jpeg)
    y = degrade(x, d)
    y_coarse = resize(y, coarse_size(*x.shape[-2:], levels_for_scale(scale)), "bicubic")
    return y, y_coarse, d


def degraded_batch(crops: PhotoCrops, rng: np.random.Generator, batch: int, scale: float,
                   clean: bool = False) -> dict:
    """Random crops x, their random degradations y (noise- and JPEG-free if `clean`), y on the coarse grid
    and the parameter targets."""
    xs, ys, coarse, targets = [], [], [], []
    for _ in range(batch):
        x = torch.from_numpy(np.asarray(crops.crop(rng)).copy()).permute(2, 0, 1)[None].float() / 255
        y, y_coarse, d = degraded_pair(x, scale, int(rng.integers(2**31)), second_order=rng.random() < 0.3,
                                       noise=not clean, jpeg=not clean)
        s = Summary.of(d, tuple(x.shape[-2:]))
        xs.append(x), ys.append(y), coarse.append(y_coarse)
        targets.append(encode_targets(s.scale, s.blur, s.noise, s.jpeg))
    return {"x": torch.cat(xs), "y": torch.cat(ys), "y_coarse": torch.cat(coarse), "targets": torch.tensor(targets),
            "levels": levels_for_scale(scale)}
