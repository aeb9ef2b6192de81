"""The first-stage restorer `R`: its degraded training pairs, validation, data stream for GPUs, and training."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from latentindigo.degradations import Degradation, degrade, random_degradation, resize
from latentindigo.estimator import jpeg_quality
from latentindigo.metrics import psnr, ssim
from latentindigo.restorer import Restorer, jpeg_grid
from latentindigo.training.data import PhotoCrops, load_photos
from latentindigo.training.loop import run_loop
from latentindigo.weights import save_weights


# output / input size of the training pairs: every scale the demo allows, most often the common 2x and 4x
RESTORER_SCALES = (1, 1.5, 2, 2, 3, 4, 4, 4, 6, 8)

# the kinds of degradation the model card reports, each on the same validation crops:
# name -> (scale, degradation of a (1, 3, 192, 192) crop)
RESTORER_VALIDATION = {
    "x4 blur 1.2 + noise 5 + JPEG 75": Degradation(scale=4, blur=1.2, noise=5, jpeg=75),
    "x2 blur 1.0": Degradation(scale=2, blur=1.0),
    "x4 motion blur": Degradation(scale=4, blur=1.5, blur_kernel="motion", blur_angle=0.6),
    "x4 defocus": Degradation(scale=4, blur=1.5, blur_kernel="defocus"),
    "x8 bicubic": Degradation(scale=8),
    "x1 noise 15": Degradation(scale=1, noise=15),
    "x1 JPEG 30": Degradation(scale=1, jpeg=30),
    "x2 second-order": Degradation(scale=1.4, blur=1.0, noise=4, jpeg=70,
                                   second=Degradation(scale=2 / 1.4, blur=0.6, noise=3, jpeg=60, seed=5)),
}


def typical_degradation(rng: np.random.Generator) -> Degradation:
    """What most users' photos have: x2-x4 (mostly x4), some blur (mostly Gaussian; motion or defocus), then
    light noise and JPEG."""
    d = Degradation(scale=float(rng.choice([2, 3, 4, 4, 4])), blur=float(rng.uniform(0.3, 2.0)),
                    blur_kernel=str(rng.choice(["gaussian", "gaussian", "gaussian", "motion", "defocus"])),
                    blur_angle=float(rng.uniform(0, math.pi)), seed=int(rng.integers(2**31)),
                    resize_mode=str(rng.choice(["bicubic", "bicubic", "bicubic", "bilinear", "area"])))
    if rng.random() < 0.85:
        d.noise = float(rng.uniform(0, 10))
    if rng.random() < 0.85:
        d.jpeg = int(rng.integers(50, 96))
    return d


def compressed_degradation(rng: np.random.Generator) -> Degradation:
    """A photo saved hard at its own size (messaging apps, old web pages): 1x, JPEG quality 20-70, over light
    noise half the time. Without these pairs the restorer made 1x JPEG-30 inputs worse than they were (-0.47 dB)."""
    d = Degradation(scale=1.0, jpeg=int(rng.integers(20, 71)), seed=int(rng.integers(2**31)))
    if rng.random() < 0.5:
        d.noise = float(rng.uniform(0, 5))
    return d


def restorer_pair(x: torch.Tensor, rng: np.random.Generator) -> tuple[torch.Tensor, float, torch.Tensor]:
    """A degradation of the clean crop x, upscaled (bicubic) back to x's size, the scale and its `jpeg_grid`
    (with the quality read off the degraded image, as at inference): 75 % typical ones, 10 % hard-compressed
    ones at 1x, 15 % the whole pipeline (1-8x, random order, second-order passes). On the whole pipeline alone a
    restorer learnt slowly (+0.17 dB over bicubic on x4 blur + noise + JPEG after 400 steps, +0.04 after 1200
    with L1): a blind model spreads its few CPU steps over every case."""
    draw = rng.random()
    if draw < 0.75:
        d = typical_degradation(rng)
    elif draw < 0.85:
        d = compressed_degradation(rng)
    else:
        d = random_degradation(int(rng.integers(2**31)), scale=float(rng.choice(RESTORER_SCALES)),
                               second_order=rng.random() < 0.3)
    return upscaled_pair(x, degrade(x, d))


def upscaled_pair(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, float, torch.Tensor]:
    """The restorer's inputs for y, a degradation of x: y upscaled to x's size, the scale and the JPEG grid."""
    size = tuple(x.shape[-2:])
    return resize(y, size, "bicubic"), x.shape[-1] / y.shape[-1], jpeg_grid(tuple(y.shape[-2:]), size, jpeg_quality(y))


def restorer_validation(restorer: Restorer, photos: list[torch.Tensor]) -> dict:
    """Mean PSNR / SSIM of R and of bicubic per kind of degradation in RESTORER_VALIDATION."""
    out, device = {}, next(restorer.parameters()).device
    for name, d in RESTORER_VALIDATION.items():
        rows = []
        for i, x in enumerate(photos):
            up, scale, grid = upscaled_pair(x, degrade(x, replace(d, seed=100 + i)))
            r = restorer(up.to(device), scale, grid.to(device)).clamp(0, 1).cpu()
            up = up.clamp(0, 1)
            rows.append((psnr(r, x), ssim(r, x), psnr(up, x), ssim(up, x)))
        m = np.mean(rows, axis=0)
        out[name] = {"psnr": round(float(m[0]), 2), "ssim": round(float(m[1]), 4),
                     "bicubic_psnr": round(float(m[2]), 2), "bicubic_ssim": round(float(m[3]), 4)}
    return out


class RestorerBatches(torch.utils.data.IterableDataset):
    """Endless training batches for R, (upscaled, scales, grids, clean): random crops under `restorer_pair`'s
    degradations. Without workers the stream is drawn in the training process from `seed`; each DataLoader
    worker draws its own (seeded by `seed` and its number), so that many CPU cores can feed a GPU (one core
    degrades about 250 crops a second)."""

    def __init__(self, crops: PhotoCrops, batch: int, seed: int):
        self.crops, self.batch, self.seed = crops, batch, seed

    def __iter__(self):
        worker = torch.utils.data.get_worker_info()
        rng = np.random.default_rng(self.seed if worker is None else [self.seed, worker.id])
        while True:
            x = self.crops.batch(rng, self.batch)
            pairs = [restorer_pair(x[i:i + 1], rng) for i in range(self.batch)]
            yield (torch.cat([p[0] for p in pairs]), torch.tensor([p[1] for p in pairs]),
                   torch.cat([p[2] for p in pairs]), x)


def train_restorer(data: Path, out: Path, steps: int = 4000, batch: int = 16, crop: int = 96, lr: float = 5e-4,
                   seed: int = 0, every: int = 250, config: dict | None = None, init: Path | None = None,
                   zoom: tuple[float, float] = (0.25, 1.0), bf16: bool = False, device: str | None = None,
                   workers: int = 0) -> dict:
    """Train R on random crops under the degradation pipeline at random scales (1-8x), minimising the mean over
    the batch of each pair's log MSE (maximising mean PSNR), optionally starting from the weights `init`.
    `bf16`: convolutions in bfloat16 (weights, loss and optimiser stay float32) on channels-last tensors, 2.3x
    the steps per second on a CPU with AVX-512 BF16 (0.38 s against 0.86 s per step of 12 here).
    `device`: cuda when available, as `load_prior`. `workers`: processes that draw and degrade the crops
    (`RestorerBatches`); 0 on a 2-core CPU, most of the cores on a GPU machine."""
    torch.manual_seed(seed)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    restorer = Restorer(**(config or {}))
    if init is not None:
        grow_from(restorer, init)
    layout = torch.channels_last if bf16 else torch.contiguous_format
    restorer.to(device, memory_format=layout)
    # zoomed out down to a quarter: users' photos and the evaluation crops are whole scenes, dense with detail
    train = PhotoCrops(data / "train", crop, zoom)
    val_photos = load_photos(data / "val", side=192)
    batches = iter(torch.utils.data.DataLoader(RestorerBatches(train, batch, seed), batch_size=None,
                                               num_workers=workers, pin_memory=device.type == "cuda"))
    optimizer = torch.optim.Adam(restorer.parameters(), lr=lr)

    def loss_fn(step: int):
        up, scales, grids, x = (t.to(device, non_blocking=True) for t in next(batches))
        # a squared error, not L1: its gradient grows with the error, so the edges a restorer must sharpen
        # lead (one minute of training on x2 blur: +1.41 dB over bicubic with MSE, +0.12 with L1); its log per
        # pair, so that heavy degradations, whose errors are largest, do not drown the light ones users have
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            restored = restorer(up.contiguous(memory_format=layout), scales, grids)
        mse = (restored.float() - x).pow(2).mean(dim=(1, 2, 3))
        loss = torch.log(mse + 1e-5).mean()
        return loss, {"mse": mse.mean().item()}

    def validate() -> dict:
        table = restorer_validation(restorer, val_photos)
        return {"psnr": round(float(np.mean([r["psnr"] for r in table.values()])), 3),
                "bicubic_psnr": round(float(np.mean([r["bicubic_psnr"] for r in table.values()])), 3)}

    settings = dict(batch=batch, crop=crop, lr=lr, seed=seed, config=restorer.config, init=init and str(init),
                    zoom=list(zoom), bf16=bf16, workers=workers)
    info = run_loop(out, {"restorer": restorer}, optimizer, steps, loss_fn, settings, validate, every)
    restorer.eval()
    with torch.no_grad():
        info["validation"] = restorer_validation(restorer, val_photos)
    save_weights(restorer, out / "restorer.safetensors", steps=info["step"], validation=info["validation"])
    return info


def grow_from(restorer: Restorer, path: Path) -> None:
    """Load the weights of a trained restorer into this one, which may have more blocks or input channels: each
    block the file lacks starts as the identity (its last convolution zero), each input channel with zero
    weights, so the grown restorer starts as the trained one."""
    state = load_file(path)
    inp = restorer.inp.weight.detach().clone()
    if state["inp.weight"].shape[1] < inp.shape[1]:  # trained before the JPEG grid was an input
        inp.zero_()[:, : state["inp.weight"].shape[1]] = state["inp.weight"]
        state["inp.weight"] = inp
    missing = restorer.load_state_dict(state, strict=False).missing_keys
    for name, module in restorer.named_modules():
        if f"{name}.conv2.weight" in missing:
            torch.nn.init.zeros_(module.conv2.weight)
            torch.nn.init.zeros_(module.conv2.bias)
