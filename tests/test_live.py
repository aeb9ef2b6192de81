"""The Restore tab's live realism (latentindigo.demo.live, serving.cached_start), in-process: after a run, a new
realism's start is made from the first stages the server holds, without running a network, and is the start the
rerun begins from; a new photo or size, no photo, or a bad setting says why in one line and starts nothing.
test_browser_realism.py drives it in a browser."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import replace
from types import SimpleNamespace

import gradio as gr
import numpy as np
import pytest
import torch
from PIL import Image
from test_app import photo

from latentindigo.sampler import load_pixel_models, run
from latentindigo.serving import Jobs, Models, cached_start, held_first_stages, run_events, run_method


class NetworkRan(AssertionError):
    pass


@contextmanager
def no_network_runs():
    """Within the block, any network (an nn.Module called) fails the test."""

    def refuse(module, *args, **kwargs):
        raise NetworkRan(f"{type(module).__name__} ran")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.nn.Module, "__call__", refuse)
        yield


def first_run(models: Models, image: Image.Image, **settings):
    settings = models.settings(None, method="latent", steps=2, seed=1, **settings)
    with Jobs().run("restore", None) as job:
        return settings, run_method(image, settings, models, None, job)


def test_the_start_for_a_new_realism_is_the_one_the_rerun_begins_from_and_runs_no_network(tmp_path,
                                                                                         realistic_package):
    models = Models(["tiny-random"], device="cpu")
    image = Image.open(photo(tmp_path / "a.png", 24, 18))
    settings, done = first_run(models, image, realism=0.5)
    assert not done.first_stages_reused
    for realism in (0.0, 0.3, 1.0):
        new = replace(settings, realism=realism)
        with no_network_runs():
            start = cached_start(image, new, models, None)
        with Jobs().run("restore", None) as job:
            rerun = run_method(image, new, models, None, job)
        assert rerun.first_stages_reused
        assert torch.allclose(start, rerun.first_stage, atol=1e-6), realism


def test_a_rerun_on_the_same_photo_encodes_only_its_new_start(tmp_path, realistic_package, monkeypatch):
    """R(y)'s latent, which guidance measures, is kept with the first stages: a new realism encodes its start
    only; another prior encodes both."""
    models = Models(["tiny-random"], device="cpu")
    image = Image.open(photo(tmp_path / "a.png", 24, 18))
    settings, _ = first_run(models, image, realism=0.5)
    prior = models.prior()
    encodes, encode = [], prior.encode
    monkeypatch.setattr(prior, "encode", lambda x: encodes.append(1) or encode(x))
    with Jobs().run("restore", None) as job:
        rerun = run_method(image, replace(settings, realism=0.3), models, None, job)
    assert rerun.first_stages_reused and len(encodes) == 1
    # the same run without the kept latent gives the same result
    fresh = run(image, replace(settings, realism=0.3), prior, load_pixel_models())
    assert len(encodes) == 3 and torch.equal(fresh.tensor, rerun.tensor)
    monkeypatch.setattr(prior, "name", "another")
    with Jobs().run("restore", None) as job:
        run_method(image, replace(settings, realism=0.3), models, None, job)
    assert len(encodes) == 5


def test_another_photo_or_size_never_gets_the_held_first_stages(tmp_path, realistic_package):
    models = Models(["tiny-random"], device="cpu")
    a = Image.open(photo(tmp_path / "a.png", 24, 18)).convert("RGB")
    b = a.copy()
    b.putpixel((5, 7), tuple(255 - v for v in a.getpixel((5, 7))))  # one pixel apart
    settings, _ = first_run(models, a, realism=0.5)
    assert cached_start(a, settings, models, None) is not None
    assert held_first_stages(b, settings, models, None) is None and cached_start(b, settings, models, None) is None
    assert cached_start(a, replace(settings, scale=None, size=(48, 36)), models, None) is None  # another size
    # after a run of b, b's own first stages, and none for a
    _, done_b = first_run(models, b, realism=0.5)
    assert torch.allclose(cached_start(b, settings, models, None), done_b.first_stage, atol=1e-6)
    assert cached_start(a, settings, models, None) is None


def test_a_run_without_realism_holds_no_realistic_stage():
    models = Models(["tiny-random"], device="cpu")
    image = Image.new("RGB", (20, 16), (90, 120, 30))
    settings, _ = first_run(models, image, realism=0.0)
    assert held_first_stages(image, settings, models, None).keys() == {"faithful"}
    assert cached_start(image, settings, models, None) is not None  # realism 0: the faithful stage
    assert cached_start(image, replace(settings, realism=0.4), models, None) is None  # needs the realistic stage


# ------------------------------------------------------------------------------------------- the tab's handler

def skipped(update) -> bool:
    return update == gr.skip()


def statuses_of(updates) -> list[str]:
    from latentindigo.demo.restore_tab import RESTORE_OUTPUTS

    return [str(u[RESTORE_OUTPUTS.index("status")]) for u in updates]


@pytest.fixture
def demo_server():
    import app
    from latentindigo.demo import server

    app.build_demo(["tiny-random"])
    return server


def test_after_a_run_a_new_realism_shows_its_start_at_once_then_the_rerun_begins_from_it(
        tmp_path, realistic_package, demo_server, monkeypatch):
    from latentindigo.demo import live, restore_tab
    from latentindigo.imageio import to_image
    from latentindigo.sampler import FirstStage

    runs = []  # each run's FirstStage events

    def recorded(*args, **kwargs):
        runs.append([])
        for event in run_events(*args, **kwargs):
            if isinstance(event, FirstStage):
                runs[-1].append(event)
            yield event

    monkeypatch.setattr(restore_tab, "run_events", recorded)

    path = str(photo(tmp_path / "in.png", 24, 18))
    request = SimpleNamespace(session_hash="live")
    updates = list(restore_tab.restore(path, steps=2, seed=1, realism=0.5, request=request))
    assert statuses_of(updates)[-1].startswith("**Done**")
    with no_network_runs():
        preview, status, go = live.new_start(path, None, "latent", 4.0, 0, 0, 0.25, request)
    assert go and status.startswith("**Realism 0.25**: the new start") and "\n" not in status
    assert preview["label"] == "Live preview: the start at realism 0.25"
    shown = np.asarray(Image.open(preview["value"]), dtype=float)  # (a JPEG of quality 95)
    assert shown.shape == (72, 96, 3)

    rerun = list(restore_tab.restore(path, steps=2, seed=1, realism=0.25, request=request))
    preview_index = restore_tab.RESTORE_OUTPUTS.index("preview")
    assert skipped(rerun[0][preview_index])  # the new start stays while the rerun waits for the device
    starts = [u[preview_index] for u in rerun if "First stage" in str(u[restore_tab.RESTORE_OUTPUTS.index("status")])]
    # the faithful stage is not shown first (it is shown while the realistic stage runs: that does not run now)
    assert len(starts) == 1 and len(runs[-1]) == 2 and "realism 0.25" in starts[0].label
    # the start shown: the rerun's, not the first run's
    rms = [np.sqrt(((np.asarray(to_image(run[-1].tensor), dtype=float) - shown) ** 2).mean()) for run in runs]
    assert rms[-1] < 1.5 and rms[0] > 2 * rms[-1], rms
    assert statuses_of(rerun)[-1].startswith("**Done**")


def test_with_no_first_stages_for_this_photo_a_new_realism_says_why_and_starts_nothing(
        tmp_path, realistic_package, demo_server):
    from latentindigo.demo import live, restore_tab

    a, b = str(photo(tmp_path / "a.png", 24, 18)), str(photo(tmp_path / "b.png", 18, 24))
    request = SimpleNamespace(session_hash="live")
    with no_network_runs():
        checks = {  # what the slider says: (photo, scale, width, realism) -> the status's start
            (None, 4.0, 0, 0.3): "Realism 0.3: no photo yet; upload one and press **Restore**.",
            (a, 4.0, 0, 0.3): "Realism 0.3: press **Restore** first; the server holds no first stages for this photo at "
                              "96x72",
        }
        for (path, scale, width, realism), said in checks.items():
            preview, status, go = live.new_start(path, None, "latent", scale, width, 0, realism, request)
            assert status.startswith(said) and "\n" not in status and not go and skipped(preview), status
    list(restore_tab.restore(a, steps=2, seed=1, realism=0.5, request=request))
    with no_network_runs():
        checks = {
            (b, 4.0, 0, 0.3): "Realism 0.3: press **Restore** first; the server holds no first stages for this photo "
                              "at 72x96",  # another photo
            (a, 2.0, 0, 0.3): "Realism 0.3: press **Restore** first; the server holds no first stages for this photo "
                              "at 48x36",  # another size
            (a, 9.0, 0, 0.3): "Realism 0.3: nothing runs, scale must be between 1 and 8, not 9.0.",
            (str(tmp_path / "gone.png"), 4.0, 0, 0.3): "Realism 0.3: nothing runs, ",
        }
        for (path, scale, width, realism), said in checks.items():
            preview, status, go = live.new_start(path, None, "latent", scale, width, 0, realism, request)
            assert status.startswith(said), status
            assert "\n" not in status and not go and skipped(preview), status
    with pytest.raises(gr.Error):  # the chain ends before the run
        live.go_on(False)
    live.go_on(True)


def test_a_new_realism_during_the_sessions_run_waits_for_it(tmp_path, demo_server):
    from latentindigo.demo import live

    path = str(photo(tmp_path / "a.png", 24, 18))
    with demo_server.JOBS.run("restore", "live"), no_network_runs():
        preview, status, go = live.new_start(path, None, "latent", 4.0, 0, 0, 0.7,
                                             SimpleNamespace(session_hash="live"))
    assert go and status == "Realism 0.7: runs when the current job ends." and skipped(preview)
