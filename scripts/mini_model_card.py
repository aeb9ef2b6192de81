"""Numbers and pictures for the bundled prior's model card (assets/mini/MODEL_CARD.md).

    python -m scripts.mini_model_card [--mini assets/mini] [--photos data/photos/val] [--out docs]

Prints the VAE's reconstruction PSNR on the validation photos and writes two grids: validation photos over
their reconstructions (`mini_reconstructions.png`), and unconditional samples drawn with diffusers' own
`DiffusionPipeline.from_pretrained` on the folder (`mini_samples.png`), which shows it loads as a normal
diffusers folder.
"""

import argparse
import json
import time
from pathlib import Path

import torch
from PIL import Image

from latentindigo.imageio import to_image, to_tensor
from latentindigo.metrics import psnr
from latentindigo.priors import load_prior


def grid(rows: list[list[Image.Image]], side: int = 192) -> Image.Image:
    out = Image.new("RGB", (side * max(map(len, rows)), side * len(rows)), "white")
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            image = image.copy()
            image.thumbnail((side, side))
            out.paste(image, (c * side, r * side))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mini", type=Path, default=Path("assets/mini"))
    parser.add_argument("--photos", type=Path, default=Path("data/photos/val"))
    parser.add_argument("--out", type=Path, default=Path("docs"))
    args = parser.parse_args()

    start = time.perf_counter()
    from diffusers import AutoencoderKL, UNet2DModel  # noqa: F401  (imported once per process: timed apart)

    import_seconds = time.perf_counter() - start
    start = time.perf_counter()
    prior = load_prior(str(args.mini.resolve()), device="cpu")
    load_seconds = time.perf_counter() - start
    originals, recons, scores = [], [], {}
    for path in sorted(args.photos.glob("*.png")):
        image = Image.open(path).convert("RGB")
        image = image.crop((0, 0, image.width // 8 * 8, image.height // 8 * 8))
        x = to_tensor(image)
        with torch.no_grad():
            recon = prior.decode(prior.encode(x)).clamp(0, 1)
        scores[path.stem] = round(psnr(recon, x), 2)
        originals.append(image)
        recons.append(to_image(recon))
    args.out.mkdir(parents=True, exist_ok=True)
    grid([originals, recons]).save(args.out / "mini_reconstructions.png")

    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(args.mini)
    samples = pipe(batch_size=4, num_inference_steps=50, generator=torch.Generator().manual_seed(0)).images
    grid([samples], side=256).save(args.out / "mini_samples.png")
    parameters = {name: sum(p.numel() for p in module.parameters())
                  for name, module in (("vae", prior.vae), ("unet", prior.unet), ("latent_inn", prior.latent_inn))}
    print(json.dumps({"import_seconds": round(import_seconds, 2), "load_seconds": round(load_seconds, 2), "vae_psnr": scores,
                      "vae_psnr_mean": round(sum(scores.values()) / len(scores), 2), "parameters": parameters,
                      "pipeline": type(pipe).__name__}))


if __name__ == "__main__":
    main()
