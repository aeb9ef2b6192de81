import numpy as np
import pytest
import torch
from PIL import Image

from latentindigo import UserError
from latentindigo.degradations import low_band
from latentindigo.priors import tiled
from latentindigo.sampler import (Done, FirstStage, LatentGuidance, Latents, Problem, Step, coarse_error, ddim_step,
                                  phases, restore, run)
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
    assert consistency(done.tensor, to_tensor(photo)) > 39.5
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
    assert isinstance(first, FirstStage)
    assert np.array_equal(np.asarray(first.image), np.asarray(to_image(done.first_stage)))
    assert [e.step for e in steps] == sorted(e.step for e in steps)
    assert steps[-1].step == steps[-1].total == 6
    timesteps = [e.timestep for e in steps]
    assert timesteps == sorted(timesteps, reverse=True) and timesteps[-1] == 0
    assert {e.phase for e in steps} == set(phases)
    order = [phases.index(e.phase) for e in steps if e.step == 2]  # within a step, in the documented order
    assert order == sorted(order)
    assert steps[0].preview.size == done.image.size
    assert all(np.isfinite(e.consistency) for e in steps)


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


# ------------------------------------------------------------------------------------------- each phase does its job

@pytest.mark.parametrize("method", ["latent", "pixel"])
def test_guidance_gives_the_estimate_the_measurements_coarse_part(method, photo, tiny_prior, fresh_pixel_models):
    def guidance_errors(strength: float) -> list[float]:
        events = restore(photo, Settings(method=method, guidance=strength, refine=False, reg_every=0, **SMALL),
                         tiny_prior, fresh_pixel_models)
        return [e.consistency for e in events if isinstance(e, Step) and e.phase == "guidance"]

    # the INN is exactly invertible: after a full swap its coarse part is the measurement's, in the space of the
    # method's INN (pixels for the PixelINN, measured before the encoder's round trip)
    assert max(guidance_errors(1.0)) < 1e-4
    assert min(guidance_errors(0.0)) > 1e-2  # the random prior's own prediction is far from it


@pytest.mark.parametrize("method,space,channels", [("latent", "latent", 4), ("pixel", "pixel", 3)])
def test_each_mode_guides_and_refines_in_its_own_space(method, space, channels, photo, tiny_prior,
                                                       fresh_pixel_models):
    events = list(restore(photo, Settings(method=method, refine_lr=1e-2, **SMALL), tiny_prior, fresh_pixel_models))
    assert {e.space for e in events if isinstance(e, Step)} == {space}
    done = events[-1]
    if method == "pixel":  # the maps' forward model is the PixelINN refined on this image
        assert done.forward_model.channels == channels and done.forward_model is not fresh_pixel_models.inn
        pretrained = dict(fresh_pixel_models.inn.named_parameters())
        assert any(not torch.equal(p, pretrained[n]) for n, p in done.forward_model.named_parameters())


def small_problem(photo, prior, pixel, **given) -> Problem:
    settings = Settings(**(SMALL | given))
    y = to_tensor(photo)
    w, h = settings.output_size(photo.width, photo.height)
    start = torch.nn.functional.interpolate(y, size=(h, w), mode="bicubic").clamp(0, 1)
    gamma, _ = pixel.estimator.estimate(y)
    return Problem(prior, settings, y, start, start, gamma, 1, (h, w), pixel.inn)


def test_refinement_fits_the_forward_model_to_the_estimate(photo, tiny_prior, fresh_pixel_models):
    p = small_problem(photo, tiny_prior, fresh_pixel_models, refine_lr=1e-3)
    run_ = Latents(p)
    guide = LatentGuidance(p, run_)
    guide(run_.predict_z0(run_.noised, int(run_.timesteps[0])))
    before = float(coarse_error(guide.inn, guide.estimate, guide.measurement, p))
    after = float(guide.refine())
    assert after < 0.99 * before


@pytest.mark.parametrize("method", ["latent", "pixel"])
def test_a_projection_puts_the_estimate_through_the_autoencoder(method, photo, tiny_prior, fresh_pixel_models):
    settings = Settings(method=method, latent_reg="projection", reg_every=1, refine=False, **SMALL)
    events = [e for e in restore(photo, settings, tiny_prior, fresh_pixel_models) if isinstance(e, Step)]
    pairs = [(a, b) for a, b in zip(events, events[1:]) if b.phase == "regularisation"]
    assert len(pairs) == SMALL["steps"]
    for guided, regularised in pairs:
        projected = tiny_prior.encode(tiny_prior.decode(guided.latent).clamp(0, 1))
        torch.testing.assert_close(regularised.latent, projected)
        assert not torch.allclose(regularised.latent, guided.latent)


def test_spread_matching_regularises_the_latent(photo, tiny_prior, fresh_pixel_models):
    settings = Settings(latent_reg="spread", reg_every=1, refine=False, **SMALL)
    events = [e for e in restore(photo, settings, tiny_prior, fresh_pixel_models) if isinstance(e, Step)]
    pairs = [(a, b) for a, b in zip(events, events[1:]) if b.phase == "regularisation"]
    assert pairs and all(not torch.allclose(a.latent, b.latent) for a, b in pairs)
    # the mean of each channel (the measurement's colour) stays
    for a, b in pairs:
        torch.testing.assert_close(a.latent.mean(dim=(-2, -1)), b.latent.mean(dim=(-2, -1)), atol=1e-5, rtol=0)


def test_the_ddim_step_is_diffusers_ddim():
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                              clip_sample=False, set_alpha_to_one=False)
    scheduler.set_timesteps(10)
    t, t_prev = int(scheduler.timesteps[3]), int(scheduler.timesteps[4])
    a, a_prev = scheduler.alphas_cumprod[t].item(), scheduler.alphas_cumprod[t_prev].item()
    g = torch.Generator().manual_seed(0)
    z0, noise = torch.randn(1, 4, 8, 8, generator=g), torch.randn(1, 4, 8, 8, generator=g)
    z_t = a**0.5 * z0 + (1 - a) ** 0.5 * noise
    expected = scheduler.step(noise, t, z_t, eta=0.0).prev_sample
    torch.testing.assert_close(ddim_step(z_t, z0, a, a_prev, 0.0, g), expected, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------------------------- early stop

EARLY = dict(steps=5, size=(192, 160), start_detail_levels=3)  # 24x20 -> x8


def test_a_prior_that_keeps_changing_the_output_runs_every_step(photo, tiny_prior, fresh_pixel_models):
    small = photo.resize((24, 20))
    events = list(restore(small, Settings(colour_fix=False, early_stop=0.25, **EARLY), tiny_prior, fresh_pixel_models))
    done = events[-1]
    assert done.steps_taken == 5 and done.decoded and done.change.rms > 2 / 255
    assert {(e.step, e.last) for e in events if isinstance(e, Step)} == {(i, i == 5) for i in range(1, 6)}


def test_the_diffusion_stops_when_the_output_stops_moving_and_says_so(photo, tiny_prior, fresh_pixel_models):
    small = photo.resize((24, 20))
    full = run(small, Settings(**EARLY), tiny_prior, fresh_pixel_models)
    early = run(small, Settings(early_stop=0.25, **EARLY), tiny_prior, fresh_pixel_models)
    assert full.steps_taken == 5 and early.steps_taken < 5
    assert f"converged at step {early.steps_taken} of 5" in early.summary
    # what the steps it did not take would have changed is below the threshold
    assert float((full.tensor - early.tensor).pow(2).mean().sqrt()) < 0.25 / 255


def test_a_diffusion_that_moves_nothing_returns_its_start_without_decoding(photo, tiny_prior, fresh_pixel_models,
                                                                          monkeypatch):
    small = photo.resize((24, 20))
    decodes = []
    monkeypatch.setattr(tiny_prior, "decode", lambda *a, **k: decodes.append(1) or torch.zeros(0))
    # at x2 the back-projection takes away what the bands coarser than the start's three finest would change
    events = list(restore(small, Settings(early_stop=1, **(EARLY | {"size": (48, 40)})), tiny_prior,
                          fresh_pixel_models))
    done = events[-1]
    assert not done.decoded and done.steps_taken < 5 and not decodes
    assert done.change.rms < 0.5 / 255 and "the result is its start" in done.summary
    # the step it stopped at says it is the last (the demo decodes no preview of it)
    assert [e.last for e in events if isinstance(e, Step)] == [e.step == done.steps_taken for e in events
                                                              if isinstance(e, Step)]


def test_phases_are_what_the_sampler_reports(photo, tiny_prior, fresh_pixel_models):
    for settings in (Settings(steps=4, reg_every=2, scale=2), Settings(steps=3, refine=False, reg_every=2, scale=2),
                     Settings(method="sdedit", steps=2, scale=2), Settings(method="dps", steps=2, scale=2)):
        reported = [e.phase for e in restore(photo, settings, tiny_prior, fresh_pixel_models)
                    if isinstance(e, Step) and e.step == 2]
        assert tuple(reported) == phases(settings)


def test_the_prior_is_not_changed_by_a_run(photo, tiny_prior, fresh_pixel_models):
    state = {k: v.clone() for k, v in tiny_prior.latent_inn.state_dict().items()}
    devices = {m: next(m.parameters()).device for m in (fresh_pixel_models.inn, tiny_prior.latent_inn)}
    run(photo, Settings(refine_lr=1e-2, prompt="a cat", **SMALL), tiny_prior, fresh_pixel_models)
    for k, v in tiny_prior.latent_inn.state_dict().items():
        torch.testing.assert_close(v, state[k])
    assert {m: next(m.parameters()).device for m in devices} == devices
