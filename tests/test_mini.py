"""The bundled prior: it loads offline, as the project's code and as a normal diffusers folder, and restores."""

import numpy as np
import pytest
from PIL import Image

from latentindigo.imageio import to_tensor
from latentindigo.metrics import consistency
from latentindigo.priors import load_prior
from latentindigo.sampler import run
from latentindigo.settings import ASSETS, settings_for


@pytest.fixture(scope="module")
def mini():
    return load_prior("mini")


@pytest.fixture
def small_photo() -> Image.Image:
    rng = np.random.default_rng(0)
    base = rng.random((6, 8, 3))
    return Image.fromarray((base * 255).astype(np.uint8)).resize((40, 30), Image.Resampling.BICUBIC)


def test_mini_is_a_diffusers_folder_with_a_trained_latent_inn(mini):
    from diffusers import DiffusionPipeline

    assert mini.latent_inn_trained and not mini.notice
    pipe = DiffusionPipeline.from_pretrained(ASSETS / "mini")
    assert type(pipe).__name__ == "LDMPipeline"
    assert pipe.vqvae.config.scaling_factor == pytest.approx(mini.scaling_factor)


@pytest.mark.parametrize("method", ["latent", "pixel"])
def test_mini_restores_to_size_consistently(mini, small_photo, method, realistic_package):
    from latentindigo.degradations import resize

    y = to_tensor(small_photo)
    tuned = settings_for("mini").realism
    assert tuned > 0  # mini's tuned default starts from the realistic stage (installed: the fixture)
    for realism in (tuned, 0.0):
        done = run(small_photo, settings_for("mini", method=method, steps=4, size=(161, 121), realism=realism), mini)
        assert done.image.size == (161, 121)
        # consistent with the measurement as the start has it (the back-projection's target: the first stages
        # cleaned the input, and the realistic one added its own detail)
        start = resize(done.first_stage, tuple(y.shape[-2:]), "bicubic")
        assert consistency(done.tensor.cpu(), start) > 40
    # from the faithful start, within what the restorer changed, consistent with the input itself
    assert consistency(done.tensor.cpu(), y) > 35


def test_a_constant_photo_stays_seamless_when_tiled(mini):
    # mini's native latent is 64x64 (256 pixels): a 400x300 output is denoised as overlapping tiles. A seam
    # is a straight line of jumps, so the mean jump across each row and column boundary is what is checked;
    # the outermost 32 pixels are left out: the autoencoder's zero padding shifts a flat colour at the border,
    # and each projection's round trip through it (mini's tuned regularisation) carries the shift a little
    # further in (jumps of 3/255 at 23 pixels from the edge; the tiles' blending zones are 48-256 pixels in)
    done = run(Image.new("RGB", (100, 75), (110, 150, 190)), settings_for("mini", steps=3, scale=4), mini)
    out = done.tensor[0, :, 32:-32, 32:-32].cpu()
    across_rows = (out[:, 1:] - out[:, :-1]).abs().mean(dim=(0, 2)).max()
    across_columns = (out[:, :, 1:] - out[:, :, :-1]).abs().mean(dim=(0, 1)).max()
    assert max(across_rows, across_columns) < 2 / 255
