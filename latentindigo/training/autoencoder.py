"""The bundled prior's VAE: trained from scratch (`train_vae`), then its decoder sharpened (`train_decoder`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from latentindigo.metrics import detail, image_gradients, psnr
from latentindigo.training.data import PhotoCrops
from latentindigo.training.loop import run_loop


def gradient_l1(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 between the image gradients of x and target: fights the blur a pixel loss alone gives, without a GAN."""
    return sum(F.l1_loss(a, b) for a, b in zip(image_gradients(x), image_gradients(target)))


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
    info = run_loop(out, {"vae": vae}, optimizer, steps, loss_fn, settings, validate, every)
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
    info = run_loop(out, {"vae": vae}, optimizer, steps, loss_fn, settings, validate, every)
    vae.save_pretrained(out / "vae")
    return info
