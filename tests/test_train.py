"""Short training runs on a tiny photo folder: the loss goes down, checkpoints resume, weights reload."""


import numpy as np
import pytest
import torch
from PIL import Image

from latentindigo.estimator import DegradationEstimator
from latentindigo.inn import LiftingINN
from latentindigo.training.autoencoder import train_decoder, vae_config
from latentindigo.training.data import PhotoCrops, degraded_batch
from latentindigo.training.latent_inn import train_latent_inn
from latentindigo.training.loop import Checkpoint
from latentindigo.training.pixel_inn import pixel_inn_loss, train_pixel_inn
from latentindigo.weights import load_weights


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """A photo set of smooth random textures in the layout scripts/build_photoset.py writes."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for split, count in (("train", 4), ("val", 2)):
        (root / split).mkdir()
        for i in range(count):
            small = rng.random((12, 12, 3))
            image = Image.fromarray((small * 255).astype(np.uint8)).resize((96, 96), Image.Resampling.BICUBIC)
            image.save(root / split / f"{split}{i}.png")
    return root


def test_pixel_inn_training_lowers_the_loss_and_resumes(photos, tmp_path):
    small = {"channels": 3, "width": 8, "blocks": 1, "steps": 2}
    fixed = degraded_batch(PhotoCrops(photos / "train", 32), np.random.default_rng(5), 16, 2)
    torch.manual_seed(0)  # the same initialisation train_pixel_inn starts from (seed 0)
    before, _ = pixel_inn_loss(LiftingINN(**small), DegradationEstimator(), fixed)
    run = tmp_path / "run"
    info = train_pixel_inn(photos, run, steps=30, batch=4, crop=32, lr=1e-3, every=15, inn_config=small)
    inn = load_weights(LiftingINN, run / "pixel_inn.safetensors")
    assert inn.config == LiftingINN(**small).config
    with torch.no_grad():
        after, _ = pixel_inn_loss(inn, load_weights(DegradationEstimator, run / "estimator.safetensors"), fixed)
    assert after < 0.9 * before
    # a finished run resumes at its last step and does nothing more
    again = train_pixel_inn(photos, run, steps=30, batch=4, crop=32, lr=1e-3, every=15, inn_config=small)
    assert again["step"] == 30 and len(again["history"]) == len(info["history"]) == 2


def test_checkpoint_round_trip_restores_weights_and_optimiser(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    Checkpoint(tmp_path).save({"m": model}, opt, {"step": 1})
    model2 = torch.nn.Linear(3, 2)
    opt2 = torch.optim.Adam(model2.parameters(), lr=1e-3)
    info = Checkpoint(tmp_path).load({"m": model2}, opt2)
    assert info["step"] == 1
    torch.testing.assert_close(model2.weight, model.weight)
    torch.testing.assert_close(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])


def test_latent_inn_calibration_beats_haar(tiny_prior, photos, tmp_path):
    info = train_latent_inn(tiny_prior, photos / "train", tmp_path, DegradationEstimator(), steps=40, batch=4,
                            crop=64, lr=2e-3, every=20)
    assert info["final"]["error"] < info["final"]["haar_error"]
    assert (tmp_path / "latent_inn.safetensors").exists()


def test_decoder_fine_tune_keeps_the_encoder_and_its_latents(photos, tmp_path):
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    AutoencoderKL(**vae_config(4, channels=(16, 16, 16))).save_pretrained(tmp_path / "vae")
    before = AutoencoderKL.from_pretrained(tmp_path / "vae")
    train_decoder(photos, tmp_path / "vae", tmp_path / "run", steps=3, batch=2, crop=32, every=3)
    after = AutoencoderKL.from_pretrained(tmp_path / "run" / "vae")
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():  # the UNet and the LatentINN were trained on these latents: they must not move
        torch.testing.assert_close(after.encode(x).latent_dist.mode(), before.encode(x).latent_dist.mode(),
                                   rtol=0, atol=0)
        assert not torch.equal(after.decode(before.encode(x).latent_dist.mode()).sample,
                               before.decode(before.encode(x).latent_dist.mode()).sample)


def test_photo_crops_read_png_and_jpeg_photos_and_say_when_there_are_none(tmp_path):
    image = Image.fromarray(np.zeros((40, 40, 3), np.uint8))
    image.save(tmp_path / "a.png")
    image.save(tmp_path / "b.jpg")  # the compact copy scripts/gpu_train_restorer.sh carries to a GPU machine
    (tmp_path / "notes.txt").write_text("not a photo")
    assert PhotoCrops(tmp_path, 16).names == ["a", "b"]
    with pytest.raises(FileNotFoundError, match="build_photoset"):
        PhotoCrops(tmp_path / "missing", 16)
