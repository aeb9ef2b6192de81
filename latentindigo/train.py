"""Training on the CPU: the VAE and UNet of the bundled prior, the INNs with the estimator `F`, and the
first-stage restorer `R` (which also trains on a GPU, fed by worker processes: `RestorerBatches`).

Every loop is resumable: `OUT/checkpoint.safetensors` holds the weights and the optimiser state
(safetensors, so resuming never unpickles anything) and `OUT/checkpoint.json` the step and settings.
Run `python -m scripts.build_photoset` first; the photos come from `data/photos/{train,val}`.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from latentindigo.degradations import Degradation, Summary, degrade, random_degradation, resize
from latentindigo.estimator import DegradationEstimator, encode_targets, jpeg_quality
from latentindigo.inn import LiftingINN, coarse_size, levels_for_scale
from latentindigo.metrics import detail, image_gradients, psnr, ssim
from latentindigo.priors import alphas_from_scheduler_config, latent_inn_cache_path
from latentindigo.restorer import Restorer, jpeg_grid
from latentindigo.settings import ASSETS
from latentindigo.weights import save_weights


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
        tensors = {f"{name}.{k}": v.detach().cpu().contiguous() for name, m in modules.items()
                   for k, v in m.state_dict().items()}
        state = optimizer.state_dict()
        for pid, pstate in state["state"].items():
            for key, value in pstate.items():
                tensors[f"optim.{pid}.{key}"] = torch.as_tensor(value).cpu().contiguous()
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


def gradient_l1(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 between the image gradients of x and target: fights the blur a pixel loss alone gives, without a GAN."""
    return sum(F.l1_loss(a, b) for a, b in zip(image_gradients(x), image_gradients(target)))


def _run_loop(out: Path, modules: dict[str, torch.nn.Module], optimizer: torch.optim.Optimizer, steps: int,
              loss_fn, settings: dict, validate, every: int, progress=None) -> dict:
    """The loop every trainer shares: resume, cosine learning-rate decay, progress bar (and `progress(step,
    steps)` after each step), validation and checkpoints. `settings["lr"]` is the peak learning rate."""
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
        if progress is not None:
            progress(step + 1, steps)
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
    with torch.no_grad():  # start with little posterior noise (sigma ~0.05): the decoder then sees the means,
        vae.quant_conv.bias[vae.config.latent_channels:] = -6.0  # and reconstruction learns far faster
    train, val = PhotoCrops(data / "train", crop), PhotoCrops(data / "val", 256, zoom=(1.0, 1.0))
    rng = np.random.default_rng(seed)
    val_batch = val.batch(np.random.default_rng(1234), 8)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)

    def loss_fn(step: int):
        x = train.batch(rng, batch) * 2 - 1
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample()).sample
        l1 = F.l1_loss(recon, x)
        grad = gradient_l1(recon, x)
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


def local_gradient_energy(x: torch.Tensor, window: int = 8) -> torch.Tensor:
    """Mean squared image gradient in each window x window cell: how much detail there is, not where."""
    gx, gy = image_gradients(x)
    energy = (gx[..., :-1, :] ** 2 + gy[..., :, :-1] ** 2).mean(1, keepdim=True)
    return F.avg_pool2d(energy, window)


def train_decoder(data: Path, vae_folder: Path, out: Path, steps: int = 200, batch: int = 8, crop: int = 128,
                  lr: float = 1e-4, seed: int = 0, every: int = 100) -> dict:
    """Fine-tune a trained VAE's decoder with its encoder frozen, so its latents (and the UNet and LatentINN
    trained on them) stay valid, as Stable Diffusion's decoder fine-tune sharpened images without retraining
    the UNet. A pixel loss alone decodes blurry means; the energy term asks each 8x8 cell for the ground
    truth's amount of detail without asking where it is, the cycle term keeps that detail invisible to the
    encoder."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    vae = AutoencoderKL.from_pretrained(vae_folder)
    decoder = [*vae.post_quant_conv.parameters(), *vae.decoder.parameters()]
    vae.requires_grad_(False)
    for p in decoder:
        p.requires_grad_(True)
    train, val = PhotoCrops(data / "train", crop), PhotoCrops(data / "val", 256, zoom=(1.0, 1.0))
    rng = np.random.default_rng(seed)
    val_batch = val.batch(np.random.default_rng(1234), 8)
    with torch.no_grad():  # the encoder is frozen: the validation latents never change
        val_latents = vae.encode(val_batch * 2 - 1).latent_dist.mode()
    optimizer = torch.optim.AdamW(decoder, lr=lr, weight_decay=0.0)

    def loss_fn(step: int):
        x = train.batch(rng, batch) * 2 - 1
        with torch.no_grad():
            posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample()).sample
        l1 = F.l1_loss(recon, x)
        grad = gradient_l1(recon, x)
        # square roots: the loss then weighs flat and busy cells alike
        energy = F.l1_loss((local_gradient_energy(recon) + 1e-4).sqrt(), (local_gradient_energy(x) + 1e-4).sqrt())
        # the added detail must encode back to the same latent: PixelINN guidance decodes and re-encodes at
        # every step, and detail the encoder sees would be added again each time
        cycle = F.l1_loss(vae.encode(recon).latent_dist.mean, posterior.mean)
        parts = {"l1": l1.item(), "grad": grad.item(), "energy": energy.item(), "cycle": cycle.item()}
        return l1 + grad + energy + cycle, parts

    def validate() -> dict:
        recon = ((vae.decode(val_latents).sample + 1) / 2).clamp(0, 1)
        return {"psnr": round(psnr(recon, val_batch), 3),
                "detail": round(float(np.mean([detail(r[None], x[None]) for r, x in zip(recon, val_batch)])), 3)}

    settings = dict(vae=str(vae_folder), batch=batch, crop=crop, lr=lr, seed=seed)
    info = _run_loop(out, {"vae": vae}, optimizer, steps, loss_fn, settings, validate, every)
    vae.save_pretrained(out / "vae")
    return info


# ---------------------------------------------------------------------------------------------- INNs

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
        s = Summary.of(d, tuple(x.shape[-2:]))
        truth.append((s.noise, s.jpeg))
        predicted.append((estimate.noise, estimate.jpeg))
    t, p = np.array(truth), np.array(predicted)
    return {"noise_r": round(float(np.corrcoef(t[:, 0], p[:, 0])[0, 1]), 3),
            "jpeg_r": round(float(np.corrcoef(t[:, 1], p[:, 1])[0, 1]), 3)}


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
    info = _run_loop(out, {"inn": inn, "estimator": estimator}, optimizer, steps, loss_fn, settings, validate,
                     every)
    save_weights(inn, out / "pixel_inn.safetensors", steps=info["step"])
    save_weights(estimator, out / "estimator.safetensors", steps=info["step"])
    return info


# ------------------------------------------------------------------------------------------ restorer

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
    info = _run_loop(out, {"restorer": restorer}, optimizer, steps, loss_fn, settings, validate, every)
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


# ---------------------------------------------------------------------------------------------- UNet

def unet_config(sample_size: int = 64) -> dict:
    """A small unconditional UNet2DModel on 4-channel latents with attention at the coarsest level only:
    on 2 cores it trains 1.6x faster and denoises a 64x64 latent in 80 ms instead of 150 ms (with attention at
    the two coarser levels and widths 64/128/192), which the 5 s restore budget needs.
    `sample_size` is the native latent size the sampler tiles at (training uses smaller crops)."""
    return dict(sample_size=sample_size, in_channels=4, out_channels=4, layers_per_block=1,
                block_out_channels=[48, 96, 192], norm_num_groups=16, attention_head_dim=32,
                down_block_types=["DownBlock2D", "DownBlock2D", "AttnDownBlock2D"],
                up_block_types=["AttnUpBlock2D", "UpBlock2D", "UpBlock2D"])


SCHEDULER_CONFIG = {"num_train_timesteps": 1000, "beta_schedule": "scaled_linear", "beta_start": 0.00085,
                    "beta_end": 0.012, "prediction_type": "epsilon", "clip_sample": False,
                    "set_alpha_to_one": False, "steps_offset": 1}


@torch.no_grad()
def latent_bank(vae, data: Path, count: int, crop: int, seed: int = 0) -> torch.Tensor:
    """Unscaled VAE latents (posterior means) of `count` random crops of the training photos."""
    crops, rng = PhotoCrops(data / "train", crop), np.random.default_rng(seed)
    out = []
    for start in tqdm(range(0, count, 16), desc="encoding crops"):
        x = crops.batch(rng, min(16, count - start))
        out.append(vae.encode(x * 2 - 1).latent_dist.mean)
    return torch.cat(out)


def train_unet(data: Path, vae_folder: Path, out: Path, steps: int = 8000, batch: int = 16, latents: int = 3000,
               latent_size: int = 32, lr: float = 3e-4, seed: int = 0, every: int = 500) -> dict:
    """Train the denoiser on latent_size x latent_size latents of crops encoded by the trained VAE. Low noise
    levels are drawn more often: the restoration sampler starts from a restored estimate at about 40 % noise,
    not from pure noise."""
    from diffusers import AutoencoderKL, UNet2DModel

    torch.manual_seed(seed)
    vae = AutoencoderKL.from_pretrained(vae_folder).eval()
    bank_path = out / "latents.safetensors"
    if bank_path.exists():
        bank = load_file(bank_path)["latents"]
    else:
        factor = 2 ** (len(vae.config.block_out_channels) - 1)
        bank = latent_bank(vae, data, latents, crop=latent_size * factor, seed=seed)
        out.mkdir(parents=True, exist_ok=True)
        save_file({"latents": bank.contiguous()}, bank_path)
    scaling = float(1 / bank.std())
    unet = UNet2DModel(**unet_config())
    alphas = alphas_from_scheduler_config(SCHEDULER_CONFIG)[0].float()
    val_bank = bank[:64] * scaling
    optimizer = torch.optim.AdamW(unet.parameters(), lr=lr, weight_decay=0.01)
    rng = np.random.default_rng(seed)

    def noisy(z0: torch.Tensor, g: torch.Generator | None = None):
        n = len(z0)
        low = torch.randint(0, 500, (n,), generator=g)
        high = torch.randint(0, 1000, (n,), generator=g)
        t = torch.where(torch.rand(n, generator=g) < 0.7, low, high)
        eps = torch.randn(z0.shape, generator=g)
        a = alphas[t].view(-1, 1, 1, 1)
        return a.sqrt() * z0 + (1 - a).sqrt() * eps, t, eps

    def loss_fn(step: int):
        z0 = bank[torch.from_numpy(rng.integers(len(bank), size=batch))] * scaling
        if rng.random() < 0.5:
            z0 = z0.flip(-1)
        z_t, t, eps = noisy(z0)
        loss = F.mse_loss(unet(z_t, t).sample, eps)
        return loss, {"mse": loss.item()}

    def validate() -> dict:
        z_t, t, eps = noisy(val_bank, torch.Generator().manual_seed(0))
        return {"mse": round(F.mse_loss(unet(z_t, t).sample, eps).item(), 5)}

    settings = dict(batch=batch, lr=lr, seed=seed, latents=latents, scaling_factor=scaling, config=unet_config())
    info = _run_loop(out, {"unet": unet}, optimizer, steps, loss_fn, settings, validate, every)
    unet.save_pretrained(out / "unet")
    return info


# ------------------------------------------------------------------------------------------ LatentINN

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
    info = _run_loop(out, {"inn": inn}, optimizer, steps, loss_fn, settings, validate, every, progress)
    info["final"] = latent_fit(inn.eval(), val_batches)
    save_weights(inn, out / "latent_inn.safetensors", steps=info["step"], validation=info["final"])
    return info


def calibrate_latent_inn(prior, data: Path | None = None, steps: int = 600, batch: int = 8, crop: int = 128,
                         progress=None) -> Path:
    """Train the LatentINN of a prior's VAE on the compact calibration set and cache it where `load_prior`
    looks (`latent_inn_cache_path`); an interrupted calibration resumes. Returns the cached file."""
    from latentindigo.sampler import load_pixel_models

    target = latent_inn_cache_path(prior.vae)
    run_folder = target.with_suffix(".run")  # checkpoints
    info = train_latent_inn(prior, data or ASSETS / "calibration", run_folder, load_pixel_models().estimator,
                            steps=steps, batch=batch, crop=crop, every=max(1, steps // 4), progress=progress)
    shutil.move(run_folder / "latent_inn.safetensors", target)
    shutil.rmtree(run_folder)
    final = info["final"]
    print(f"{target}: LatentINN error {final['error']:.4f} (Haar initialisation {final['haar_error']:.4f})")
    return target


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


# ------------------------------------------------------------------------------------------ export

def export_mini(vae_run: Path, unet_run: Path, out: Path) -> None:
    """Assemble the bundled prior: a diffusers LDMPipeline folder (`DiffusionPipeline.from_pretrained` loads
    it) whose VAE carries the latent scaling factor measured on the training latents."""
    import shutil

    import diffusers
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DModel

    info = json.loads((unet_run / "checkpoint.json").read_text())
    vae = AutoencoderKL.from_pretrained(vae_run / "vae")
    vae.register_to_config(scaling_factor=round(info["settings"]["scaling_factor"], 5))
    if out.exists():
        shutil.rmtree(out)
    vae.save_pretrained(out / "vqvae")
    UNet2DModel.from_pretrained(unet_run / "unet").save_pretrained(out / "unet")
    DDIMScheduler.from_config(SCHEDULER_CONFIG).save_pretrained(out / "scheduler")
    (out / "model_index.json").write_text(json.dumps({
        "_class_name": "LDMPipeline", "_diffusers_version": diffusers.__version__,
        "scheduler": ["diffusers", "DDIMScheduler"], "unet": ["diffusers", "UNet2DModel"],
        "vqvae": ["diffusers", "AutoencoderKL"]}, indent=2))
