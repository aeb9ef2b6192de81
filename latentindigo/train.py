"""Training on the CPU: the VAE and UNet of the bundled prior, and the INNs with the estimator `F`.

Every loop is resumable: `OUT/checkpoint.safetensors` holds the weights and the optimiser state
(safetensors, so resuming never unpickles anything) and `OUT/checkpoint.json` the step and settings.
Run `python scripts/build_photoset.py` first; the photos come from `data/photos/{train,val}`.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from latentindigo.degradations import Degradation, Summary, degrade, random_degradation, resize
from latentindigo.estimator import DegradationEstimator, encode_targets
from latentindigo.inn import LiftingINN, coarse_size
from latentindigo.weights import save_weights


class PhotoCrops:
    """Random square crops of a folder of photos, held in memory, at random zoom, flipped at random."""

    def __init__(self, folder: str | Path, size: int, zoom: tuple[float, float] = (0.5, 1.0)):
        paths = sorted(Path(folder).glob("*.png"))
        if not paths:
            raise FileNotFoundError(f"no photos in {folder}: run scripts/build_photoset.py first")
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


@dataclass
class Checkpoint:
    """Weights, optimiser state and progress of one training run, in safetensors + JSON."""

    folder: Path

    @property
    def weights(self) -> Path:
        return self.folder / "checkpoint.safetensors"

    @property
    def meta(self) -> Path:
        return self.folder / "checkpoint.json"

    def save(self, modules: dict[str, torch.nn.Module], optimizer: torch.optim.Optimizer, info: dict) -> None:
        tensors = {f"{name}.{k}": v.detach().contiguous() for name, m in modules.items()
                   for k, v in m.state_dict().items()}
        state = optimizer.state_dict()
        for pid, pstate in state["state"].items():
            for key, value in pstate.items():
                tensors[f"optim.{pid}.{key}"] = torch.as_tensor(value).contiguous()
        self.folder.mkdir(parents=True, exist_ok=True)
        # write-then-rename so an interrupted save never leaves a corrupt checkpoint behind
        save_file(tensors, self.weights.with_suffix(".tmp"))
        self.weights.with_suffix(".tmp").replace(self.weights)
        meta = dict(info, param_groups=state["param_groups"])
        self.meta.with_suffix(".tmp").write_text(json.dumps(meta, indent=1))
        self.meta.with_suffix(".tmp").replace(self.meta)

    def load(self, modules: dict[str, torch.nn.Module], optimizer: torch.optim.Optimizer) -> dict:
        """Restore a saved run; returns its info (empty when there is nothing to resume)."""
        if not self.weights.exists():
            return {}
        tensors = load_file(self.weights)
        for name, m in modules.items():
            prefix = f"{name}."
            m.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
        meta = json.loads(self.meta.read_text())
        state: dict = {"state": {}, "param_groups": meta.pop("param_groups")}
        for key, value in tensors.items():
            if key.startswith("optim."):
                _, pid, name = key.split(".", 2)
                state["state"].setdefault(int(pid), {})[name] = value
        optimizer.load_state_dict(state)
        return meta


def image_gradients(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = F.mse_loss(a.clamp(0, 1), b.clamp(0, 1)).item()
    return 10 * math.log10(1 / max(mse, 1e-12))


def _run_loop(out: Path, modules: dict[str, torch.nn.Module], optimizer: torch.optim.Optimizer, steps: int,
              loss_fn, settings: dict, validate, every: int) -> dict:
    """The loop every trainer shares: resume, cosine learning-rate decay, progress bar, validation and
    checkpoints. `settings["lr"]` is the peak learning rate."""
    checkpoint = Checkpoint(out)
    info = checkpoint.load(modules, optimizer) or {"step": 0, "history": [], "settings": settings}
    start = info["step"]
    if start:
        print(f"resuming {out} at step {start}")
    for m in modules.values():
        m.train()
    bar = tqdm(range(start, steps), initial=start, total=steps, desc=out.name, dynamic_ncols=True)
    running, t0 = [], time.time()
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = settings["lr"] * 0.5 * (1 + math.cos(math.pi * step / steps))
        loss, parts = loss_fn(step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], 1.0)
        optimizer.step()
        running.append(parts)
        bar.set_postfix({k: f"{v:.4g}" for k, v in parts.items()})
        if (step + 1) % every == 0 or step + 1 == steps:
            for m in modules.values():
                m.eval()
            with torch.no_grad():
                val = validate()
            for m in modules.values():
                m.train()
            mean = {k: float(np.mean([r[k] for r in running])) for k in running[0]}
            info["history"].append({"step": step + 1, "train": mean, "val": val,
                                    "seconds": round(time.time() - t0, 1)})
            info["step"] = step + 1
            checkpoint.save(modules, optimizer, info)
            tqdm.write(f"step {step + 1}: train {mean} val {val}")
            running = []
    return info


# ---------------------------------------------------------------------------------------------- VAE

def vae_config(factor: int, channels: tuple[int, ...] = (32, 64, 128, 128)) -> dict:
    """AutoencoderKL config for a downsampling factor of 4 or 8 with 4 latent channels."""
    blocks = {4: 3, 8: 4}[factor]
    channels = channels[:blocks]
    return dict(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1,
                down_block_types=["DownEncoderBlock2D"] * blocks, up_block_types=["UpDecoderBlock2D"] * blocks,
                block_out_channels=list(channels), norm_num_groups=16, sample_size=256,
                mid_block_add_attention=False)


def train_vae(data: Path, out: Path, factor: int = 8, steps: int = 20000, batch: int = 8, crop: int = 128,
              lr: float = 2e-4, kl_weight: float = 1e-6, seed: int = 0, every: int = 500) -> dict:
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    vae = AutoencoderKL(**vae_config(factor))
    train, val = PhotoCrops(data / "train", crop), PhotoCrops(data / "val", 256, zoom=(1.0, 1.0))
    rng = np.random.default_rng(seed)
    val_batch = val.batch(np.random.default_rng(1234), 8)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)

    def loss_fn(step: int):
        x = train.batch(rng, batch) * 2 - 1
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample()).sample
        l1 = F.l1_loss(recon, x)
        # edges: an L1 on image gradients fights the blur a pixel loss alone gives without a GAN
        grad = sum(F.l1_loss(a, b) for a, b in zip(image_gradients(recon), image_gradients(x)))
        kl = posterior.kl().mean()
        return l1 + grad + kl_weight * kl, {"l1": l1.item(), "grad": grad.item(), "kl": kl.item()}

    def validate() -> dict:
        recon = vae.decode(vae.encode(val_batch * 2 - 1).latent_dist.mode()).sample
        return {"psnr": round(psnr((recon + 1) / 2, val_batch), 3)}

    settings = dict(factor=factor, batch=batch, crop=crop, lr=lr, kl_weight=kl_weight, seed=seed,
                    config=vae_config(factor))
    info = _run_loop(out, {"vae": vae}, optimizer, steps, loss_fn, settings, validate, every)
    vae.save_pretrained(out / "vae")
    return info


# ---------------------------------------------------------------------------------------------- INNs

def levels_for_scale(scale: float) -> int:
    """Number of INN levels J for a scale factor: the coarse grid is the nearest power of two."""
    return max(1, round(math.log2(max(scale, 1.0))))


def degraded_pair(x: torch.Tensor, scale: float, seed: int, second_order: bool = False, noise: bool = True,
                  jpeg: bool = True) -> tuple[torch.Tensor, torch.Tensor, Degradation]:
    """(y, y_J, degradation) for a clean (1, 3, H, W) image: y the low-quality image, y_J on the coarse grid."""
    d = random_degradation(seed, scale=scale, second_order=second_order, noise=noise, jpeg=jpeg)
    y = degrade(x, d)
    y_coarse = resize(y, coarse_size(*x.shape[-2:], levels_for_scale(scale)), "bicubic")
    return y, y_coarse, d


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
        s = Summary.of(d)
        truth.append((s.noise, s.jpeg))
        predicted.append((estimate.noise, estimate.jpeg))
    t, p = np.array(truth), np.array(predicted)
    return {"noise_r": round(float(np.corrcoef(t[:, 0], p[:, 0])[0, 1]), 3),
            "jpeg_r": round(float(np.corrcoef(t[:, 1], p[:, 1])[0, 1]), 3)}


def load_photos(folder: Path, side: int | None = None) -> list[torch.Tensor]:
    """Photos as (1, 3, H, W) tensors, centre-cropped to side x side when given."""
    out = []
    for path in sorted(Path(folder).glob("*.png")):
        image = Image.open(path).convert("RGB")
        if side:
            left, top = (image.width - side) // 2, (image.height - side) // 2
            image = image.crop((left, top, left + side, top + side))
        out.append(torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)[None].float() / 255)
    return out


def train_pixel_inn(data: Path, out: Path, steps: int = 4000, batch: int = 12, crop: int = 96,
                    lr: float = 5e-4, detail_weight: float = 0.01, aux_weight: float = 0.1, seed: int = 0,
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
        xs, ys, coarse, targets = [], [], [], []
        for _ in range(batch):
            crop_image = train.crop(rng)
            x = torch.from_numpy(np.asarray(crop_image).copy()).permute(2, 0, 1)[None].float() / 255
            y, y_coarse, d = degraded_pair(x, scale, int(rng.integers(2**31)), second_order=rng.random() < 0.3)
            s = Summary.of(d)
            xs.append(x), ys.append(y), coarse.append(y_coarse)
            targets.append(encode_targets(s.scale, s.blur, s.noise, s.jpeg))
        x, y, y_coarse = torch.cat(xs), torch.cat(ys), torch.cat(coarse)
        gamma, predicted = estimator(y)
        c, details = inn(x, gamma, levels=levels_for_scale(scale))
        fit = F.l1_loss(c, y_coarse)
        detail = sum(d.abs().mean() for d in details) / len(details)
        aux = F.mse_loss(predicted, torch.tensor(targets))
        loss = fit + detail_weight * detail + aux_weight * aux
        return loss, {"fit": fit.item(), "detail": detail.item(), "aux": aux.item()}

    def validate() -> dict:
        return {**inn_validation(inn, estimator, val_photos, seeds=range(10_000, 10_002)),
                **estimator_correlation(estimator, val_photos, seeds=range(20_000, 20_024))}

    settings = dict(batch=batch, crop=crop, lr=lr, detail_weight=detail_weight, aux_weight=aux_weight, seed=seed,
                    inn=inn.config, estimator=estimator.config)
    info = _run_loop(out, {"inn": inn, "estimator": estimator}, optimizer, steps, loss_fn, settings, validate,
                     every)
    save_weights(inn, out / "pixel_inn.safetensors", steps=info["step"])
    save_weights(estimator, out / "estimator.safetensors", steps=info["step"])
    return info
