"""Replayable results: every PNG the CLI, the demo and batch write carries its recipe, a PNG text chunk named
`latentindigo` holding JSON (project version, method, prior and a SHA-256 of every weight file used, every
sampler setting, seed, output size, the degradation estimate and a hash of the input's pixels).

    python -m latentindigo restore IN -o OUT --recipe-from RESULT.png

reruns RESULT's recipe on IN; on the same machine it gives RESULT's pixels exactly (the sampler is seeded and
its noise drawn on the CPU), and `differences` names what no longer matches (version, weights, input).

A comparison PNG (the demo's Compare grid) carries every method's recipe instead, in a text chunk named
`latentindigo-comparison` holding {method: recipe} (keys such as "latent realism 0.33" in a realism sweep);
`--recipe-from GRID.png --method METHOD [--realism R]` replays one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from latentindigo import __version__
from latentindigo.errors import UserError
from latentindigo.imageio import pixels_hash
from latentindigo.settings import DIFFUSION_METHODS, Settings

if TYPE_CHECKING:
    from latentindigo.priors import Prior
    from latentindigo.sampler import Done, PixelModels

CHUNK = "latentindigo"
COMPARISON_CHUNK = "latentindigo-comparison"  # {method: recipe} of a comparison
REALISM_TOLERANCE = 0.005  # a realism asked for on the command line picks the recipe within this (0.33: 1/3)


def recipe(done: Done, image: Image.Image, prior: Prior | None, pixel: PixelModels) -> dict:
    """The recipe of a result: what restoring `image` needs to give `done` again."""
    uses_prior = prior is not None and done.settings.method in DIFFUSION_METHODS
    return {
        "version": __version__,
        "method": done.settings.method,
        "prior": {"spec": prior.name, "weights": weight_hashes(prior.files)} if uses_prior else None,
        "pixel_models": {"weights": weight_hashes(pixel.files_for(done.settings))},
        "settings": json.loads(json.dumps(dataclasses.asdict(done.settings))),  # tuples as lists, as JSON has them
        "seed": done.settings.seed,
        "output_size": [done.image.width, done.image.height],
        "steps_taken": done.steps_taken,
        "estimate": {k: round(float(v), 4) for k, v in dataclasses.asdict(done.estimate).items()},
        "input": {"size": [image.width, image.height], "sha256": pixels_hash(image)},
    }


def png_text(recipe: dict) -> dict[str, str]:
    """The text chunk to write with `imageio.save_png(..., text=...)`."""
    return {CHUNK: json.dumps(recipe, sort_keys=True)}


def comparison_text(recipes: dict[str, dict]) -> dict[str, str]:
    """The text chunk of a comparison PNG: every method's recipe, {method: recipe}, in the comparison's order."""
    return {COMPARISON_CHUNK: json.dumps(recipes)}


def read_recipe(path: str | Path, method: str | None = None, realism: float | None = None) -> dict:
    """The recipe in a result PNG, or in a comparison PNG the recipe of `method` (which may be left out when it
    compares one method only) at `realism` (needed where it compares a method at several, a realism sweep); a
    UserError saying why there is none."""
    name = Path(path).name
    try:
        with Image.open(path) as png:
            chunks = png.text if hasattr(png, "text") else {}
            text, comparison = chunks.get(CHUNK), chunks.get(COMPARISON_CHUNK)
    except (OSError, ValueError, SyntaxError) as e:
        raise UserError(f"cannot read a recipe from {name!r}: {' '.join(str(e).split())}") from None
    if text is None and comparison is None:
        raise UserError(f"{name!r} has no LatentINDIGO recipe (only PNGs this project wrote carry one)")
    at = "" if realism is None else f" at realism {realism:g}"
    try:
        recipes = None if comparison is None or text is not None else json.loads(comparison)
        if recipes is not None and not isinstance(recipes, dict):
            raise ValueError("not a JSON object")
        chosen = None if recipes is None else [
            key for key, r in recipes.items() if (method is None or r["method"] == method)
            and (realism is None or abs(r["settings"]["realism"] - realism) < REALISM_TOLERANCE)]
    except (ValueError, TypeError, KeyError) as e:
        raise UserError(f"the recipes in {name!r} are damaged: {' '.join(str(e).split())}") from None
    if recipes is not None:
        compared = ", ".join(recipes) or "nothing"
        if not chosen and (method is not None or realism is not None):
            raise UserError(f"{name!r} has no {method or 'such'} result{at}; it compares {compared}")
        if len(chosen) != 1:
            raise UserError(f"{name!r} is a comparison of {compared}: choose the method to replay (command line: "
                            "--method, and --realism in a realism sweep)")
    try:
        data = json.loads(text) if recipes is None else recipes[chosen[0]]
        settings = settings_of(data)
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise UserError(f"the recipe in {name!r} is damaged: {' '.join(str(e).split())}") from None
    if method is not None and settings.method != method:
        raise UserError(f"{name!r} is a {settings.method} result, not {method}")
    if realism is not None and abs(settings.realism - realism) >= REALISM_TOLERANCE:
        raise UserError(f"{name!r} is a result at realism {settings.realism:.2g}, not {realism:g}")
    return data


def settings_of(recipe: dict) -> Settings:
    """The recipe's sampler settings, seed and output size."""
    given = dict(recipe["settings"])
    if given.get("method") == "restorer":  # its name before the realistic first stage came (0.1 recipes)
        given["method"] = "faithful"
    if "prompt" not in given and (recipe.get("prior") or {}).get("prompt"):  # 0.2 recipes kept it with the prior
        given["prompt"], given["negative_prompt"] = recipe["prior"]["prompt"]
    unknown = set(given) - {f.name for f in dataclasses.fields(Settings)}
    if unknown:
        raise ValueError(f"unknown settings {', '.join(sorted(unknown))}")
    if given.get("size") is not None:
        given["size"] = tuple(given["size"])
    return Settings(**given)


def differences(saved: dict, image: Image.Image, prior: Prior | None, pixel: PixelModels) -> list[str]:
    """What differs between a saved recipe and a rerun of it on `image` with these models: one phrase each
    (an empty list: the rerun gives the saved pixels)."""
    found = []
    if saved.get("version") != __version__:
        found.append(f"version {saved.get('version')} -> {__version__}")
    if saved.get("input", {}).get("sha256") not in (None, pixels_hash(image)):
        found.append("the input photo")
    weights = dict(saved.get("pixel_models", {}).get("weights", {}))
    current = weight_hashes(pixel.files_for(settings_of(saved)))
    if saved.get("prior") and prior is not None:
        weights |= saved["prior"].get("weights", {})
        current |= weight_hashes(prior.files)
        if saved["prior"].get("spec") != prior.name:
            found.append(f"prior {saved['prior'].get('spec')} -> {prior.name}")
    for name in sorted(set(weights) | set(current)):
        if weights.get(name) != current.get(name):
            found.append(f"weights {name}" + ("" if name in current else " (missing)"))
    return found


def weight_hashes(files: tuple[Path, ...]) -> dict[str, str]:
    """{folder/file name: SHA-256} of weight files."""
    return {f"{f.parent.name}/{f.name}": file_hash(f, f.stat().st_size, f.stat().st_mtime_ns) for f in files}


@cache
def file_hash(path: Path, size: int, mtime_ns: int) -> str:
    """SHA-256 of a file, once per process for each version of it (size and time are part of the key)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()

