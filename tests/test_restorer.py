"""The first-stage restorer R: any scale and size, starts as bicubic, trains and resumes, and the bundled one
restores photos it never saw better than bicubic."""

import numpy as np
import pytest
import torch
from PIL import Image

from latentindigo.degradations import Degradation, degrade, resize
from latentindigo.metrics import psnr, ssim
from latentindigo.restorer import Restorer, jpeg_grid, load_restorer, restore_first_stage
from latentindigo.training.data import PhotoCrops
from latentindigo.training.restorer import RESTORER_VALIDATION, grow_from, restorer_pair, train_restorer
from latentindigo.weights import load_weights, save_weights


@pytest.mark.parametrize("low,size", [((16, 16), (64, 64)), ((37, 53), (101, 150)), ((9, 7), (72, 56)),
                                      ((30, 31), (30, 31))])
def test_a_fresh_restorer_is_the_bicubic_upscale_at_any_size_and_scale(low, size):
    y = torch.rand(1, 3, *low, generator=torch.Generator().manual_seed(0))
    out = restore_first_stage(Restorer(widths=(4, 8, 8), blocks=(1, 1, 1)), y, size)
    assert out.shape == (1, 3, *size)
    torch.testing.assert_close(out, resize(y, size, "bicubic").clamp(0, 1), rtol=0, atol=1e-6)


@pytest.mark.parametrize("bf16,workers", [(False, 0), (True, 0), (False, 2)])
def test_restorer_training_lowers_the_loss_and_resumes(tmp_path, bf16, workers):
    root = tmp_path / "photos"
    rng = np.random.default_rng(0)
    for split, count in (("train", 3), ("val", 1)):
        (root / split).mkdir(parents=True)
        for i in range(count):  # sharp edges on smooth shading: what a restorer can learn to put back
            image = Image.fromarray((rng.random((6, 6, 3)) * 255).astype(np.uint8)).resize((192, 192),
                                                                                             Image.Resampling.NEAREST)
            image.save(root / split / f"{split}{i}.png")
    small = {"widths": [4, 8, 8], "blocks": [1, 1, 1]}
    rng = np.random.default_rng(7)
    crops = PhotoCrops(root / "train", 32)
    fixed = [(x, *restorer_pair(x, rng)) for x in (crops.batch(rng, 1) for _ in range(16))]

    def loss(restorer):
        with torch.no_grad():
            return sum(torch.nn.functional.mse_loss(restorer(up, s, g), x).item() for x, up, s, g in fixed)

    run = tmp_path / "run"
    info = train_restorer(root, run, steps=80, batch=4, crop=32, lr=3e-3, every=40, config=small, bf16=bf16,
                          workers=workers)
    restorer = load_weights(Restorer, run / "restorer.safetensors")
    assert loss(restorer) < 0.99 * loss(Restorer(**small))  # a fresh one is the bicubic upscale
    assert restorer.config == small
    assert set(info["validation"]) == set(RESTORER_VALIDATION)
    again = train_restorer(root, run, steps=80, batch=4, crop=32, lr=3e-3, every=40, config=small, bf16=bf16,
                           workers=workers)
    assert again["step"] == 80 and len(again["history"]) == 2


def test_a_restorer_grown_from_trained_weights_starts_as_the_trained_one(tmp_path):
    torch.manual_seed(0)
    trained = Restorer(widths=(4, 8, 8), blocks=(1, 1, 1))
    for p in trained.parameters():  # a fresh restorer is the bicubic upscale: make this one do something
        torch.nn.init.normal_(p, std=0.1)
    path = save_weights(trained, tmp_path / "trained.safetensors")
    grown = Restorer(widths=(4, 8, 8), blocks=(1, 2, 3))
    grow_from(grown, path)
    up, scale, grid = torch.rand(2, 3, 24, 20), torch.tensor([2.0, 4.0]), jpeg_grid((6, 5), (24, 20), 70)
    with torch.no_grad():
        assert (trained(up, scale, grid) - up).abs().max() > 0.01
        torch.testing.assert_close(grown(up, scale, grid), trained(up, scale, grid), rtol=0, atol=1e-6)


def test_a_restorer_grown_from_one_without_the_jpeg_grid_input_starts_ignoring_it(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(0)
    fresh = Restorer(widths=(4, 8, 8), blocks=(1, 1, 1)).state_dict()
    state = {k: torch.randn_like(v) * 0.1 for k, v in fresh.items()}
    state["inp.weight"] = state["inp.weight"][:, :4].contiguous()  # image and scale channels only
    save_file(state, tmp_path / "old.safetensors")
    grown = Restorer(widths=(4, 8, 8), blocks=(1, 1, 2))
    grow_from(grown, tmp_path / "old.safetensors")
    up = torch.rand(1, 3, 24, 20)
    with torch.no_grad():
        with_jpeg = grown(up, 4.0, jpeg_grid((6, 5), (24, 20), 40))
        without = grown(up, 4.0, jpeg_grid((6, 5), (24, 20), 100))
    assert (with_jpeg - up).abs().max() > 0.01
    torch.testing.assert_close(with_jpeg, without, rtol=0, atol=1e-6)


def test_the_bundled_restorer_beats_bicubic_on_a_photo_it_never_saw():
    import skimage.data

    # coffee is a validation photo: never trained on
    photo = torch.from_numpy(skimage.data.coffee()[100:292, 200:392].copy()).permute(2, 0, 1)[None].float() / 255
    y = degrade(photo, Degradation(scale=4, blur=1.2, noise=5, jpeg=75, seed=3))
    restored = restore_first_stage(load_restorer(), y, (192, 192))
    bicubic = resize(y, (192, 192), "bicubic").clamp(0, 1)
    assert psnr(restored, photo) > psnr(bicubic, photo) + 0.5
    assert ssim(restored, photo) > ssim(bicubic, photo) + 0.02


def test_large_outputs_are_restored_in_tiles_without_seams(monkeypatch):
    from latentindigo import restorer as module

    y = torch.rand(1, 3, 40, 50, generator=torch.Generator().manual_seed(1))
    whole = restore_first_stage(load_restorer(), y, (160, 200))
    monkeypatch.setattr(module, "TILE", 96)
    monkeypatch.setattr(module, "OVERLAP", 32)
    tiled = restore_first_stage(load_restorer(), y, (160, 200))
    assert tiled.shape == whole.shape
    assert (tiled - whole).abs().mean() < 2e-3 and (tiled - whole).abs().max() < 0.05


def test_a_window_of_the_jpeg_grid_is_that_part_of_the_whole_grid():
    whole = jpeg_grid((40, 50), (160, 200), 60)
    window = jpeg_grid((40, 50), (160, 200), 60, (64, 96, 96, 80))
    torch.testing.assert_close(window, whole[..., 64:160, 96:176], rtol=0, atol=1e-6)
