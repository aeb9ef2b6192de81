"""`LatentIndigoPipeline`: the sampler as a diffusers `DiffusionPipeline`, for those who live in diffusers.

    pipe = LatentIndigoPipeline.from_pretrained("assets/mini")          # or an SD-style folder or hub id
    image = pipe(photo, mode="latent", num_inference_steps=20, height=256, width=256,
                 generator=torch.Generator().manual_seed(0)).images[0]
    pipe.save_pretrained("my-pipeline")                                # every component, safetensors

It drives `latentindigo.sampler.restore` (no second sampling loop): the VAE, the denoiser and the scheduler
are diffusers components; the LatentINN, the PixelINN, the degradation estimator and the first-stage restorer
are this project's (the bundled ones unless the folder has its own or they are given).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from diffusers import DDIMScheduler, DiffusionPipeline, ImagePipelineOutput
from PIL import Image

from latentindigo.errors import UserError
from latentindigo.imageio import load_image
from latentindigo.inn import LiftingINN
from latentindigo.priors import LATENT_INN_FILE, Prior, load_prior
from latentindigo.restorer import WEIGHTS as RESTORER_WEIGHTS
from latentindigo.sampler import Done, PixelModels, Step, load_pixel_models, restore
from latentindigo.settings import ASSETS, Settings, local_folder, output_size, tuned_settings
from latentindigo.weights import save_weights

# where a saved pipeline keeps this project's networks (a prior folder may have them too)
PIXEL_INN, ESTIMATOR, RESTORER = "inn/pixel_inn.safetensors", "inn/estimator.safetensors", "restorer/restorer.safetensors"


class LatentIndigoPipeline(DiffusionPipeline):
    """INN-guided latent diffusion restoration (LatentINN or PixelINN) as a diffusers pipeline."""

    def __init__(self, vae, unet, scheduler: DDIMScheduler):
        super().__init__()
        self.register_modules(vae=vae, unet=unet, scheduler=scheduler)

    @classmethod
    def from_parts(cls, prior: Prior, pixel: PixelModels, tuned: dict) -> LatentIndigoPipeline:
        """A pipeline over a loaded prior, the pixel-space networks and the prior's tuned sampler settings."""
        pipe = cls(vae=prior.vae, unet=prior.unet, scheduler=DDIMScheduler.from_config(prior.scheduler_config))
        pipe.prior, pipe.pixel, pipe.tuned = prior, pixel, dict(tuned)
        return pipe

    @classmethod
    def from_pretrained(cls, spec: str | Path, revision: str | None = None, torch_dtype: torch.dtype | None = None,
                        device: str | torch.device | None = None, latent_inn: LiftingINN | None = None,
                        pixel_models: PixelModels | None = None) -> LatentIndigoPipeline:
        """A folder (this project's `mini`, a saved pipeline, a Stable-Diffusion-style checkpoint), a hub id
        (`revision`: a commit or branch) or `tiny-random`/`sd21-random`; safetensors only. The LatentINN is
        the folder's or the calibrated one for its VAE; the PixelINN, estimator and restorer are the folder's
        (a saved pipeline's) or the bundled ones, unless given."""
        spec = str(spec)
        if revision:
            if local_folder(spec) is not None:
                raise UserError(f"revision= is for hub ids, not the local folder {spec!r}")
            spec = f"{spec}@{revision}"
        prior = load_prior(spec, device=device, dtype=torch_dtype)
        if latent_inn is not None:
            prior.latent_inn, prior.latent_inn_trained, prior.notice = latent_inn.to(prior.device).eval(), True, ""
        if pixel_models is None:
            folder = prior.folder
            if folder is not None and (folder / PIXEL_INN).is_file():
                pixel_models = load_pixel_models(folder / "inn", folder / RESTORER)
            else:
                pixel_models = load_pixel_models(ASSETS / "inn", RESTORER_WEIGHTS)
        return cls.from_parts(prior, pixel_models, tuned_settings(spec))

    def to(self, *args, **kwargs) -> LatentIndigoPipeline:
        super().to(*args, **kwargs)
        self.prior.device, self.prior.dtype = self.device, self.unet.dtype
        self.prior.latent_inn.to(self.device)
        if self.prior.context is not None:
            self.prior.context = self.prior.context.to(self.device, self.prior.dtype)
        self.prior._embeddings.clear()  # made on the old device
        return self

    def save_pretrained(self, folder: str | Path, **_) -> None:
        """Every component in a diffusers-layout folder, as safetensors, with the tuned sampler settings:
        `from_pretrained(folder)` gives the same pixels for the same seed."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.vae.save_pretrained(folder / "vae", safe_serialization=True)
        self.unet.save_pretrained(folder / "unet", safe_serialization=True)
        self.scheduler.save_pretrained(folder / "scheduler")
        index = {"_class_name": type(self).__name__, "vae": ["diffusers", type(self.vae).__name__],
                 "unet": ["diffusers", type(self.unet).__name__], "scheduler": ["diffusers", "DDIMScheduler"]}
        source = self.prior.folder  # the text encoder and tokenizer, as loaded (priors._load_folder)
        if source is not None and self.prior.encode_prompt is not None:
            for part, class_name in (("text_encoder", "CLIPTextModel"), ("tokenizer", "CLIPTokenizer")):
                shutil.copytree(source / part, folder / part, dirs_exist_ok=True)
                index[part] = ["transformers", class_name]
        (folder / "model_index.json").write_text(json.dumps(index, indent=1))
        if self.prior.latent_inn_trained:
            save_weights(self.prior.latent_inn, folder / LATENT_INN_FILE)
        save_weights(self.pixel.inn, folder / PIXEL_INN)
        save_weights(self.pixel.estimator, folder / ESTIMATOR)
        save_weights(self.pixel.restorer, folder / RESTORER)
        (folder / "sampler_settings.json").write_text(json.dumps(self.tuned, indent=1))

    def __call__(self, image: Image.Image | np.ndarray | str | Path, mode: str = "latent",
                 guidance_scale: float | None = None, num_inference_steps: int | None = None,
                 realism: float | None = None, height: int | None = None, width: int | None = None,
                 scale: float | None = None, generator: torch.Generator | None = None,
                 callback_on_step_end: Callable[[LatentIndigoPipeline, int, int, dict], object] | None = None,
                 output_type: str = "pil", **settings) -> ImagePipelineOutput:
        """Restore `image` (a PIL image, an array or a path). `guidance_scale` is the INN guidance strength
        (lambda, 0-2), not classifier-free guidance; `realism` the fidelity-realism control (0: start from the
        faithful restorer, 1: from Real-ESRGAN's detail on its coarse content); a setting left out is the prior's
        tuned one, as are any other `Settings` fields given by name (e.g. `start=0.3`). Output size: height and
        width, one of them (the other keeps the aspect ratio), or `scale` (default 4). `generator`: its seed seeds
        the run (the sampler draws its noise on the CPU, so a seed gives the same image on every device).
        `callback_on_step_end(pipe, step, timestep, {"latents", "phase", "consistency"})` is called at every
        step event (its return value is not used). `output_type`: "pil" or "pt" ((1, 3, H, W) in [0, 1])."""
        if output_type not in ("pil", "pt"):
            raise UserError(f"output_type must be 'pil' or 'pt', not {output_type!r}")
        photo = load_image(image)
        size = output_size(photo, width, height)
        given = {"guidance": guidance_scale, "steps": num_inference_steps, "realism": realism}
        run = Settings(**(self.tuned | {k: v for k, v in given.items() if v is not None} | settings), method=mode,
                       seed=generator.initial_seed() if generator is not None else 0, size=size,
                       scale=None if size else scale)
        done = None
        for event in restore(photo, run, self.prior, self.pixel):
            if isinstance(event, Done):
                done = event
            elif isinstance(event, Step) and callback_on_step_end is not None:
                callback_on_step_end(self, event.step - 1, event.timestep,
                                     {"latents": event.latent, "phase": event.phase,
                                      "consistency": event.consistency})
        return ImagePipelineOutput(images=[done.image] if output_type == "pil" else done.tensor)
