"""No tile seams (issue #34): each of the four places that tile large images, run on an input large enough to
be tiled (tile sizes shrunk to keep it cheap), gives about the untiled result, and the jumps across its tile
borders are no larger than those nearby.

The statistic (`seam_ratio`): a seam is a straight line of jumps, so the mean |difference| between neighbouring
pixels is taken across each whole row (column) boundary, over every pixel and channel along it; each tile
border's mean jump is divided by the mean over the 2 * REACH + 1 boundaries around it (itself included) and
the largest such ratio is checked. On the smooth inputs used here an untiled run gives 1.0-1.15 at the same
places and the tiled ones 1.05-1.26 (the VAE's the most: what its zero padding leaves inside diffusers' linear
blends); each test also plants a seam (the blend removed) and checks that the statistic sees it (1.4-2.8).
"""

import contextlib
import math

import numpy as np
import pytest
import torch
from PIL import Image

from latentindigo import priors, restorer as restorer_module, rrdbnet
from latentindigo.degradations import resize
from latentindigo.imageio import to_tensor
from latentindigo.priors import load_prior, tiled
from latentindigo.restorer import load_restorer, restore_first_stage
from latentindigo.rrdbnet import RRDBNet, upscale
from latentindigo.settings import ASSETS

REACH = 8
SEAMLESS = 1.35  # the largest ratio allowed at a tile border


def seam_ratio(image: torch.Tensor, seams: list[int], dim: int, reach: int = REACH) -> float:
    """The largest, over `seams`, mean |jump| across a tile border over the mean across the 2 reach + 1 borders
    around it. A seam s is the jump between pixels s - 1 and s along `dim` (-2: rows, -1: columns)."""
    jumps = image.diff(dim=dim).abs().mean(dim=[d for d in range(image.dim()) if d != image.dim() + dim])
    ratios = [jumps[s - 1] / jumps[max(0, s - 1 - reach):s + reach].mean() for s in seams if 0 < s < len(jumps)]
    assert ratios, "no tile border inside the image"
    return max(ratios).item()


def seams_at(image: torch.Tensor, rows: list[int], columns: list[int]) -> float:
    return max(seam_ratio(image, rows, -2), seam_ratio(image, columns, -1))


def smooth(height: int, width: int) -> torch.Tensor:
    """A smooth (1, 3, height, width) image in [0, 1]: no edges of its own for a seam to hide among."""
    y, x = np.mgrid[0:height, 0:width] / max(height, width) * 4
    rgb = np.stack([0.5 + 0.4 * np.sin(3 * x + y), 0.5 + 0.3 * np.cos(2 * y + x * x / 4),
                    0.4 + 0.3 * np.sin(x * y)])
    return torch.tensor(rgb, dtype=torch.float32)[None].clamp(0, 1)


def photo(height: int, width: int) -> torch.Tensor:
    """A real photo (a crop of the bundled calibration set) resized to height x width."""
    return resize(to_tensor(Image.open(ASSETS / "calibration" / "Garden.png")), (height, width)).clamp(0, 1)


# ------------------------------------------------------------------------------ Real-ESRGAN (rrdbnet.upscale)

def test_realistic_stage_tiles_stitch_without_seams():
    torch.manual_seed(0)
    model = RRDBNet(num_block=1, num_feat=8, num_grow_ch=4, scale=4).eval()
    for p in model.parameters():  # larger than the default initialisation, so that every weight shows
        p.data.normal_(0, 0.1)
    x = smooth(60, 80)
    whole = upscale(model, x, tile=128)

    def borders(overlap):
        (_, rows), (_, columns) = (rrdbnet._cuts(n, 24, overlap, 1) for n in x.shape[-2:])
        return [first * 4 for _, first, _ in rows[1:]], [first * 4 for _, first, _ in columns[1:]]

    stitched = upscale(model, x, tile=24, overlap=8)
    assert (stitched - whole).abs().max() < 1e-4
    assert seams_at(stitched, *borders(8)) < SEAMLESS
    # planted: no overlap, so each kept part reaches its window's zero-padded border
    assert seams_at(upscale(model, x, tile=24, overlap=0), *borders(0)) > SEAMLESS


# ----------------------------------------------------------------- the faithful stage (restore_first_stage)

def test_faithful_stage_tiles_blend_without_seams(monkeypatch):
    x, size = smooth(60, 80), (240, 320)
    whole = restore_first_stage(load_restorer(), x, size, quality=100)
    monkeypatch.setattr(restorer_module, "TILE", 96)
    monkeypatch.setattr(restorer_module, "OVERLAP", 32)
    (rows, row_tiles), (columns, column_tiles) = (borders(restorer_module._tiles(n), n) for n in size)
    assert (row_tiles, column_tiles) == (4, 5)
    # on the untiled pass's grid of two halvings (tiles started off it disagreed over their whole overlaps)
    assert all(start % 4 == 0 for n in size for start, _ in restorer_module._tiles(n))
    tiles = restore_first_stage(load_restorer(), x, size, quality=100)
    assert (tiles - whole).abs().mean() < 4e-4 and (tiles - whole).abs().max() < 0.01  # 0.00048, 0.0076 off it
    assert seams_at(tiles, rows, columns) < SEAMLESS
    # planted: every tile weighted alike, no ramp
    monkeypatch.setattr(restorer_module, "_ramp", lambda length, device: torch.ones(length, device=device))
    assert seams_at(restore_first_stage(load_restorer(), x, size, quality=100), rows, columns) > SEAMLESS


def borders(tiles: list[tuple[int, int]], length: int) -> tuple[list[int], int]:
    """Where (start, end) tiles start and end inside 0..length, and how many tiles there are."""
    return sorted({edge for tile in tiles for edge in tile} - {0, length}), len(tiles)


# ---------------------------------------------------------------- the denoiser (priors.tiled, MultiDiffusion)

@pytest.fixture(scope="module")
def mini():
    return load_prior("mini")


def test_denoiser_tiles_blend_without_seams(mini, monkeypatch):
    # mini's UNet on 32 x 32 latent tiles (its native size is 64) of a 64 x 96 latent: the clean latent it
    # predicts, which the sampler uses, against the untiled prediction
    z, t, tile = mini.encode(smooth(256, 384)), 300, 32
    a = mini.alphas_cumprod[t].item()
    predict = lambda eps: (z - math.sqrt(1 - a) * eps) / math.sqrt(a)  # noqa: E731
    denoise = lambda window: mini._eps(window, t, 1.0, None)  # noqa: E731
    whole = predict(denoise(z))

    def borders(n):  # where each tile starts and ends, as `tiled` places them
        count = math.ceil((n - tile) / int(tile * 0.75)) + 1
        starts = sorted({round(i * (n - tile) / (count - 1)) for i in range(count)})
        return sorted({*starts[1:], *(s + tile for s in starts[:-1])})

    rows, columns = borders(z.shape[-2]), borders(z.shape[-1])
    tiles = predict(tiled(denoise, z, tile))
    # not the untiled prediction (the UNet normalises and attends within each tile), but close to it
    assert (tiles - whole).pow(2).mean().sqrt() < 0.05 * z.std()
    assert seams_at(tiles, rows, columns) < SEAMLESS
    # planted: every tile weighted alike
    monkeypatch.setattr(torch, "hann_window", lambda n, periodic, **kwargs: torch.ones(n, **kwargs))
    assert seams_at(predict(tiled(denoise, z, tile)), rows, columns) > SEAMLESS


# ------------------------------------------------------------------ the autoencoder (diffusers' VAE tiling)

def test_autoencoder_tiles_share_their_normalisation(mini, monkeypatch):
    """mini's VAE tiles 256-pixel tiles (here 128, and STATS_SIDE 192: a 256 x 384 image is tiled, its
    statistics taken at half its size). Each tile normalised by its own GroupNorm statistics, as diffusers
    does, came out in its own colours; shared statistics give about the untiled result."""
    vae, x = mini.vae, smooth(256, 384)
    assert vae.use_tiling
    monkeypatch.setattr(vae, "use_tiling", False)
    z_whole = mini.encode(x)
    whole = mini.decode(z_whole)  # also the untiled round trip
    monkeypatch.setattr(vae, "use_tiling", True)
    monkeypatch.setattr(vae, "tile_sample_min_size", 128)
    monkeypatch.setattr(vae, "tile_latent_min_size", 32)
    monkeypatch.setattr(priors, "STATS_SIDE", 192)
    monkeypatch.setattr(priors, "UNTILED_ENCODE_BYTES", 0)
    # diffusers' tiles start every 96 pixels and blend over their first 32
    seams = lambda n: [s for k in range(1, n // 96 + 1) for s in (96 * k, 96 * k + 32) if s < n]  # noqa: E731
    rows, columns = seams(256), seams(384)

    def check(shared: bool):
        z = mini.encode(x)
        decoded, tiled_round_trip = mini.decode(z_whole), mini.decode(z)
        close = ((z - z_whole).abs().mean() < 0.05 * z_whole.std() and (decoded - whole).abs().mean() < 0.01
                 and (tiled_round_trip - whole).abs().mean() < 0.01)
        seamless = max(seams_at(decoded, rows, columns), seams_at(tiled_round_trip, rows, columns)) < SEAMLESS
        assert close == shared and seamless == shared

    check(shared=True)
    assert seams_at(whole, rows, columns) < 1.15  # the untiled round trip, for comparison
    # planted: each tile normalised by its own statistics (diffusers' tiling as it is)
    monkeypatch.setattr(priors, "shared_norm_statistics", lambda *args, **kwargs: contextlib.nullcontext())
    check(shared=False)


def test_autoencoder_inputs_that_fit_the_statistics_pass_or_the_encode_budget_run_untiled(mini, monkeypatch):
    x = smooth(64, 96)
    monkeypatch.setattr(mini.vae, "use_tiling", False)
    z, decoded = mini.encode(x), mini.decode(mini.encode(x))
    monkeypatch.setattr(mini.vae, "use_tiling", True)
    monkeypatch.setattr(mini.vae, "tile_sample_min_size", 32)
    monkeypatch.setattr(mini.vae, "tile_latent_min_size", 8)
    assert torch.equal(mini.encode(x), z) and torch.equal(mini.decode(z), decoded)
    assert mini.vae.use_tiling and not any("forward" in vars(m) for m in mini.vae.modules())
    # larger than the statistics' pass: decodes tile; encodes run untiled while their activations fit the budget
    monkeypatch.setattr(priors, "STATS_SIDE", 48)
    assert torch.equal(mini.encode(x), z) and not torch.equal(mini.decode(z), decoded)
    monkeypatch.setattr(priors, "UNTILED_ENCODE_BYTES", 64 * 96 * 32 * 4 - 1)  # (mini's encoder: 32 channels)
    assert not torch.equal(mini.encode(x), z)
