"""The LatentINDIGO sampler (DESIGN section 3) and its baselines, as a generator of step events.

    for event in restore(image, Settings(method="latent", scale=4), prior):
        if isinstance(event, FirstStage): show(event.image)  # the start, before the first step
        if isinstance(event, Step): show(event.preview)      # decoded lazily, only when asked for
        if isinstance(event, Done): event.image.save("out.png")  # the last event

The start is the faithful first stage R(y) (the restorer) walked towards the realistic one (Real-ESRGAN) by the
`realism` control (`first_stages.combine`); it is encoded, noised to `start`, and is the colour-fix reference
and the final back-projection's target; R(y), through the INN's forward model, is the measurement guidance
aims at, so that the input's noise and JPEG blocks are not copied back. The result is the start plus what the
diffusion changed (decoded result minus decoded start), so the autoencoder's loss on the start cancels. Every
diffusion step predicts the clean latent z0, then runs the phases:
guidance (the INN swaps the coarse part of z0's wavelet decomposition for the measurement's),
refinement (one Adam step fitting the INN's forward model to the current estimate) and
regularisation (every few steps, pull z0 back towards latents the prior would produce: the LatentINN
matches each latent channel's spread to the unguided prediction's, which costs nothing, or projects z0
through the autoencoder, E(D(z0)), as the PixelINN always does; a projection also runs at the last step);
then a DDIM step to the next timestep (deterministic unless eta > 0). The PixelINN guides in pixel space
(a decode and an encode per step), the LatentINN in latent space. Which regularisation and eta a prior
samples best with is its tuned settings (`latentindigo.settings.settings_for`).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from functools import cache, partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from latentindigo.degradations import low_band, pad_edges, resize
from latentindigo.errors import UserError
from latentindigo.estimator import DegradationEstimator, Estimate
from latentindigo.first_stages import combine, load_realistic, realistic_estimate, realistic_files
from latentindigo.imageio import to_image, to_tensor
from latentindigo.inn import LiftingINN, coarse_size, levels_for_scale, zero_details
from latentindigo.priors import Prior
from latentindigo.restorer import WEIGHTS as RESTORER_WEIGHTS, Restorer, load_restorer, restore_first_stage
from latentindigo.rrdbnet import RRDBNet
from latentindigo.settings import ASSETS, DIFFUSION_METHODS, Settings
from latentindigo.weights import load_weights


@dataclass
class PixelModels:
    """The VAE-independent networks: degradation estimator F, PixelINN and first-stage restorer R."""

    inn: LiftingINN
    estimator: DegradationEstimator
    restorer: Restorer
    files: tuple[Path, ...] = ()  # their weight files: recipes hash them
    realistic: Path | None = None  # a user's ESRGAN-family file for the realistic stage (None: Real-ESRGAN x4plus)

    def realistic_model(self) -> RRDBNet:
        """The realistic first stage, loaded on first use (UserError when it is unavailable)."""
        return load_realistic(self.realistic)

    def files_for(self, settings: Settings) -> tuple[Path, ...]:
        """The weight files a run with these settings reads: the realistic stage's only when it runs."""
        return self.files + (realistic_files(self.realistic) if settings.uses_realistic else ())


@cache
def load_pixel_models(folder: Path = ASSETS / "inn", restorer: Path = RESTORER_WEIGHTS,
                      realistic: Path | None = None) -> PixelModels:
    """The bundled, trained PixelINN, estimator and restorer (loaded once per process); `realistic`: a user's
    ESRGAN-family file for the realistic first stage instead of Real-ESRGAN x4plus."""
    inn, estimator = folder / "pixel_inn.safetensors", folder / "estimator.safetensors"
    return PixelModels(inn=load_weights(LiftingINN, inn), estimator=load_weights(DegradationEstimator, estimator),
                       restorer=load_restorer(restorer), files=(inn, estimator, restorer), realistic=realistic)


@dataclass
class Step:
    """One sampler event. `preview` decodes the current clean-latent estimate only when read."""

    step: int  # 1-based
    total: int
    timestep: int
    phase: str  # "guidance", "refinement", "regularisation" or "denoising" (SDEdit)
    space: str  # where `consistency` is measured: "latent" or "pixel"
    latent: torch.Tensor = field(repr=False)
    # a 0-d tensor, or a function computing it: reading it waits for the GPU, so it is read only when asked for
    _error: object = field(repr=False, default=None)
    _decode: object = field(repr=False, default=None)
    _preview: Image.Image | None = field(repr=False, default=None)

    @property
    def consistency(self) -> float:
        """RMS distance of the estimate's INN coarse part from the measurement."""
        if callable(self._error):
            self._error = self._error()
        return float(self._error)

    @property
    def preview(self) -> Image.Image:
        if self._preview is None:
            self._preview = to_image(self._decode(self.latent))
        return self._preview


@dataclass
class FirstStage:
    """A first-stage estimate, yielded by the diffusion methods before their first step, so the demo shows it at
    once: the start the output is built on (realism = the control's value). With realism > 0 the faithful stage
    R(y) comes first (realism 0), shown while the realistic stage runs."""

    tensor: torch.Tensor = field(repr=False)  # (1, 3, H, W) in [0, 1]
    seconds: float  # since `restore` was called
    realism: float = 0.0

    @property
    def image(self) -> Image.Image:
        """Converted only when asked for: the copy to the CPU waits for the GPU, and batch runs never show it."""
        return to_image(self.tensor)


@dataclass
class Done:
    image: Image.Image
    tensor: torch.Tensor = field(repr=False)  # (1, 3, H, W) float in [0, 1]
    estimate: Estimate
    seconds: float
    settings: Settings
    latent_inn_trained: bool | None = None  # None for methods without a LatentINN
    # what `maps` compares the result with: the input y, the pixel-space forward model (the PixelINN, for the
    # pixel mode the copy refined on this image) with its gamma and levels, and R(y) (None: no first stage ran)
    measurement: torch.Tensor | None = field(repr=False, default=None)
    forward_model: LiftingINN | None = field(repr=False, default=None)
    gamma: torch.Tensor | None = field(repr=False, default=None)
    levels: int = 0
    first_stage: torch.Tensor | None = field(repr=False, default=None)


def restore(image: Image.Image, settings: Settings, prior: Prior | None = None,
            pixel: PixelModels | None = None) -> Iterator[FirstStage | Step | Done]:
    """Restore an RGB image; yields (diffusion methods) `FirstStage`, then `Step` events while sampling, and a
    final `Done`."""
    t0 = time.perf_counter()
    settings.check(image.width, image.height)
    if settings.method in DIFFUSION_METHODS and prior is None:
        raise UserError(f"method {settings.method!r} needs a diffusion prior")
    pixel = pixel or load_pixel_models()
    # everything runs where the prior runs (the small INNs follow it onto the GPU)
    device = prior.device if prior is not None and settings.method in DIFFUSION_METHODS else torch.device("cpu")
    pixel.inn.to(device), pixel.estimator.to(device), pixel.restorer.to(device)
    y = to_tensor(image).to(device)
    width, height = settings.output_size(image.width, image.height)
    size = (height, width)
    gamma, estimate = pixel.estimator.estimate(y)
    # the scale is the user's (output over input size); the estimator's guess of it is poor on real photos
    estimate = replace(estimate, scale=math.sqrt(height * width / (image.height * image.width)))
    levels = levels_for(size, y.shape[-2:])
    x_first, forward_model = None, pixel.inn

    if settings.method == "bicubic":
        out = resize(y, size, "bicubic").clamp(0, 1)
    elif settings.method == "inn":
        y_coarse = resize(y, coarse_size(height, width, levels), "bicubic")
        with torch.no_grad():
            out = pixel.inn.inverse(y_coarse, zero_details(y_coarse, size, levels), gamma, size).clamp(0, 1)
    elif settings.method == "realistic":
        out = realistic_estimate(pixel.realistic_model(), y, size)
    else:
        # R(y), the faithful stage: the guidance target; the estimate holds the JPEG quality read off y
        x_faithful = restore_first_stage(pixel.restorer, y, size, estimate.jpeg)
        if settings.method in DIFFUSION_METHODS and settings.uses_realistic:
            yield FirstStage(tensor=x_faithful, seconds=time.perf_counter() - t0)
        # the start: the faithful stage walked towards the realistic one by the realism control
        x_first = x_faithful if not settings.uses_realistic else combine(
            x_faithful, realistic_estimate(pixel.realistic_model(), y, size), settings.realism, estimate.scale)
        if settings.method in ("faithful", "first-stage"):
            out = x_first if settings.method == "first-stage" else x_faithful
        else:
            yield FirstStage(tensor=x_first, seconds=time.perf_counter() - t0, realism=settings.realism)
            out, refined = yield from _diffuse(y, x_first, x_faithful, size, levels, gamma, settings, prior, pixel)
            forward_model = refined if settings.method == "pixel" else pixel.inn
        if settings.method in ("latent", "pixel"):
            if settings.colour_fix:
                out = wavelet_colour_fix(out, x_first, settings.colour_fix_levels)
            # towards the start downscaled, not y: back-projecting onto y put its noise and JPEG blocks back (and
            # onto R(y) downscaled took 0.25 dB from a start at realism 0.65: scripts/measure_realism.py's curves)
            out = final_consistency(out.clamp(0, 1), resize(x_first, tuple(y.shape[-2:]), "bicubic"))
    out = out.clamp(0, 1)
    trained = prior.latent_inn_trained if settings.method == "latent" else None
    yield Done(image=to_image(out), tensor=out, estimate=estimate, seconds=time.perf_counter() - t0,
               settings=settings, latent_inn_trained=trained, measurement=y, forward_model=forward_model,
               gamma=gamma, levels=levels, first_stage=x_first)


def run(image: Image.Image, settings: Settings, prior: Prior | None = None,
        pixel: PixelModels | None = None) -> Done:
    """`restore` without the events."""
    for event in restore(image, settings, prior, pixel):
        if isinstance(event, Done):
            return event
    raise RuntimeError("the sampler ended without a result")


def levels_for(size: tuple[int, int], input_size: tuple[int, int]) -> int:
    """INN levels J for output and input sizes (height, width): of their mean scale factor."""
    return levels_for_scale(math.sqrt(size[0] * size[1] / (input_size[0] * input_size[1])))


def final_consistency(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Back-projection: add the bicubic upscale of what the output, downscaled, misses of the input y.

    Not DESIGN's PixelINN swap `g^-1(y_J, g_d(x))`: that inverse is a learned deblurring, and it amplifies
    the input's noise and JPEG blocks into a checkerboard (on four evaluation photos it took the detail
    measure to 3.2 and PSNR 3 dB below bicubic). The back-projected correction is smooth; two rounds take
    consistency from 25 to 48 dB at the PSNR of bicubic.
    """
    for _ in range(2):
        x = (x + resize(y - resize(x, tuple(y.shape[-2:]), "bicubic"), tuple(x.shape[-2:]), "bicubic")).clamp(0, 1)
    return x


def wavelet_colour_fix(x: torch.Tensor, reference: torch.Tensor, levels: int) -> torch.Tensor:
    """x's high frequencies on the reference's low-frequency band: fixes colour casts and the coarse content,
    keeps x's detail. The band is what `levels` dilated 3x3 binomial blurs (dilations 1, 2, 4, ...) leave, the
    smooth wavelet of INDIGO+ and DiffBIR (a Haar band would add block edges). INDIGO+ uses 5 levels; the
    bundled prior adds little true detail, and 1 measured best for it (docs/history.md, The colour fix's
    levels)."""
    return x - low_band(x, levels) + low_band(reference, levels)


def _rms(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.sqrt(F.mse_loss(a, b))


def _diffuse(y, x_first, x_faithful, size, levels, gamma, settings: Settings, prior: Prior, pixel: PixelModels):
    """The diffusion loop shared by latent, pixel, sdedit and dps, started from the first-stage estimate x_first
    and guided towards the faithful one x_faithful = R(y); returns the (1, 3, H, W) image and the INN refined
    on it."""
    method = settings.method
    # the INN halves the latent `levels` times and the UNet once per block but the last: pad to both
    multiple = max(prior.factor << levels, prior.factor * prior.latent_multiple)
    work = (math.ceil(size[0] / multiple) * multiple, math.ceil(size[1] / multiple) * multiple)
    pads = (0, work[1] - x_first.shape[-1], 0, work[0] - x_first.shape[-2])
    x_init, x_target = pad_edges(x_first, pads), pad_edges(x_faithful, pads)
    z_init = prior.encode(x_init)
    z_target = z_init if x_faithful is x_first else prior.encode(x_target)
    # noise-aware guidance: the coarse part swapped in at every step is the INN forward (the simulated
    # degradation) of R(y), in pixels and in latents, not y's, whose noise and JPEG blocks guidance would copy
    with torch.no_grad():
        y_work = pixel.inn(x_target, gamma, levels=levels)[0]
        z_y = prior.latent_inn(z_target, gamma, levels=levels)[0]

    # per-image INN copies: test-time refinement starts from the pretrained weights for every image
    inn = copy.deepcopy(prior.latent_inn if method in ("latent", "sdedit") else pixel.inn)
    inn.to(z_init.device).requires_grad_(True)
    optimiser = refinement_optimiser(inn, settings.refine_lr) if settings.refine else None
    decode = lambda z: prior.decode(z)[..., : size[0], : size[1]]  # noqa: E731
    # what the diffusion changes, added to the start: the autoencoder's loss on the start cancels (a lossy VAE
    # would otherwise take away detail the start had: the mini VAE keeps about a quarter of it); in the finest
    # bands, which the autoencoder does not reproduce, the start is kept
    decoded_start = decode(z_init)
    compose = lambda z: x_first + low_band(decode(z) - decoded_start, settings.start_detail_levels)  # noqa: E731

    alphas = prior.alphas_cumprod
    t_start = min(prior.num_timesteps - 1, round(settings.start * prior.num_timesteps))
    timesteps = np.unique(np.linspace(t_start, 0, settings.steps).round().astype(int))[::-1]
    total = len(timesteps)
    g = torch.Generator().manual_seed(settings.seed)
    noise = torch.randn(z_init.shape, generator=g).to(z_init.device)  # drawn on the CPU: same on every device
    a = alphas[t_start].item()
    z_t = math.sqrt(a) * z_init + math.sqrt(1 - a) * noise
    z0 = z_init

    for i, t in enumerate(timesteps):
        t = int(t)
        a = alphas[t].item()
        eps = prior.eps(z_t, t, settings.cfg_scale)
        z0 = z_prior = (z_t - math.sqrt(1 - a) * eps) / math.sqrt(a)
        event = dict(step=i + 1, total=total, timestep=t, _decode=compose)

        if method == "sdedit":
            yield Step(phase="denoising", _error=partial(_coarse_error, inn, z0, z_y, gamma, levels), space="latent",
                       latent=z0, **event)
        elif method == "dps":
            z0, err = _dps_step(z0, prior, y, size, settings.guidance)
            yield Step(phase="guidance", _error=err, space="pixel", latent=z0, **event)
        else:
            space = "latent" if method == "latent" else "pixel"
            if method == "latent":
                z_inv, err = _guide_and_refine(inn, optimiser, z0, z_y, gamma, levels)
            else:
                x_inv, err = _guide_and_refine(inn, optimiser, prior.decode(z0), y_work, gamma, levels)
                z_inv = prior.encode(x_inv.clamp(0, 1))
            z0 = z0 + settings.guidance * (z_inv - z0)
            # the error of the prior's prediction before guidance corrected it, which refinement also minimises
            yield Step(phase="guidance", _error=err, space=space, latent=z0, **event)
            if optimiser:
                yield Step(phase="refinement", _error=err, space=space, latent=z0, **event)

        last = i == total - 1
        # a projection also runs at the last step, so that the output decodes from a latent the encoder produces
        project = method == "pixel" or settings.latent_reg == "projection"
        due = settings.reg_every and (((i + 1) % settings.reg_every == 0 and not last) or (last and project))
        if method in ("latent", "pixel") and due:
            if project:
                x0 = prior.decode(z0).clamp(0, 1)
                z0 = z0 + settings.reg_strength * (prior.encode(x0) - z0)
            else:
                z0 = z0 + settings.reg_strength * (match_spread(z0, z_prior) - z0)
            err = (partial(_coarse_error, inn, z0, z_y, gamma, levels) if method == "latent"
                   else partial(_coarse_error, inn, x0, y_work, gamma, levels))  # (in pixel space here)
            yield Step(phase="regularisation", _error=err, space=space, latent=z0, **event)
        if not last:
            z_t = _ddim_step(z_t, z0, a, alphas[int(timesteps[i + 1])].item(), settings.eta, g)
    return compose(z0), inn.requires_grad_(False)


def match_spread(z: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """z with each channel's standard deviation about its mean set to the reference's (the mean, which holds
    the measurement's colour, stays)."""
    mean, std = z.mean(dim=(-2, -1), keepdim=True), z.std(dim=(-2, -1), keepdim=True)
    return mean + (z - mean) * reference.std(dim=(-2, -1), keepdim=True) / (std + 1e-6)


def _ddim_step(z_t: torch.Tensor, z0: torch.Tensor, a: float, a_prev: float, eta: float,
               generator: torch.Generator) -> torch.Tensor:
    """DDIM (Song et al. 2021, eq. 12) from noise level a to a_prev, given the clean estimate z0. The noise
    direction is the one z_t implies for z0; eta > 0 replaces part of it by fresh noise."""
    eps = (z_t - math.sqrt(a) * z0) / math.sqrt(1 - a)
    sigma = eta * math.sqrt((1 - a_prev) / (1 - a) * (1 - a / a_prev))
    z_prev = math.sqrt(a_prev) * z0 + math.sqrt(max(1 - a_prev - sigma**2, 0.0)) * eps
    if sigma:
        z_prev = z_prev + sigma * torch.randn(z0.shape, generator=generator).to(z0.device)
    return z_prev


def _coarse_error(inn: LiftingINN, estimate: torch.Tensor, measurement: torch.Tensor, gamma: torch.Tensor,
                  levels: int) -> torch.Tensor:
    with torch.no_grad():
        return _rms(inn(estimate, gamma, levels=levels)[0], measurement)


def refinement_optimiser(inn: LiftingINN, lr: float) -> torch.optim.Optimizer:
    """Adam over the INN's weights, fused: one kernel for all 128 tensors instead of about ten per tensor
    (on a GPU each is a launch; on the CPU they were half of a step's operations, benchmarks/bench_inn_step.py)."""
    return torch.optim.Adam(inn.parameters(), lr=lr, fused=True)


def _guide_and_refine(inn: LiftingINN, optimiser: torch.optim.Optimizer | None, estimate: torch.Tensor,
                      measurement: torch.Tensor, gamma: torch.Tensor, levels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Guidance and refinement from one forward pass of the INN over the prior's estimate.

    Guidance keeps the estimate's details and takes the coarse part from the measurement (the inverse).
    Refinement is one optimiser step on || g_c(estimate) - measurement ||^2, adapting the forward model to
    this image; it runs on the estimate before guidance, whose coarse part the guidance makes exact.
    Returns the guided estimate and the RMS error of the estimate's coarse part (a 0-d tensor)."""
    with torch.set_grad_enabled(optimiser is not None):
        coarse, details = inn(estimate.detach(), gamma, levels=levels)
        loss = F.mse_loss(coarse, measurement)
    with torch.no_grad():
        guided = inn.inverse(measurement, [d.detach() for d in details], gamma, tuple(estimate.shape[-2:]))
    if optimiser is not None:
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
    return guided, loss.detach().sqrt()


def _dps_step(z0: torch.Tensor, prior: Prior, y: torch.Tensor, size: tuple[int, int],
              strength: float) -> tuple[torch.Tensor, torch.Tensor]:
    """DPS/PSLD-style guidance: a normalised gradient step on || bicubic_down(D(z0)) - y ||^2 through D."""
    z = z0.detach().requires_grad_(True)
    with torch.enable_grad():
        x = prior.decode(z, grad=True)[..., : size[0], : size[1]]
        residual = resize(x, tuple(y.shape[-2:]), "bicubic") - y
        loss = residual.pow(2).sum()
        (grad,) = torch.autograd.grad(loss, z)
    # the step is scaled by the residual norm (as in DPS), so its size does not depend on the image size
    step = strength * grad / (loss.detach().sqrt() + 1e-8)
    return (z - step).detach(), _rms(residual.detach(), torch.zeros_like(residual))

