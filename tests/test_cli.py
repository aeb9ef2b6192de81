"""The command line: one-line errors for bad files and bad parameters, no tracebacks."""

import subprocess
import sys

import pytest
from PIL import Image


def cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "latentindigo", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def test_help_lists_the_commands():
    out = cli("--help").stdout
    for command in ("degrade", "restore", "train", "calibrate"):
        assert command in out


@pytest.mark.parametrize("content,reason", [(b"", "empty"), (b"hello, not an image", "not"),
                                            (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "SVG")])
def test_bad_files_get_one_line(tmp_path, content, reason):
    bad = tmp_path / "bad.png"
    bad.write_bytes(content)
    result = cli("restore", bad, "-o", tmp_path / "out.png", "--method", "bicubic")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "bad.png" in lines[0] and reason.lower() in lines[0].lower()
    assert not (tmp_path / "out.png").exists()


@pytest.mark.parametrize("args,message", [(["--steps", "0"], "steps"), (["--scale", "20"], "scale"),
                                          (["--size", "99999x99999"], "megapixels"),
                                          (["--size", "10x10", "--scale", "2"], "not both")])
def test_bad_parameters_get_one_line(tmp_path, args, message):
    Image.new("RGB", (20, 16), "gray").save(tmp_path / "in.png")
    result = cli("restore", tmp_path / "in.png", "-o", tmp_path / "out.png", "--method", "bicubic", *args)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr


def test_restore_writes_the_requested_size_and_its_maps(tmp_path):
    Image.new("RGB", (20, 16), "gray").save(tmp_path / "in.png")
    result = cli("restore", tmp_path / "in.png", "-o", tmp_path / "out.png", "--method", "latent", "--prior",
                 "tiny-random", "--steps", "2", "--size", "61x33", "--quiet", "--maps", tmp_path / "maps")
    assert result.returncode == 0, result.stderr
    assert Image.open(tmp_path / "out.png").size == (61, 33)
    assert Image.open(tmp_path / "maps" / "out-consistency.png").size == (20, 16)  # the input's pixels
    for name in ("consistency-overlay", "invented", "invented-overlay"):
        assert Image.open(tmp_path / "maps" / f"out-{name}.png").size == (61, 33)
    assert "consistency with the input" in result.stdout


def test_evaluate_prints_a_row_per_method_and_writes_json(tmp_path, photo):
    import json

    for folder in ("gt", "lq"):
        (tmp_path / folder).mkdir()
    for name in ("a", "b"):
        photo.save(tmp_path / "gt" / f"{name}.png")
        photo.resize((15, 12), Image.Resampling.BICUBIC).save(tmp_path / "lq" / f"{name}.png")
    result = cli("evaluate", "--gt", tmp_path / "gt", "--lq", tmp_path / "lq", "--methods", "bicubic", "inn",
                 "--json", tmp_path / "table.json", "--quiet")
    assert result.returncode == 0, result.stderr
    rows = [line.split("|")[1].strip() for line in result.stdout.splitlines()[2:]]
    assert rows == ["bicubic", "inn", "ground truth"]
    table = json.loads((tmp_path / "table.json").read_text())
    # the input is a clean downscale of the truth: the truth is consistent with it
    assert table["ground truth"]["consistency"] > 30 and table["ground truth"]["psnr"] == 100
    assert table["bicubic"]["consistency"] > 30  # bicubic up then down is close to the input
    assert table["bicubic"]["psnr"] < 100  # and the lost detail is not back


def test_evaluate_without_pairs_is_one_line(tmp_path):
    for folder in ("gt", "lq"):
        (tmp_path / folder).mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "gt" / "a.png")
    Image.new("RGB", (4, 4)).save(tmp_path / "lq" / "other.png")
    result = cli("evaluate", "--gt", tmp_path / "gt", "--lq", tmp_path / "lq", "--methods", "bicubic")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "ground truth of the same name" in result.stderr


def test_sampler_options_left_out_are_the_priors_tuned_settings(tmp_path):
    from latentindigo.__main__ import build_parser, settings_from_args
    from latentindigo.settings import TUNED_FILE

    (tmp_path / TUNED_FILE).write_text('{"eta": 1.0, "reg_every": 3, "refine": true}')

    def settings(*args):
        return settings_from_args(build_parser().parse_args(["restore", "in.png", "-o", "out.png", "--prior",
                                                             str(tmp_path), *args]))

    assert (settings().eta, settings().reg_every, settings().steps) == (1.0, 3, 10)
    given = settings("--eta", "0", "--no-refine", "--latent-reg", "projection", "--steps", "4")
    assert (given.eta, given.refine, given.latent_reg, given.reg_every, given.steps) == (0.0, False, "projection", 3, 4)


def test_a_result_carries_its_recipe_and_recipe_from_reproduces_its_bytes(tmp_path, photo):
    import json

    from latentindigo import __version__

    photo.save(tmp_path / "in.png")
    first, again = tmp_path / "first.png", tmp_path / "again.png"
    result = cli("restore", tmp_path / "in.png", "-o", first, "--method", "latent", "--prior", "mini", "--steps", "3",
                 "--scale", "2", "--seed", "7", "--eta", "0.5", "--quiet")
    assert result.returncode == 0, result.stderr
    recipe = json.loads(Image.open(first).text["latentindigo"])
    assert recipe["version"] == __version__ and recipe["method"] == "latent" and recipe["seed"] == 7
    assert recipe["settings"]["steps"] == 3 and recipe["settings"]["eta"] == 0.5
    assert recipe["output_size"] == [90, 74] and recipe["input"]["size"] == [45, 37]
    assert recipe["prior"]["spec"] == "mini"
    assert {"unet/diffusion_pytorch_model.safetensors", "restorer/restorer.safetensors"} <= (
        set(recipe["prior"]["weights"]) | set(recipe["pixel_models"]["weights"]))
    # other options are the recipe's, not the command line's defaults
    result = cli("restore", tmp_path / "in.png", "-o", again, "--recipe-from", first, "--quiet")
    assert result.returncode == 0 and "warning" not in result.stderr, result.stderr
    assert again.read_bytes() == first.read_bytes()


def test_recipe_from_a_png_without_one_is_a_one_line_error(tmp_path, photo):
    photo.save(tmp_path / "plain.png")
    result = cli("restore", tmp_path / "plain.png", "-o", tmp_path / "out.png", "--recipe-from",
                 tmp_path / "plain.png")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no LatentINDIGO recipe" in lines[0]
    assert not (tmp_path / "out.png").exists()


def test_recipe_from_a_comparison_png_replays_the_method_named(tmp_path, photo):
    """A comparison PNG (the demo's Compare grid) holds every method's recipe: --method picks the one to replay,
    which then gives that method's own result, as replaying its own PNG does."""
    from latentindigo.imageio import save_png
    from latentindigo.recipe import comparison_text, read_recipe

    photo.save(tmp_path / "in.png")
    own = {}
    for method in ("bicubic", "faithful"):
        own[method] = tmp_path / f"{method}.png"
        result = cli("restore", tmp_path / "in.png", "-o", own[method], "--method", method, "--scale", "2",
                     "--seed", "3", "--quiet")
        assert result.returncode == 0, result.stderr
    grid = save_png(Image.new("RGB", (8, 8)), tmp_path / "grid.png",
                    text=comparison_text({m: read_recipe(path) for m, path in own.items()}))
    again = tmp_path / "again.png"
    result = cli("restore", tmp_path / "in.png", "-o", again, "--recipe-from", grid, "--method", "faithful",
                 "--quiet")
    assert result.returncode == 0 and "warning" not in result.stderr, result.stderr
    assert again.read_bytes() == own["faithful"].read_bytes()
    for args, message in [((), "is a comparison of bicubic, faithful: choose the method to replay (command line: "
                                "--method, and --realism in a realism sweep)"),
                          (("--method", "latent"), "has no latent result; it compares bicubic, faithful"),
                          (("--method", "faithful", "--realism", "0.5"),
                           "has no faithful result at realism 0.5; it compares bicubic, faithful")]:
        result = cli("restore", tmp_path / "in.png", "-o", tmp_path / "out.png", "--recipe-from", grid, *args)
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], lines
