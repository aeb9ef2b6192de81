"""The Compare tab in-process, with the tiny random prior: each result's numbers against direct calls, the first
stages run once for all methods, the comparison PNG and its recipes, and bad input (no method, a failed method,
Stop mid-comparison). test_browser_compare.py drives the tab in a browser; test_app.py its API."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import numpy as np
import pytest
from PIL import Image
from test_app import photo

from latentindigo import UserError
from latentindigo.recipe import CHUNK, COMPARISON_CHUNK, read_recipe, settings_of

OUT = None  # COMPARE_OUTPUTS' positions, set by the fixture


@pytest.fixture(scope="module")
def tab():
    import app
    from latentindigo.demo import compare_tab

    app.build_demo(["tiny-random"])  # (sets server.MODELS)
    global OUT
    OUT = {name: i for i, name in enumerate(compare_tab.COMPARE_OUTPUTS)}
    return compare_tab


def compare(tab, folder: Path, image: Path, session: str = "compare", each=None, **settings) -> list[tuple]:
    """Every update of a compare job, with its files copied to `folder` (the job removes its own when it ends).
    `each(update)` is called on each update as it comes."""
    updates = []
    request = SimpleNamespace(session_hash=session)
    for update in tab.compare(str(image), request=request, progress=lambda *a, **k: None, **settings):
        update = list(update)
        gallery, grid = update[OUT["gallery"]], update[OUT["grid"]]
        if isinstance(gallery, list):
            update[OUT["gallery"]] = [(str(shutil.copy(path, folder / Path(path).name)), caption)
                                      for path, caption in gallery]
        if isinstance(grid, str):
            update[OUT["grid"]] = str(shutil.copy(grid, folder / Path(grid).name))
        if isinstance(update[OUT["slider"]], tuple):
            update[OUT["slider"]] = tuple(str(shutil.copy(path, folder / Path(path).name))
                                          for path in update[OUT["slider"]])
        updates.append(update)
        if each is not None:
            each(update)
    return updates


def pixels(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def test_the_numbers_are_those_of_direct_calls(tab, tmp_path):
    from latentindigo.demo import server
    from latentindigo.maps import maps
    from latentindigo.niqe import niqe
    from latentindigo.sampler import load_pixel_models, run

    source = photo(tmp_path / "in.png", 56, 56)  # to 224x224: four of NIQE's 96x96 patches
    methods = ["latent", "faithful", "bicubic"]
    final = compare(tab, tmp_path, source, methods=methods, steps=2, seed=3)[-1]
    table, plot = final[OUT["table"]], final[OUT["plot"]]
    rows = {row["method"]: row for row in table.to_dict("records")}
    assert list(table.columns) == ["method", "seconds ↓", "consistency (dB) ↑", "NIQE ↓",
                                   "changed (/255 RMS)", "moved (%)"]
    assert list(rows) == ["LatentINN", "faithful (restorer)", "bicubic"]
    gallery = {caption.split(" · ")[0]: path for path, caption in final[OUT["gallery"]]}
    with Image.open(source) as im:
        image = im.convert("RGB")
    for method, name in zip(methods, rows):
        settings = server.MODELS.settings(None, method=method, steps=2, seed=3, scale=4.0)
        done = run(image, settings, server.MODELS.prior(), load_pixel_models())
        assert np.array_equal(pixels(gallery[name]), np.asarray(done.image)), name  # the same result
        row = rows[name]
        assert row["consistency (dB) ↑"] == pytest.approx(maps(done).consistency_psnr, abs=0.006), name
        assert row["NIQE ↓"] == pytest.approx(niqe(np.asarray(done.image)), abs=0.006), name
        assert row["seconds ↓"] > 0
        if method == "latent":
            assert row["changed (/255 RMS)"] == pytest.approx(done.change.rms * 255, abs=0.006)
            assert row["moved (%)"] == pytest.approx(done.change.moved * 100, abs=0.06)
            assert done.change.rms > 0
        else:  # no diffusion: no change to report
            assert math.isnan(row["changed (/255 RMS)"]) and math.isnan(row["moved (%)"])
        # the scatter: one point per method, NIQE against consistency
        point = plot[(plot["method"] == name) & plot["NIQE"].notna()]
        assert len(point) == 1
        assert point["consistency (dB)"].item() == pytest.approx(row["consistency (dB) ↑"], abs=0.006)
        assert point["NIQE"].item() == pytest.approx(row["NIQE ↓"], abs=0.006)
    # every method is in the plot's first data (the frontend colours only those)
    assert list(plot["method"][:3]) == list(rows) and plot[:3]["NIQE"].isna().all()


def test_naturalness_of_a_large_result_is_that_of_its_centre_and_none_below_two_patches():
    from latentindigo.comparison import NIQE_SIDE, naturalness
    from latentindigo.niqe import niqe

    rng = np.random.default_rng(0)
    large = rng.integers(0, 256, (NIQE_SIDE + 200, NIQE_SIDE + 100, 3), dtype=np.uint8)
    centre = large[100:100 + NIQE_SIDE, 50:50 + NIQE_SIDE]
    assert naturalness(Image.fromarray(large)) == niqe(centre)
    assert naturalness(Image.fromarray(large[:96, :191])) is None
    assert naturalness(Image.fromarray(large[:96, :192])) == niqe(large[:96, :192])


def test_the_first_stages_run_once_for_all_methods_of_a_comparison(tab, tmp_path, monkeypatch):
    from latentindigo import sampler

    calls = []
    first_stage = sampler.restore_first_stage
    monkeypatch.setattr(sampler, "restore_first_stage", lambda *a, **k: calls.append(1) or first_stage(*a, **k))
    final = compare(tab, tmp_path, photo(tmp_path / "once.png", 20, 16),
                    methods=["first-stage", "faithful", "latent", "sdedit"], steps=2, seed=1, scale=2)[-1]
    assert len(final[OUT["gallery"]]) == 4
    assert len(calls) == 1


def test_the_comparison_png_holds_every_result_and_each_methods_recipe(tab, tmp_path):
    from latentindigo.demo import server
    from latentindigo.sampler import load_pixel_models, run

    source = photo(tmp_path / "in.png", 24, 18)
    final = compare(tab, tmp_path, source, methods=["bicubic", "latent", "inn"], steps=2, seed=5, scale=2)[-1]
    grid = final[OUT["grid"]]
    assert Path(grid).name == "in-comparison-seed5.png"
    with Image.open(grid) as im:
        assert CHUNK not in im.text  # a comparison, not one result
        recipes = json.loads(im.text[COMPARISON_CHUNK])
    assert list(recipes) == ["bicubic", "latent", "inn"]
    for path, _ in final[OUT["gallery"]]:
        own = read_recipe(path)
        assert recipes[own["method"]] == own  # each method's recipe is its own PNG's
        assert read_recipe(grid, method=own["method"]) == own
    # replaying one method from the comparison gives its result
    with Image.open(source) as im:
        done = run(im.convert("RGB"), settings_of(read_recipe(grid, method="latent")), server.MODELS.prior(),
                   load_pixel_models())
    latent = next(path for path, caption in final[OUT["gallery"]] if caption.startswith("LatentINN"))
    assert np.array_equal(np.asarray(done.image), pixels(latent))
    with pytest.raises(UserError, match="is a comparison of bicubic, latent, inn: choose the method"):
        read_recipe(grid)
    with pytest.raises(UserError, match="has no pixel result; it compares bicubic, latent, inn"):
        read_recipe(grid, method="pixel")
    with pytest.raises(UserError, match="is a latent result, not bicubic"):
        read_recipe(latent, method="bicubic")
    # the slider's default pair: bicubic and the default method, at full resolution
    slider = final[OUT["slider"]]
    assert [Path(p).name for p in slider] == ["bicubic.png", "latent.png"]
    assert (final[OUT["left"]].value, final[OUT["right"]].value) == ("bicubic", "latent")
    assert pixels(slider[1]).shape[:2] == (36, 48)
    # another pair, from the gallery the page shows: nothing runs again
    other = tab.show_pair("inn", "latent", final[OUT["gallery"]])
    assert [Path(p).name for p in other] == ["inn.png", "latent.png"]
    assert tab.show_pair("pixel", "latent", final[OUT["gallery"]]) == gr.skip()


def test_a_realism_sweep_shows_each_start_from_one_run_of_the_first_stages(tab, tmp_path, monkeypatch):
    from latentindigo import sampler
    from latentindigo.demo import server
    from latentindigo.settings import REALISM_SWEEP

    calls = []
    for name in ("restore_first_stage", "realistic_estimate"):
        network = getattr(sampler, name)
        monkeypatch.setattr(sampler, name, lambda *a, _n=name, _f=network, **k: calls.append(_n) or _f(*a, **k))
    source = photo(tmp_path / "sweep.png", 20, 16)
    final = compare(tab, tmp_path, source, methods=["bicubic", "latent"], steps=2, seed=6, scale=2, sweep=True)[-1]
    swept = [f"LatentINN, realism {r}" for r in ("0", "0.33", "0.67", "1")]
    assert [c.split(" · ")[0] for _, c in final[OUT["gallery"]]] == ["bicubic", *swept]
    assert list(final[OUT["table"]]["method"]) == ["bicubic", *swept]
    assert sorted(calls) == ["realistic_estimate", "restore_first_stage"]  # once for the four starts
    assert final[OUT["status"]].startswith("**Done**: 5 results, seed 6")
    results = [pixels(path) for path, _ in final[OUT["gallery"]][1:]]
    assert all(not np.array_equal(a, b) for i, a in enumerate(results) for b in results[i + 1:])
    # each result's recipe, at its realism, in the grid; one replays to its pixels given method and realism
    grid = final[OUT["grid"]]
    with Image.open(grid) as im:
        recipes = json.loads(im.text[COMPARISON_CHUNK])
    assert list(recipes) == ["bicubic", "latent realism 0", "latent realism 0.33", "latent realism 0.67",
                             "latent realism 1"]
    assert [recipes[k]["settings"]["realism"] for k in list(recipes)[1:]] == list(REALISM_SWEEP)
    saved = read_recipe(grid, method="latent", realism=0.33)
    assert saved == recipes["latent realism 0.33"]
    with Image.open(source) as im:
        done = sampler.run(im.convert("RGB"), settings_of(saved), server.MODELS.prior(), sampler.load_pixel_models())
    assert np.array_equal(np.asarray(done.image), results[1])
    with pytest.raises(UserError, match="is a comparison of bicubic, latent realism 0, .*--realism in a realism sweep"):
        read_recipe(grid, method="latent")
    with pytest.raises(UserError, match="has no latent result at realism 0.5; it compares bicubic, latent realism 0,"):
        read_recipe(grid, method="latent", realism=0.5)
    # the slider: bicubic against the last realism; any two swept results without a rerun
    assert (final[OUT["left"]].value, final[OUT["right"]].value) == ("bicubic", "latent realism 1")
    other = tab.show_pair("latent realism 0", "latent realism 0.67", final[OUT["gallery"]])
    assert [Path(p).name for p in other] == ["latent-realism-0.png", "latent-realism-0.67.png"]


def test_the_grid_shows_large_results_as_their_centre_at_one_to_one():
    from latentindigo.comparison import VIEW, grid

    rng = np.random.default_rng(1)
    results = [rng.integers(0, 256, (700, 900, 3), dtype=np.uint8) for _ in range(2)]
    canvas = np.asarray(grid(Image.new("RGB", (225, 175)), [(f"m{i}", Image.fromarray(r), ["1.0 s"])
                                                             for i, r in enumerate(results)], ["title"]))
    for result in results:
        assert contains(canvas, result[350 - VIEW // 2:350 + VIEW // 2, 450 - VIEW // 2:450 + VIEW // 2])


def contains(canvas: np.ndarray, part: np.ndarray) -> bool:
    """Whether `part` (an image with some texture) is in `canvas` pixel for pixel: where its first 16 pixels are
    (once), the whole of it is."""
    windows = np.lib.stride_tricks.sliding_window_view(canvas, (1, 16, 3))[..., 0, :, :]
    rows, cols = np.nonzero(np.all(windows == part[0, :16], axis=(-2, -1)).squeeze(-1))
    if len(rows) != 1:
        return False
    y, x = rows[0], cols[0]
    return np.array_equal(canvas[y:y + part.shape[0], x:x + part.shape[1]], part)


def test_no_method_ticked_is_a_one_line_error(tab, tmp_path):
    with pytest.raises(gr.Error, match="choose at least one method"):
        compare(tab, tmp_path, photo(tmp_path / "in.png", 16, 16), methods=[])


def test_a_failed_method_is_named_in_one_line_and_the_others_are_shown(tab, tmp_path, monkeypatch):
    from latentindigo import sampler

    def broken(*args, **kwargs):
        raise RuntimeError("CUDA out of memory.\nTried to allocate 2 GiB")

    monkeypatch.setattr(sampler, "zero_details", broken)  # the INN-only method's
    updates = compare(tab, tmp_path, photo(tmp_path / "in.png", 20, 16), methods=["bicubic", "inn", "faithful"],
                      steps=2, seed=2, scale=2)
    line = "INN only failed: RuntimeError: CUDA out of memory. Tried to allocate 2 GiB"
    assert line in [u[OUT["status"]] for u in updates]
    final = updates[-1]
    status = final[OUT["status"]]
    assert status.startswith("**Done**: 2 of 3 methods, seed 2; " + line) and "\n" not in status
    assert [c.split(" · ")[0] for _, c in final[OUT["gallery"]]] == ["bicubic", "faithful (restorer)"]
    assert list(final[OUT["table"]]["method"]) == ["bicubic", "faithful (restorer)"]
    with Image.open(final[OUT["grid"]]) as im:
        assert list(json.loads(im.text[COMPARISON_CHUNK])) == ["bicubic", "faithful"]
    assert [choice[1] for choice in final[OUT["left"]].choices] == ["bicubic", "faithful"]

    # when every method fails, one line names each failure
    with pytest.raises(gr.Error) as error:
        compare(tab, tmp_path, photo(tmp_path / "in.png", 20, 16), methods=["inn"], steps=2, seed=2, scale=2)
    assert error.value.message == f"every method failed: {line}"


def test_stop_mid_comparison_keeps_what_finished_and_the_grid_covers_it(tab, tmp_path):
    from latentindigo.demo import server

    def stop_after_the_first(update):
        if str(update[OUT["status"]]).startswith("bicubic done"):
            assert server.JOBS.stop("stopper") is not None

    updates = compare(tab, tmp_path, photo(tmp_path / "in.png", 20, 16), session="stopper",
                      each=stop_after_the_first, methods=["bicubic", "latent", "faithful"], steps=50, seed=4, scale=2)
    final = updates[-1]
    status = final[OUT["status"]]
    assert status.startswith("**Stopped**: 1 of 3 methods, seed 4; Stopped during LatentINN: it and the methods "
                             "after it are not shown"), status
    assert [c.split(" · ")[0] for _, c in final[OUT["gallery"]]] == ["bicubic"]
    with Image.open(final[OUT["grid"]]) as im:
        assert list(json.loads(im.text[COMPARISON_CHUNK])) == ["bicubic"]
        assert read_recipe(final[OUT["grid"]])["method"] == "bicubic"  # one method: no need to name it


def test_the_labs_numbers_are_those_of_direct_calls(tab, tmp_path):
    """The Degradation lab: PSNR and SSIM against the clean photo, and NIQE, of each result; a scatter of them."""
    from latentindigo.demo import lab_tab, server
    from latentindigo.imageio import to_tensor
    from latentindigo.metrics import psnr, ssim
    from latentindigo.niqe import niqe
    from latentindigo.sampler import load_pixel_models, run

    clean = photo(tmp_path / "clean.png", 200, 192)
    request = SimpleNamespace(session_hash="lab")
    for update in lab_tab.lab(str(clean), scale=4, blur=1.0, noise=2, jpeg=90, methods=["bicubic", "faithful"],
                              steps=2, seed=1, request=request, progress=lambda *a, **k: None):
        if isinstance(update[0], str):
            with Image.open(update[0]) as im:  # (read while the job's files exist)
                low = im.convert("RGB")
    _, _, table, status, plot = update
    assert list(table.columns) == ["method", "seconds ↓", "PSNR (dB) ↑", "SSIM ↑", "NIQE ↓"]
    with Image.open(clean) as im:
        truth = to_tensor(im.convert("RGB"))
    for method, row in zip(["bicubic", "faithful"], table.to_dict("records")):
        settings = server.MODELS.settings(None, method=method, steps=2, seed=1, size=(200, 192))
        done = run(low, settings, None, load_pixel_models())
        assert row["PSNR (dB) ↑"] == pytest.approx(psnr(done.tensor, truth), abs=0.006)
        assert row["SSIM ↑"] == pytest.approx(ssim(done.tensor, truth), abs=0.00006)
        assert row["NIQE ↓"] == pytest.approx(niqe(np.asarray(done.image)), abs=0.006)
        point = plot[(plot["method"] == row["method"]) & plot["NIQE"].notna()]
        assert (point["PSNR (dB)"].item(), point["NIQE"].item()) == pytest.approx(
            (row["PSNR (dB) ↑"], row["NIQE ↓"]), abs=0.006)
    assert list(table["method"]) == ["bicubic", "faithful (restorer)"] and "best PSNR" in status
