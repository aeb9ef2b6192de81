"""Recipes (latentindigo.recipe): what differs between a saved recipe and a rerun is named."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from latentindigo import UserError, __version__, recipe
from latentindigo.imageio import save_png
from latentindigo.sampler import run
from latentindigo.settings import Settings


@pytest.fixture
def saved(tmp_path, photo, fresh_pixel_models):
    from dataclasses import replace

    from latentindigo.weights import save_weights

    # the pixel models' weights as files, as the bundled ones are
    files = []
    for name, module in (("pixel_inn", fresh_pixel_models.inn), ("restorer", fresh_pixel_models.restorer)):
        files.append(tmp_path / name / f"{name}.safetensors")
        save_weights(module, files[-1])
    pixel = replace(fresh_pixel_models, files=tuple(files))
    done = run(photo, Settings(method="faithful", scale=2, seed=3), None, pixel)
    path = save_png(done.image, tmp_path / "result.png", text=recipe.png_text(recipe.recipe(done, photo, None, pixel)))
    return path, pixel


def test_a_rerun_with_the_same_version_weights_and_input_differs_in_nothing(saved, photo):
    path, pixel = saved
    data = recipe.read_recipe(path)
    assert data["version"] == __version__ and data["method"] == "faithful" and data["prior"] is None
    assert recipe.settings_of(data) == Settings(method="faithful", scale=2, seed=3)
    assert recipe.differences(data, photo, None, pixel) == []


def test_differences_name_the_version_the_weights_and_the_input(saved, photo):
    path, pixel = saved
    data = recipe.read_recipe(path)
    data["version"] = "0.0.1"
    data["pixel_models"]["weights"]["restorer/restorer.safetensors"] = "0" * 64
    other = photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    assert recipe.differences(data, other, None, pixel) == [
        f"version 0.0.1 -> {__version__}", "the input photo", "weights restorer/restorer.safetensors"]


@pytest.mark.parametrize("text,message", [(None, "no LatentINDIGO recipe"), ("{not json", "damaged"),
                                          (json.dumps({"settings": {"colour": 1}}), "unknown settings colour")])
def test_a_png_without_a_usable_recipe_says_why_in_one_line(tmp_path, text, message):
    path = save_png(Image.new("RGB", (4, 4)), tmp_path / "x.png", text=None if text is None else {"latentindigo": text})
    with pytest.raises(UserError, match=message) as e:
        recipe.read_recipe(path)
    assert "\n" not in str(e.value)
