"""The LatentINDIGO sampler (DESIGN section 3) and its baselines, as generators of events.

    for event in restore(image, Settings(method="latent", scale=4), prior):
        if isinstance(event, FirstStage): show(event.image)  # the start, before the first step
        if isinstance(event, Step): show(event.preview)      # decoded lazily, only when asked for
        if isinstance(event, Done): event.image.save("out.png")  # the last event

The start is the faithful first stage R(y) (the restorer) walked towards the realistic one (Real-ESRGAN) by the
`realism` control (`first_stages.combine`); it is encoded and noised to `start`. R(y), through the INN's forward
model, is the measurement guidance aims at, so that the input's noise and JPEG blocks are not copied back. Per
step, `latentindigo` (the loop to read first) predicts the clean latent z0, then:
guidance (the INN swaps the coarse part of z0's wavelet decomposition for the measurement's),
refinement (one Adam step fitting the INN's forward model to the estimate, for the next step's guidance),
regularisation when due (`regularisation_due`: spread matching or a projection through the autoencoder),
then a DDIM step. The PixelINN guides in pixels (a decode and an encode per step), the LatentINN in latents.
`sdedit` and `dps` are the baselines, short samplers sharing the DDIM step.

The result is the start plus what the diffusion changed (decoded result minus decoded start, without the
finest `start_detail_levels` bands, which the autoencoder does not reproduce), then the wavelet colour fix and
a back-projection towards the start. The loop stops when a step no longer moves that output (`early_stop`,
measured through `OutputChange`, a cheap linear stand-in for the decoder), and when the whole diffusion moved it
by less than that, the result is its start and no decode runs. Which settings a prior samples best with is its
tuned settings (`latentindigo.settings.settings_for`).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from latentindigo.degradations import low_band, pad_edges, resize
from latentindigo.errors import UserError
from latentindigo.estimator import DegradationEstimator, Estimate
from latentindigo.first_stages import combine, load_realistic, realistic_estimate, realistic_files
from latentindigo.imageio import pixels_hash, to_image, to_tensor
from latentindigo.inn import LiftingINN, coarse_size, levels_for_scale, zero_details
from latentindigo.priors import Prior
from latentindigo.restorer import WEIGHTS as RESTORER_WEIGHTS, Restorer, load_restorer, restore_first_stage
from latentindigo.rrdbnet import RRDBNet
from latentindigo.settings import ASSETS, DIFFUSION_METHODS, Settings
from latentindigo.weights import load_weights

MOVED = 2 / 255  # a pixel "moved" when a channel changed by more than this (what `Change` counts)


@dataclass
class PixelModels:
    """The VAE-independent networks: degradation estimator F, PixelINN and first-stage restorer R."""

    inn: LiftingINN
    estimator: DegradationEstimator
    restorer: Restorer
    files: tuple[Path, ...] = ()  # their weight files: recipes hash them
    realistic: Path | None = None  # a user's ESRGAN-family file for the realistic stage (None: Real-ESRGAN x4plus)
    _copies: dict = field(default_factory=dict, repr=False, compare=False)

    def realistic_model(self, device: torch.device = torch.device("cpu")) -> RRDBNet:
        """The realistic first stage on `device`, loaded on first use (UserError when it is unavailable)."""
        return load_realistic(self.realistic, device)

    def files_for(self, settings: Settings) -> tuple[Path, ...]:
        """The weight files a run with these settings reads: the realistic stage's only when it runs."""
        return self.files + (realistic_files(self.realistic) if settings.uses_realistic else ())

    def on(self, device: torch.device) -> PixelModels:
        """These models on `device`: themselves where they are, else a copy kept for the next run (the cached
        models are never moved, so runs on different devices do not move them under each other)."""
        if next(self.inn.parameters()).device == device:
            return self
        if device not in self._copies:
            move = lambda m: copy.deepcopy(m).to(device)  # noqa: E731
            self._copies[device] = replace(self, inn=move(self.inn), estimator=move(self.estimator),
                                           restorer=move(self.restorer), _copies={})
        return self._copies[device]


@cache
def load_pixel_models(folder: Path = ASSETS / "inn", restorer: Path = RESTORER_WEIGHTS,
                      realistic: Path | None = None) -> PixelModels:
    """The bundled, trained PixelINN, estimator and restorer (loaded once per process); `realistic`: a user's
    ESRGAN-family file for the realistic first stage instead of Real-ESRGAN x4plus."""
    inn, estimator = folder / "pixel_inn.safetensors", folder / "estimator.safetensors"
    # (channels-last: the PixelINN's convolutions 15 % faster on the CPU; the small estimator gains nothing)
    return PixelModels(inn=load_weights(LiftingINN, inn).to(memory_format=torch.channels_last),
                       estimator=load_weights(DegradationEstimator, estimator), restorer=load_restorer(restorer),
                       files=(inn, estimator, restorer), realistic=realistic)


# ------------------------------------------------------------------------------------------- events

@dataclass
class Step:
    """One phase of one sampler step: the estimate after the phase and its error, both as they were then."""

    step: int  # 1-based
    total: int
    timestep: int
    phase: str  # "guidance", "refinement", "regularisation" (LatentINDIGO), "denoising" (SDEdit) or "guidance" (DPS)
    space: str  # where `consistency` is measured: "latent" or "pixel"
    latent: torch.Tensor = field(repr=False)  # the clean-latent estimate after the phase
    # the error after the phase, a 0-d tensor (reading it waits for the GPU, so it is read only when asked for):
    # the estimate's coarse part against the measurement, or for refinement the refined forward model's fit
    error: torch.Tensor = field(repr=False)
    last: bool = False  # the run's last step: its result follows at once (a preview of it is not worth a decode)
    _decode: Callable | None = field(repr=False, default=None)
    _preview: Image.Image | None = field(repr=False, default=None)

    @property
    def consistency(self) -> float:
        """RMS distance of the estimate's INN coarse part from the measurement, after this phase."""
        return float(self.error)

    @property
    def preview(self) -> Image.Image:
        """The output this estimate gives (decoded on first read)."""
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
class Change:
    """What the diffusion changed: the result against its start."""

    rms: float  # RMS over pixels and channels, in [0, 1] units
    moved: float  # share of pixels with a channel changed by more than MOVED

    @classmethod
    def between(cls, result: torch.Tensor, start: torch.Tensor) -> Change:
        diff = (result - start).abs()
        return cls(rms=float(diff.pow(2).mean().sqrt()), moved=float((diff.amax(dim=1) > MOVED).float().mean()))

    def __str__(self) -> str:
        return f"{self.rms * 255:.2f}/255 RMS, {self.moved:.1%} of pixels moved by more than 2/255"


@dataclass
class Done:
    image: Image.Image
    tensor: torch.Tensor = field(repr=False)  # (1, 3, H, W) float in [0, 1]
    estimate: Estimate
    seconds: float
    settings: Settings
    latent_inn_trained: bool | None = None  # None for methods without a LatentINN
    # what `maps` compares the result with: the input y, the pixel-space forward model (the PixelINN, for the
    # pixel mode the copy refined on this image) with its gamma and levels, and the start (None: no first stage)
    measurement: torch.Tensor | None = field(repr=False, default=None)
    forward_model: LiftingINN | None = field(repr=False, default=None)
    gamma: torch.Tensor | None = field(repr=False, default=None)
    levels: int = 0
    first_stage: torch.Tensor | None = field(repr=False, default=None)
    steps_taken: int = 0  # diffusion steps run (fewer than settings.steps when the output stopped moving)
    change: Change | None = None  # diffusion methods: the result against its start
    decoded: bool = True  # False: the diffusion moved the output by less than early_stop, the result is its start
    first_stages_reused: bool = False  # the first stages came from a FirstStageCache (its time is not in `seconds`)

    @property
    def summary(self) -> str:
        """What the diffusion did, for a status line: '' for methods without one."""
        if self.change is None:
            return ""
        steps = self.settings.steps
        ran = (f"converged at step {self.steps_taken} of {steps}" if self.steps_taken < steps
               else f"{steps} steps")
        kept = "; below the early-stop threshold, the result is its start" if not self.decoded else ""
        return f"diffusion: {ran}, changed the start by {self.change}{kept}"


# ------------------------------------------------------------------------------------------- first stages

class FirstStageCache:
    """The last input's first-stage estimates (and the latent of the faithful one, which guidance measures), so
    that a change of realism (or another method on the same photo) costs a combination, not two networks and an
    encode. Keyed by the input's pixels, the output size, the weight files and the device: a different photo
    never gets another's estimates."""

    def __init__(self):
        self.key: tuple | None = None
        self.estimates: dict[str, torch.Tensor] = {}

    def get(self, key: tuple, name: str, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        if key != self.key:
            self.key, self.estimates = key, {}
        if name not in self.estimates:
            self.estimates[name] = compute()
        return self.estimates[name]


def _input_key(image: Image.Image, out_hw: tuple[int, int], pixel: PixelModels, device: torch.device) -> tuple:
    # (Real-ESRGAN's files are pinned by their SHA-256 where they are read; a user's own is named here)
    files = tuple((str(f), Path(f).stat().st_mtime_ns) for f in pixel.files if Path(f).exists())
    return pixels_hash(image), out_hw, files, str(pixel.realistic), str(device)


# ------------------------------------------------------------------------------------------- restore

def restore(image: Image.Image, settings: Settings, prior: Prior | None = None, pixel: PixelModels | None = None,
            first_stages: FirstStageCache | None = None) -> Iterator[FirstStage | Step | Done]:
    """Restore an RGB image; yields (diffusion methods) `FirstStage`, then `Step` events while sampling, and a
    final `Done`. `first_stages`: a cache of the last input's first-stage estimates, reused when the input, output
    size and weights match."""
    t0 = time.perf_counter()
    settings.check(image.width, image.height)
    if settings.method in DIFFUSION_METHODS and prior is None:
        raise UserError(f"method {settings.method!r} needs a diffusion prior")
    # everything runs where the prior runs (the small networks follow it onto the GPU)
    device = prior.device if prior is not None and settings.method in DIFFUSION_METHODS else torch.device("cpu")
    pixel = (pixel or load_pixel_models()).on(device)
    image = image.convert("RGB")
    y = to_tensor(image).to(device)
    width, height = settings.output_size(image.width, image.height)
    out_hw = (height, width)  # tensors are (height, width); Settings speaks (width, height) as images do
    gamma, estimate = pixel.estimator.estimate(y)
    # the scale is the user's (output over input size); the estimator's guess of it is poor on real photos
    estimate = replace(estimate, scale=math.sqrt(height * width / (image.height * image.width)))
    levels = levels_for(out_hw, tuple(y.shape[-2:]))
    cache_ = first_stages or FirstStageCache()
    key = _input_key(image, out_hw, pixel, device)
    reused = cache_.key == key and bool(cache_.estimates)
    faithful = lambda: cache_.get(key, "faithful", lambda: restore_first_stage(  # noqa: E731
        pixel.restorer, y, out_hw, estimate.jpeg))  # (the estimate holds the JPEG quality read off y)
    realistic = lambda: cache_.get(key, "realistic", lambda: realistic_estimate(  # noqa: E731
        pixel.realistic_model(device), y, out_hw))
    x_first, forward_model, diffusion = None, pixel.inn, None

    if settings.method == "bicubic":
        out = resize(y, out_hw, "bicubic").clamp(0, 1)
    elif settings.method == "inn":
        y_coarse = resize(y, coarse_size(height, width, levels), "bicubic")
        with torch.no_grad():
            out = pixel.inn.inverse(y_coarse, zero_details(y_coarse, out_hw, levels), gamma, out_hw).clamp(0, 1)
    elif settings.method == "realistic":
        out = realistic()
    elif settings.method == "faithful":
        out = x_first = faithful()
    else:
        x_faithful = faithful()  # R(y): the guidance target
        if settings.method in DIFFUSION_METHODS and settings.uses_realistic:
            yield FirstStage(tensor=x_faithful, seconds=time.perf_counter() - t0)
        # the start: the faithful stage walked towards the realistic one by the realism control
        x_first = x_faithful if not settings.uses_realistic else combine(
            x_faithful, realistic(), settings.realism, estimate.scale)
        out = x_first
        if settings.method in DIFFUSION_METHODS:
            yield FirstStage(tensor=x_first, seconds=time.perf_counter() - t0, realism=settings.realism)
            problem = Problem(prior, settings, y, x_first, x_faithful, gamma, levels, out_hw, pixel.inn,
                              kept=lambda name, compute: cache_.get(key, name, compute))
            diffusion = yield from SAMPLERS[settings.method](problem)
            out = diffusion.output
            if settings.method == "pixel":
                forward_model = diffusion.inn
        # (a result the diffusion left undecoded is its start: the colour fix and back-projection leave it as is)
        if settings.method in ("latent", "pixel") and diffusion.decoded:
            if settings.colour_fix:
                out = wavelet_colour_fix(out, x_first, settings.colour_fix_levels)
            # towards the start downscaled, not y: back-projecting onto y put its noise and JPEG blocks back (and
            # onto R(y) downscaled took 0.25 dB from a start at realism 0.65: scripts/measure_realism.py's curves)
            out = final_consistency(out.clamp(0, 1), resize(x_first, tuple(y.shape[-2:]), "bicubic"))
    out = out.clamp(0, 1)
    trained = prior.latent_inn_trained if settings.method == "latent" else None
    yield Done(image=to_image(out), tensor=out, estimate=estimate, seconds=time.perf_counter() - t0,
               settings=settings, latent_inn_trained=trained, measurement=y, forward_model=forward_model,
               gamma=gamma, levels=levels, first_stage=x_first,
               steps_taken=diffusion.steps if diffusion else 0,
               change=Change.between(out, x_first) if diffusion else None,
               decoded=diffusion.decoded if diffusion else True, first_stages_reused=reused)


def run(image: Image.Image, settings: Settings, prior: Prior | None = None, pixel: PixelModels | None = None,
        first_stages: FirstStageCache | None = None) -> Done:
    """`restore` without the events."""
    for event in restore(image, settings, prior, pixel, first_stages):
        if isinstance(event, Done):
            return event
    raise RuntimeError("the sampler ended without a result")


def phases(settings: Settings) -> tuple[str, ...]:
    """The phases a run with these settings reports, in their order within a step."""
    if settings.method == "sdedit":
        return ("denoising",)
    if settings.method == "dps":
        return ("guidance",)
    if settings.method not in ("latent", "pixel"):
        return ()
    return ("guidance",) + ("refinement",) * settings.refine + ("regularisation",) * (settings.reg_every > 0)


def levels_for(out_hw: tuple[int, int], in_hw: tuple[int, int]) -> int:
    """INN levels J for output and input sizes (height, width): of their mean scale factor."""
    return levels_for_scale(math.sqrt(out_hw[0] * out_hw[1] / (in_hw[0] * in_hw[1])))


def final_consistency(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Back-projection: add the bicubic upscale of what the output, downscaled, misses of the target y.

    Not DESIGN's PixelINN swap `g^-1(y_J, g_d(x))`: that inverse is a learned deblurring, and it amplifies
    the input's noise and JPEG blocks into a checkerboard (on four evaluation photos it took the detail
    measure to 3.2 and PSNR 3 dB below bicubic). The back-projected correction is smooth; two rounds take
    consistency from 25 to 48 dB at the PSNR of bicubic.
    """
    for _ in range(2):
        x = (x + resize(y - resize(x, tuple(y.shape[-2:]), "bicubic"), tuple(x.shape[-2:]), "bicubic")).clamp(0, 1)
    return x


def wavelet_colour_fix(x: torch.Tensor, reference: torch.Tensor, levels: int) -> torch.Tensor:
    """x's high frequencies on the reference's (the start's) low-frequency band: fixes colour casts and the coarse
    content, keeps x's finest `levels` bands. The band is what `levels` dilated 3x3 binomial blurs (dilations 1,
    2, 4, ...) leave, the smooth wavelet of INDIGO+ and DiffBIR (a Haar band would add block edges). INDIGO+ uses
    5 levels; the bundled prior adds little true detail, and 1 measured best for it (docs/method.md)."""
    return x - low_band(x, levels) + low_band(reference, levels)


# ------------------------------------------------------------------------------------------- the diffusion

@dataclass
class Problem:
    """What a diffusion sampler starts from."""

    prior: Prior
    settings: Settings
    y: torch.Tensor  # the input (1, 3, h, w)
    start: torch.Tensor  # the first-stage estimate the diffusion starts from, at the output size
    target: torch.Tensor  # R(y), the faithful stage: guidance's measurement is its INN forward
    gamma: torch.Tensor  # the degradation embedding F(y)
    levels: int  # INN levels J
    out_hw: tuple[int, int]
    pixel_inn: LiftingINN
    # (name, compute) -> compute(), or what it gave for the same name and input before (the first-stage cache)
    kept: Callable[[str, Callable[[], torch.Tensor]], torch.Tensor] = lambda name, compute: compute()


@dataclass
class Diffusion:
    """A sampler's result."""

    output: torch.Tensor  # (1, 3, H, W): the start plus what the diffusion changed
    steps: int  # steps taken
    decoded: bool = True  # False: the output is the start, the diffusion having moved it by less than early_stop
    inn: LiftingINN | None = None  # the forward model refined on this image (LatentINDIGO)


class Latents:
    """The padded work area, the start's latent, the timesteps and the seeded noise of one run; `compose` gives
    the output an estimate stands for."""

    def __init__(self, p: Problem):
        prior, s = p.prior, p.settings
        # the INN halves the latent `levels` times and the UNet once per block but the last: pad to both
        multiple = max(prior.factor << p.levels, prior.factor * prior.latent_multiple)
        work = [math.ceil(n / multiple) * multiple for n in p.out_hw]
        self.pads = (0, work[1] - p.out_hw[1], 0, work[0] - p.out_hw[0])
        self.p = p
        self.start = prior.encode(pad_edges(p.start, self.pads))
        self.timesteps = timesteps(prior, s)
        self.generator = torch.Generator().manual_seed(s.seed)
        # drawn on the CPU: the same on every device
        noise = torch.randn(self.start.shape, generator=self.generator).to(self.start.device)
        a = prior.alphas_cumprod[int(self.timesteps[0])].item()
        self.noised = math.sqrt(a) * self.start + math.sqrt(1 - a) * noise
        self.context = prior.embed(s.prompt, s.negative_prompt)
        self._decoded_start = None

    def encoded_target(self) -> torch.Tensor:
        """E(R(y)), the latent the measurement is taken from (the start's own where the start is R(y)); kept with
        the first stages, as no setting but the prior changes it."""
        if self.p.target is self.p.start:
            return self.start
        prior = self.p.prior
        return self.p.kept(f"E(R(y)) by {prior.name} {prior.dtype} {prior.files}",
                           lambda: prior.encode(self.pad(self.p.target)))

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        return pad_edges(x, self.pads)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.p.prior.decode(z)[..., : self.p.out_hw[0], : self.p.out_hw[1]]

    def compose(self, z: torch.Tensor) -> torch.Tensor:
        """The start plus what the diffusion changed (decoded z minus decoded start): the autoencoder's loss on the
        start cancels (the mini VAE keeps about a quarter of a photo's finest detail); in the finest
        `start_detail_levels` bands, which the autoencoder does not reproduce, the start is kept."""
        if self._decoded_start is None:
            self._decoded_start = self.decode(self.start)
        return self.p.start + low_band(self.decode(z) - self._decoded_start, self.p.settings.start_detail_levels)

    def predict_z0(self, z_t: torch.Tensor, t: int) -> torch.Tensor:
        """The prior's clean-latent estimate (Tweedie) for z_t at timestep t."""
        a = self.p.prior.alphas_cumprod[t].item()
        eps = self.p.prior.eps(z_t, t, self.p.settings.cfg_scale, self.context)
        return (z_t - math.sqrt(1 - a) * eps) / math.sqrt(a)

    def step(self, z_t: torch.Tensor, z0: torch.Tensor, i: int) -> torch.Tensor:
        """The DDIM step from the i-th timestep to the next."""
        alphas = self.p.prior.alphas_cumprod
        a, a_prev = alphas[int(self.timesteps[i])].item(), alphas[int(self.timesteps[i + 1])].item()
        return ddim_step(z_t, z0, a, a_prev, self.p.settings.eta, self.generator)


def timesteps(prior: Prior, settings: Settings) -> np.ndarray:
    """The timesteps from the start strength's down to 0, `steps` of them (fewer where they would repeat)."""
    t_start = min(prior.num_timesteps - 1, round(settings.start * prior.num_timesteps))
    return np.unique(np.linspace(t_start, 0, settings.steps).round().astype(int))[::-1]


def latentindigo(p: Problem) -> Iterator[Step]:
    """LatentINDIGO (LatentINN or PixelINN guidance, by p.settings.method); returns a `Diffusion`."""
    s = p.settings
    run = Latents(p)
    guide = PixelGuidance(p, run) if s.method == "pixel" else LatentGuidance(p, run)
    change = OutputChange(p, run) if s.early_stop else None
    z_t, z0, total = run.noised, run.start, len(run.timesteps)
    for i, t in enumerate(int(t) for t in run.timesteps):
        event = dict(step=i + 1, total=total, timestep=t, space=guide.space, _decode=run.compose)
        previous, z_prior = z0, run.predict_z0(z_t, t)
        z0, error = guide(z_prior)
        converged = change is not None and change(z0, previous) < s.early_stop / 255
        last = converged or i == total - 1
        yield Step(phase="guidance", latent=z0, error=error, last=last, **event)
        if converged and (previous is run.start or change(z0, run.start) < s.early_stop / 255):
            # the whole diffusion moved the output by less than a step may: the result is its start
            return Diffusion(output=p.start, steps=i + 1, decoded=False, inn=guide.inn.requires_grad_(False))
        if s.refine and not last:  # (it adapts the forward model for the next step's guidance)
            yield Step(phase="refinement", latent=z0, error=guide.refine(), **event)
        if regularisation_due(s, i, last):
            z0, error = regularise(p, run, guide, z0, z_prior)
            yield Step(phase="regularisation", latent=z0, error=error, last=last, **event)
        if last:
            break
        z_t = run.step(z_t, z0, i)
    return Diffusion(output=run.compose(z0), steps=i + 1, inn=guide.inn.requires_grad_(False))


def regularisation_due(s: Settings, i: int, last: bool) -> bool:
    """Every `reg_every` steps; and at the last step where it is a projection (the PixelINN always projects), so
    that the output decodes from a latent the encoder produces."""
    projection = s.method == "pixel" or s.latent_reg == "projection"
    return s.reg_every > 0 and (((i + 1) % s.reg_every == 0 and not last) or (last and projection))


class Guidance:
    """Guidance and refinement through one INN, a per-image copy (refinement starts from the pretrained weights for
    every image): `swap` gives an estimate the measurement's coarse part and keeps its details; `refine` is one
    Adam step on || g_c(estimate) - measurement ||^2 through the same forward pass, for the estimate before
    guidance (after it the coarse part is exact), and returns the refined model's fit on it."""

    space = ""

    def __init__(self, p: Problem, inn: LiftingINN, measured: torch.Tensor):
        self.p = p
        self.inn = copy.deepcopy(inn).requires_grad_(p.settings.refine)
        self.optimiser = refinement_optimiser(self.inn, p.settings.refine_lr) if p.settings.refine else None
        with torch.no_grad():
            self.measurement = self.inn(measured, p.gamma, levels=p.levels)[0]
        self.estimate = self.loss = None

    def swap(self, estimate: torch.Tensor) -> torch.Tensor:
        self.estimate = estimate
        with torch.set_grad_enabled(self.optimiser is not None):
            coarse, details = self.inn(estimate.detach(), self.p.gamma, levels=self.p.levels)
            self.loss = F.mse_loss(coarse, self.measurement)
        with torch.no_grad():
            return self.inn.inverse(self.measurement, [d.detach() for d in details], self.p.gamma,
                                    tuple(estimate.shape[-2:]))

    def refine(self) -> torch.Tensor:
        self.optimiser.zero_grad(set_to_none=True)
        self.loss.backward()
        self.optimiser.step()
        return coarse_error(self.inn, self.estimate, self.measurement, self.p)


class LatentGuidance(Guidance):
    """LatentINN guidance: the coarse part of z0's decomposition replaced by that of E(R(y)), in latent space."""

    space = "latent"

    def __init__(self, p: Problem, run: Latents):
        super().__init__(p, p.prior.latent_inn, run.encoded_target())

    def __call__(self, z0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        guided = z0 + self.p.settings.guidance * (self.swap(z0) - z0)
        return guided, coarse_error(self.inn, guided, self.measurement, self.p)

    def regularised_error(self, z0: torch.Tensor, x0: torch.Tensor | None) -> torch.Tensor:
        return coarse_error(self.inn, z0, self.measurement, self.p)


class PixelGuidance(Guidance):
    """PixelINN guidance: the coarse part of D(z0)'s decomposition replaced by that of R(y), in pixels, then
    encoded (a decode and an encode per step)."""

    space = "pixel"

    def __init__(self, p: Problem, run: Latents):
        super().__init__(p, p.pixel_inn, run.pad(p.target))

    def __call__(self, z0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x0 = self.p.prior.decode(z0)
        guided = x0 + self.p.settings.guidance * (self.swap(x0) - x0)
        # the error of the guided image, before the encoder's round trip takes it back into latents
        return self.p.prior.encode(guided.clamp(0, 1)), coarse_error(self.inn, guided, self.measurement, self.p)

    def regularised_error(self, z0: torch.Tensor, x0: torch.Tensor | None) -> torch.Tensor:
        return coarse_error(self.inn, x0, self.measurement, self.p)


def coarse_error(inn: LiftingINN, estimate: torch.Tensor, measurement: torch.Tensor, p: Problem) -> torch.Tensor:
    """RMS of the estimate's coarse part against the measurement (a 0-d tensor)."""
    with torch.no_grad():
        return _rms(inn(estimate, p.gamma, levels=p.levels)[0], measurement)


def regularise(p: Problem, run: Latents, guide: Guidance, z0: torch.Tensor,
               z_prior: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pull z0 back towards latents the prior produces: project it through the autoencoder, E(D(z0)) (the
    PixelINN always; the LatentINN with latent_reg "projection"), or match each latent channel's spread to the
    unguided prediction's (free)."""
    s, x0 = p.settings, None
    if s.method == "pixel" or s.latent_reg == "projection":
        x0 = p.prior.decode(z0).clamp(0, 1)
        target = p.prior.encode(x0)
    else:
        target = match_spread(z0, z_prior)
    z0 = z0 + s.reg_strength * (target - z0)
    return z0, guide.regularised_error(z0, x0)


def match_spread(z: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """z with each channel's standard deviation about its mean set to the reference's (the mean, which holds
    the measurement's colour, stays)."""
    mean, std = z.mean(dim=(-2, -1), keepdim=True), z.std(dim=(-2, -1), keepdim=True)
    return mean + (z - mean) * reference.std(dim=(-2, -1), keepdim=True) / (std + 1e-6)


def ddim_step(z_t: torch.Tensor, z0: torch.Tensor, a: float, a_prev: float, eta: float,
              generator: torch.Generator) -> torch.Tensor:
    """DDIM (Song et al. 2021, eq. 12) from noise level a to a_prev, given the clean estimate z0. The noise
    direction is the one z_t implies for z0; eta > 0 replaces part of it by fresh noise."""
    eps = (z_t - math.sqrt(a) * z0) / math.sqrt(1 - a)
    sigma = eta * math.sqrt((1 - a_prev) / (1 - a) * (1 - a / a_prev))
    z_prev = math.sqrt(a_prev) * z0 + math.sqrt(max(1 - a_prev - sigma**2, 0.0)) * eps
    if sigma:
        z_prev = z_prev + sigma * torch.randn(z0.shape, generator=generator).to(z0.device)
    return z_prev


class OutputChange:
    """How far the output the user sees moves when the clean latent moves, in [0, 1] RMS, at a cost of a few
    blurs: the latent change through a linear latent-to-RGB map (least squares on this image's start and its
    latent, at the latent's resolution), then through what the output keeps of a decoded change (the
    start-detail bands dropped, the colour fix's coarse bands replaced, the back-projection's correction).

    The map sees no detail finer than a latent pixel, so it stands in for the output only where the composition
    drops those bands anyway (start_detail_levels >= log2 of the prior's factor, as with `mini`;
    benchmarks/bench_early_stop.py measures how well it tracks). Elsewhere it is `None` and every step runs."""

    def __new__(cls, p: Problem, run: Latents):
        if 2 ** p.settings.start_detail_levels < p.prior.factor:
            return None
        return super().__new__(cls)

    def __init__(self, p: Problem, run: Latents):
        self.p, self.work_hw = p, tuple(n * p.prior.factor for n in run.start.shape[-2:])
        z = run.start.flatten(2)[0]  # (C, N)
        x = F.interpolate(run.pad(p.start), size=tuple(run.start.shape[-2:]), mode="area").flatten(2)[0]  # (3, N)
        z1 = torch.cat([z, torch.ones_like(z[:1])])
        self.map = torch.linalg.lstsq(z1.T, x.T).solution.T[:, :-1]  # (3, C): the bias cancels in a change

    def __call__(self, z: torch.Tensor, previous: torch.Tensor) -> float:
        s, h, w = self.p.settings, *self.p.out_hw
        rgb = torch.einsum("oc,bchw->bohw", self.map, (z - previous).float())
        d = F.interpolate(rgb, size=self.work_hw, mode="bilinear", align_corners=False)[..., :h, :w]
        d = low_band(d, s.start_detail_levels)
        if s.colour_fix:
            d = d - low_band(d, s.colour_fix_levels)
        for _ in range(2):  # final_consistency's correction, without its clamp
            d = d - resize(resize(d, tuple(self.p.y.shape[-2:]), "bicubic"), (h, w), "bicubic")
        return float(d.pow(2).mean().sqrt())


def sdedit(p: Problem) -> Iterator[Step]:
    """SDEdit: the same start and noise, denoised with no guidance (the baseline guidance is measured against)."""
    run = Latents(p)
    with torch.no_grad():
        measurement = p.prior.latent_inn(run.encoded_target(), p.gamma, levels=p.levels)[0]
    z_t, total = run.noised, len(run.timesteps)
    for i, t in enumerate(int(t) for t in run.timesteps):
        z0 = run.predict_z0(z_t, t)
        yield Step(step=i + 1, total=total, timestep=t, phase="denoising", space="latent", latent=z0,
                   error=coarse_error(p.prior.latent_inn, z0, measurement, p), last=i == total - 1,
                   _decode=run.compose)
        if i < total - 1:
            z_t = run.step(z_t, z0, i)
    return Diffusion(output=run.compose(z0), steps=total)


def dps(p: Problem) -> Iterator[Step]:
    """DPS/PSLD-style: a normalised gradient step on || bicubic_down(D(z0)) - y ||^2 through the decoder per step
    (the costly approach LatentINDIGO improves on)."""
    run = Latents(p)
    z_t, total = run.noised, len(run.timesteps)
    for i, t in enumerate(int(t) for t in run.timesteps):
        z0, error = dps_guidance(run.predict_z0(z_t, t), p)
        yield Step(step=i + 1, total=total, timestep=t, phase="guidance", space="pixel", latent=z0, error=error,
                   last=i == total - 1, _decode=run.compose)
        if i < total - 1:
            z_t = run.step(z_t, z0, i)
    return Diffusion(output=run.compose(z0), steps=total)


def dps_guidance(z0: torch.Tensor, p: Problem) -> tuple[torch.Tensor, torch.Tensor]:
    """z0 moved against the gradient of || bicubic_down(D(z0)) - y ||^2, scaled by the residual's norm (as in DPS,
    so that the step does not depend on the image size); and the guided estimate's residual RMS before the step."""
    z = z0.detach().requires_grad_(True)
    with torch.enable_grad():
        x = p.prior.decode(z, grad=True)[..., : p.out_hw[0], : p.out_hw[1]]
        residual = resize(x, tuple(p.y.shape[-2:]), "bicubic") - p.y
        loss = residual.pow(2).sum()
        (grad,) = torch.autograd.grad(loss, z)
    step = p.settings.guidance * grad / (loss.detach().sqrt() + 1e-8)
    return (z - step).detach(), _rms(residual.detach(), torch.zeros_like(residual))


SAMPLERS = {"latent": latentindigo, "pixel": latentindigo, "sdedit": sdedit, "dps": dps}


def refinement_optimiser(inn: LiftingINN, lr: float) -> torch.optim.Optimizer:
    """Adam over the INN's weights, fused: one kernel for all 128 tensors instead of about ten per tensor
    (on a GPU each is a launch; on the CPU they were half of a step's operations, benchmarks/bench_inn_step.py)."""
    return torch.optim.Adam(inn.parameters(), lr=lr, fused=True)


def _rms(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.sqrt(F.mse_loss(a, b))
