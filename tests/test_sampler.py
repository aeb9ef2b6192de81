import numpy as np
import pytest
import torch
from PIL import Image

from latentindigo import UserError
from latentindigo.degradations import low_band
from latentindigo.priors import tiled
from latentindigo.sampler import Done, FirstStage, Step, restore, run
from latentindigo.imageio import to_image, to_tensor
from latentindigo.settings import METHODS, TUNED_FILE, Settings, settings_for
from latentindigo.metrics import consistency

FAST = dict(steps=4, size=(301, 203))  # 45x37 -> 301x203: odd, non-integer scale
SMALL = dict(steps=3, size=(97, 79))  # cheaper, still odd


@pytest.mark.parametrize("method", METHODS)
def test_every_method_gives_the_requested_size(method, photo, tiny_prior, fresh_pixel_models):
    done = run(photo, Settings(method=method, **FAST), tiny_prior, fresh_pixel_models)
    assert done.image.size == (301, 203)
    assert done.tensor.shape == (1, 3, 203, 301)
    assert 0 <= done.tensor.min() and done.tensor.max() <= 1


@pytest.mark.parametrize("method", ["latent", "pixel"])
def test_small_outputs_whose_latent_the_unet_cannot_halve_are_padded(method, photo, tiny_prior, fresh_pixel_models):
    # 64x53 at x1.4: no INN level, a 7-row latent below the UNet's 8x8 tile (it crashed the UNet before)
    done = run(photo, Settings(method=method, steps=2, size=(64, 53)), tiny_prior, fresh_pixel_models)
    assert done.image.size == (64, 53)


def test_the_estimate_shows_the_scale_the_output_has(photo, fresh_pixel_models):
    done = run(photo, Settings(method="faithful", scale=3), None, fresh_pixel_models)
    assert done.estimate.scale == pytest.approx(3, rel=0.02)
    assert str(done.estimate).startswith("scale x3.0, JPEG ")


@pytest.mark.parametrize("method", ["latent", "pixel"])
def test_output_is_consistent_with_the_input(method, photo, tiny_prior, fresh_pixel_models):
    done = run(photo, Settings(method=method, **SMALL), tiny_prior, fresh_pixel_models)
    # downscaled again, the output is the input (PSNR in dB), whatever the random prior made of it
    assert consistency(done.tensor, to_tensor(photo)) > 40
    # the unguided baseline is not: guidance and final consistency are what make it so
    sdedit = run(photo, Settings(method="sdedit", **SMALL), tiny_prior, fresh_pixel_models)
    assert consistency(sdedit.tensor, to_tensor(photo)) < 25


@pytest.mark.parametrize("eta", [0.0, 1.0])  # eta's fresh noise comes from the seeded generator too
def test_same_seed_same_output_other_seed_other_output(photo, tiny_prior, fresh_pixel_models, eta):
    a = run(photo, Settings(seed=3, eta=eta, **SMALL), tiny_prior, fresh_pixel_models)
    b = run(photo, Settings(seed=3, eta=eta, **SMALL), tiny_prior, fresh_pixel_models)
    c = run(photo, Settings(seed=4, eta=eta, **SMALL), tiny_prior, fresh_pixel_models)
    assert np.array_equal(np.asarray(a.image), np.asarray(b.image))
    assert not np.array_equal(np.asarray(a.image), np.asarray(c.image))


@pytest.mark.parametrize("method,phases", [("latent", ["guidance", "refinement", "regularisation"]),
                                           ("pixel", ["guidance", "refinement", "regularisation"]),
                                           ("sdedit", ["denoising"])])
def test_events_arrive_in_order_with_all_phases(method, phases, photo, tiny_prior, fresh_pixel_models):
    events = list(restore(photo, Settings(method=method, steps=6, reg_every=2, scale=2), tiny_prior,
                          fresh_pixel_models))
    first, steps, done = events[0], events[1:-1], events[-1]
    assert isinstance(done, Done) and all(isinstance(e, Step) for e in steps)
    # the first preview is R(y), what sampling starts from, before any step has run
    assert isinstance(first, FirstStage) and first.seconds <= done.seconds
    assert np.array_equal(np.asarray(first.image), np.asarray(to_image(done.first_stage)))
    assert [e.step for e in steps] == sorted(e.step for e in steps)
    assert steps[-1].step == steps[-1].total == 6
    timesteps = [e.timestep for e in steps]
    assert timesteps == sorted(timesteps, reverse=True) and timesteps[-1] == 0
    assert {e.phase for e in steps} == set(phases)
    order = [phases.index(e.phase) for e in steps if e.step == 2]  # within a step, in the documented order
    assert order == sorted(order)
    assert steps[0].preview.size == done.image.size
    assert all(np.isfinite(e.consistency) and e.consistency >= 0 for e in steps)


@pytest.mark.parametrize("method,latent_reg,regularised", [
    ("latent", "spread", [2, 4]),  # every 2 steps, not at the last: spreads only
    ("latent", "projection", [2, 4, 5]),  # projections also at the last step: the output decodes from E(D(z0))
    ("pixel", "spread", [2, 4, 5]),  # the PixelINN always projects (latent_reg is the LatentINN's)
])
def test_projections_also_regularise_the_last_step(method, latent_reg, regularised, photo, tiny_prior,
                                                   fresh_pixel_models):
    settings = Settings(method=method, latent_reg=latent_reg, steps=5, reg_every=2, scale=2)
    events = [e for e in restore(photo, settings, tiny_prior, fresh_pixel_models) if isinstance(e, Step)]
    assert [e.step for e in events if e.phase == "regularisation"] == regularised


@pytest.mark.parametrize("method", ["latent", "pixel"])
def test_the_fused_refinement_optimiser_gives_what_adam_one_tensor_at_a_time_gives(method, photo, tiny_prior,
                                                                                  monkeypatch):
    # fused Adam (one kernel for all the INN's tensors) against PyTorch's reference loop over the tensors
    from latentindigo import sampler
    from latentindigo.sampler import load_pixel_models

    settings = Settings(method=method, **SMALL)
    fused = run(photo, settings, tiny_prior, load_pixel_models()).tensor
    monkeypatch.setattr(sampler, "refinement_optimiser",
                        lambda inn, lr: torch.optim.Adam(inn.parameters(), lr=lr, foreach=False))
    reference = run(photo, settings, tiny_prior, load_pixel_models()).tensor
    assert (fused - reference).abs().max() < 2e-4  # 0.05 of an 8-bit level; tiny-random's VAE amplifies rounding


def test_no_refinement_no_regularisation(photo, tiny_prior, fresh_pixel_models):
    events = restore(photo, Settings(steps=3, refine=False, reg_every=0, scale=2), tiny_prior, fresh_pixel_models)
    assert {e.phase for e in events if isinstance(e, Step)} == {"guidance"}


def test_refinement_starts_from_the_pretrained_weights_every_image(photo, tiny_prior, fresh_pixel_models):
    before = {k: v.clone() for k, v in tiny_prior.latent_inn.state_dict().items()}
    run(photo, Settings(steps=3, refine_lr=1e-2, scale=2), tiny_prior, fresh_pixel_models)
    for k, v in tiny_prior.latent_inn.state_dict().items():
        torch.testing.assert_close(v, before[k])


def test_large_outputs_are_tiled_to_the_requested_size(tiny_prior, fresh_pixel_models):
    # tiny-random's native latent is 8x8: a 200x120 output has a 32x16 latent, i.e. several tiles
    done = run(Image.new("RGB", (50, 30), (120, 140, 160)), Settings(steps=2, scale=4), tiny_prior,
               fresh_pixel_models)
    assert done.image.size == (200, 120)


def test_tile_borders_leave_no_seams_on_a_constant_latent():
    """A denoiser's tile borders are unreliable (zero padding): here every tile's border pixels are off by 0.5.
    Smooth blending must hide them wherever another tile covers the spot; hard tiling shows a grid of seams."""

    def bad_borders(tile: torch.Tensor) -> torch.Tensor:
        out = tile.clone()
        out[..., [0, -1], :] += 0.5
        out[..., :, [0, -1]] += 0.5
        return out

    constant = torch.full((1, 4, 40, 56), 0.3)
    blended = tiled(bad_borders, constant, tile=8)
    assert blended.shape == constant.shape
    assert (blended[..., 1:-1, 1:-1] - 0.3).abs().max() < 0.05
    hard = tiled(bad_borders, constant, tile=8, overlap=0.0)
    assert (hard[..., 1:-1, 1:-1] - 0.3).abs().max() > 0.4  # what the test guards against


def test_tiled_blending_is_exact_for_a_pointwise_function():
    z = torch.randn(1, 4, 21, 37)
    torch.testing.assert_close(tiled(lambda t: 2 * t + 1, z, tile=8), 2 * z + 1)


@pytest.mark.parametrize("method", ["latent", "pixel"])
def test_the_finest_bands_the_autoencoder_cannot_reproduce_are_kept_from_the_start(photo, tiny_prior,
                                                                                 fresh_pixel_models, method):
    def finest_change(keep: int) -> float:
        done = run(photo, Settings(method=method, steps=3, start=0.6, colour_fix=False, start_detail_levels=keep),
                   tiny_prior, fresh_pixel_models)
        change = done.tensor - done.first_stage
        return float((change - low_band(change, 1)).abs().mean())

    # the random prior changes every band; told to keep two, only the final back-projection's smooth correction
    # reaches them
    assert finest_change(2) < 0.3 * finest_change(0)


@pytest.mark.parametrize("settings,message", [
    (Settings(steps=0), "steps"),
    (Settings(scale=9), "scale"),
    (Settings(size=(10, 10)), "1x to 8x"),
    (Settings(size=(100000, 100000)), "megapixels"),
    (Settings(guidance=-1), "guidance"),
    (Settings(method="magic"), "method"),
    (Settings(start=0), "start"),
    (Settings(eta=1.5), "eta"),
    (Settings(latent_reg="smooth"), "regularisation must be one of spread, projection"),
    (Settings(colour_fix_levels=0), "colour fix levels"),
    (Settings(start_detail_levels=7), "start detail levels"),
])
def test_bad_settings_are_one_line_errors(photo, settings, message):
    with pytest.raises(UserError, match=message) as info:
        settings.check(photo.width, photo.height)
    assert "\n" not in str(info.value)


def test_a_priors_tuned_settings_are_the_defaults_and_what_is_given_wins(tmp_path):
    (tmp_path / TUNED_FILE).write_text('{"eta": 1.0, "latent_reg": "projection", "reg_every": 3}')
    tuned = settings_for(str(tmp_path), method="pixel")
    assert (tuned.eta, tuned.latent_reg, tuned.reg_every, tuned.method) == (1.0, "projection", 3, "pixel")
    assert tuned.steps == Settings().steps  # what the file leaves out is the library's
    assert settings_for(str(tmp_path), eta=0.5).eta == 0.5
    assert settings_for("tiny-random") == Settings()  # no file: the library defaults
    assert settings_for("mini").latent_reg == "projection"  # the bundled prior ships its tuning


@pytest.mark.parametrize("text,message", [
    ('{"eta": 1.0, "seed": 3, "size": [64, 64]}', "sets what it may not: seed, size"),
    ("[1, 2]", "must hold a JSON object"),
    ('{"eta": ', "cannot read"),
])
def test_a_broken_tuned_settings_file_is_a_one_line_error(tmp_path, text, message):
    (tmp_path / TUNED_FILE).write_text(text)
    with pytest.raises(UserError, match=message) as info:
        settings_for(str(tmp_path))
    assert "\n" not in str(info.value) and TUNED_FILE in str(info.value)
