"""LatentINDIGO demo: restore low-quality photos in the browser, or through the API.

    python app.py                                     # http://127.0.0.1:7860 with the bundled `mini` prior
    python app.py --prior tiny-random --port 7861     # tiny random prior (tests, UI work), another port
    python app.py --prior ./my-prior --host 0.0.0.0   # a diffusers folder, served to the network

Tabs: Restore (one photo, with a live preview of the sampler), Compare (one photo and seed through several
methods), Degradation lab (degrade a clean photo, restore it, PSNR/SSIM against the original).
API endpoints: /restore and /compare stream their updates, /lab, /stop (ends this session's run).
Every option has an environment variable too: `python app.py --help`.

The page is served before torch and the library are imported (that takes seconds, diffusers more): they are
imported where they are used, and a thread loads the default prior right after the launch.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import threading
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

import gradio as gr
import pandas as pd
from PIL import Image

from latentindigo import UserError
from latentindigo.serving import (Jobs, Models, PreviewPacer, busy_note, duration, gpu_seconds, method_runs,
                                  pick_seed, read_photo, run_method, scratch_folder)
from latentindigo.settings import (ASSETS, DIFFUSION_METHODS, MAX_SCALE, Settings, local_folder, max_output_pixels,
                                   output_size, realistic_package)

try:  # Hugging Face ZeroGPU: a GPU is attached only while a decorated job runs
    import spaces
except ImportError:
    spaces = None

if TYPE_CHECKING:
    from latentindigo.priors import Prior

EXAMPLES = ASSETS / "examples"
# the sampler settings the Restore tab's controls set; their defaults are the chosen prior's tuned settings
TUNED_CONTROLS = ("realism", "guidance", "steps", "refine", "refine_lr", "reg_every", "reg_strength", "latent_reg",
                  "start", "eta", "colour_fix")
# the controls a result PNG's recipe sets
RECIPE_CONTROLS = ("prior", "mode", "scale", "width", "height", "seed", "prompt") + TUNED_CONTROLS
LATENT_REGS = [("spread matching (free)", "spread"), ("projection through the VAE", "projection")]

# Priors the dropdown always offers: name -> label. Any other spec comes in through --prior or
# LATENTINDIGO_PRIORS. sd21 is offered everywhere: without a network and a cached copy, choosing it says how
# to pre-download it.
NAMED_PRIORS = {
    "mini": "mini (bundled, runs on a CPU)",
    "sd21": "Stable Diffusion 2.1-base (GPU; ~2.6 GB download on first use)",
}
# A click while the tab's run is still going is kept and runs next (gradio's default drops it): right after
# Stop, the stopped run may not have ended in the browser yet, and the user's next Run must not be lost.
RUN_TRIGGER = "always_last"
MODES = [("LatentINN", "latent"), ("PixelINN", "pixel")]  # restore tab: where the INN guides
METHOD_NAMES = {"latent": "LatentINN", "pixel": "PixelINN", "first-stage": "first stage (the start)",
                "faithful": "faithful (restorer)", "realistic": "realistic (Real-ESRGAN)", "inn": "INN only",
                "bicubic": "bicubic", "sdedit": "SDEdit", "dps": "DPS"}
COMPARE_METHODS = ("latent", "pixel", "first-stage", "faithful", "realistic", "inn", "bicubic", "sdedit")
# the fidelity-realism presets: the realism control and the sampler's fresh noise (none where only fidelity counts)
LOOKS = ("Fidelity", "Balanced", "Realistic")
PHASE_COLOURS = {"guidance": "#4f46e5", "refinement": "#f59e0b", "regularisation": "#10b981"}
MAX_UPLOAD = "64mb"
UPDATE_EVERY = 0.25  # seconds between streamed status/plot updates (previews and the result always go)


# ------------------------------------------------------------------------------------------- configuration

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ.get
    p = argparse.ArgumentParser(description="LatentINDIGO demo (Gradio). Flags win over environment variables.")
    p.add_argument("--host", default=env("GRADIO_SERVER_NAME", "127.0.0.1"),
                   help="address to serve on, 0.0.0.0 for every interface (env GRADIO_SERVER_NAME; 127.0.0.1)")
    p.add_argument("--port", type=int, default=env("GRADIO_SERVER_PORT", "7860"),
                   help="port (env GRADIO_SERVER_PORT; 7860)")
    p.add_argument("--prior", action="append", metavar="SPEC",
                   help="offer this prior too: a diffusers folder, a hub id, tiny-random or sd21-random; repeatable, "
                        "the first is the default (env LATENTINDIGO_PRIORS, comma-separated)")
    p.add_argument("--device", default=env("LATENTINDIGO_DEVICE"),
                   help="torch device of the priors (env LATENTINDIGO_DEVICE; cuda when available, else cpu)")
    p.add_argument("--threads", type=int, default=env("LATENTINDIGO_THREADS", "0"),
                   help="torch CPU threads, e.g. 1 on a machine busy with other work (env LATENTINDIGO_THREADS; "
                        "0: torch's default)")
    p.add_argument("--max-queue", type=int, default=env("LATENTINDIGO_MAX_QUEUE", "16"),
                   help="jobs that may wait for the device; more are turned away (env LATENTINDIGO_MAX_QUEUE; 16)")
    p.add_argument("--calibrate", action=argparse.BooleanOptionalAction,
                   default={"1": True, "0": False}.get(env("LATENTINDIGO_CALIBRATE", "")),
                   help="calibrate the default prior's LatentINN at start-up if its VAE has none (cached; minutes on "
                        "a GPU); --no-calibrate: never (default: on first use when a GPU is present; env "
                        "LATENTINDIGO_CALIBRATE=1/0)")
    p.add_argument("--max-output-pixels", type=int, default=env("LATENTINDIGO_MAX_OUTPUT_PIXELS"),
                   help="largest output a job may ask for (env LATENTINDIGO_MAX_OUTPUT_PIXELS; 4096x4096)")
    args = p.parse_args(argv)
    if args.prior is None:
        args.prior = [s.strip() for s in env("LATENTINDIGO_PRIORS", "").split(",") if s.strip()]
    if args.max_queue < 1:
        p.error("--max-queue must be at least 1")
    if args.max_output_pixels is not None:
        if args.max_output_pixels < 1:
            p.error("--max-output-pixels must be positive")
        os.environ["LATENTINDIGO_MAX_OUTPUT_PIXELS"] = str(args.max_output_pixels)  # read by Settings.check
    return args


def offered_priors(extra: list[str]) -> list[tuple[str, str]]:
    """Dropdown choices (label, spec): the flags' specs first (the first is the default), then the named
    priors."""
    choices = {spec: spec for spec in extra} | NAMED_PRIORS
    return [(label, spec) for spec, label in choices.items()]


MODELS = Models([])  # replaced by build_demo
JOBS = Jobs()


def session(request: gr.Request | None) -> str | None:
    return request.session_hash if request is not None else None


# the browser's clock (ms) when a run or a Stop is sent: Stop also ends this session's runs sent before it that
# still wait in the queue (the server cannot reach those: gradio has not called them yet), and never one sent after
SENT_AT = "(...inputs) => [...inputs.slice(0, -1), Date.now()]"


def stopper(kind: str):
    """The Stop button of one tab. It ends the run through its job only, so that the run ends normally in the
    browser, which then starts a Run clicked meanwhile: gradio's `cancels` (6.31) lost that click, or, when the
    click went through, cancelled the new run instead."""

    def stop_tab(at: float | None, request: gr.Request):
        return (JOBS.stop(session(request), kind, at)
                or "Nothing is running; a run of yours still waiting for the device will not start.")

    return stop_tab


def stop(request: gr.Request) -> str:
    """End this session's running job at its next step (gradio_client: call it from the job's Client)."""
    return JOBS.stop(session(request)) or "Nothing is running."


def user_errors(fn):
    """Turn the library's UserError (a bad file, a bad setting) into a gr.Error with its one-line message,
    and any other failure into a one-line gr.Error (with the traceback in the server log)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):

        try:
            return (yield from fn(*args, **kwargs))
        except gr.Error:
            raise
        except UserError as e:
            raise gr.Error(str(e), print_exception=False) from None
        except Exception as e:
            traceback.print_exc()
            message = " ".join(f"{type(e).__name__}: {e}".split())
            raise gr.Error(f"the restoration failed ({message[:300]})", print_exception=False) from None

    return wrapper


# ------------------------------------------------------------------------------------------- inputs

class ImageInput(gr.Image):
    """gr.Image that hands the function the uploaded file's path without decoding it (gr.Image would open it
    with Pillow first), so that `load_image` checks it: size limit before decoding, EXIF, 16 bits, CMYK,
    transparency, animations, and one-line messages for files it cannot read."""

    is_template = True  # the frontend is gr.Image's

    def preprocess(self, payload):
        if payload is not None and payload.path and not (payload.url or "").startswith("data:"):
            return payload.path
        return super().preprocess(payload)


def photo_input(label: str, elem_id: str) -> ImageInput:
    """A photo input that decodes each upload at once: a file that cannot be read is refused there, with its
    one-line message, and the previous photo comes back (not at Restore, after a purple strip and a size line)."""
    photo = ImageInput(type="filepath", format="png", image_mode=None, sources=["upload", "clipboard"], label=label,
                       height=240, elem_id=elem_id)
    accepted = gr.State(None)  # the last photo that decoded
    # (queued: a warning reaches the browser through the queue's messages)
    photo.upload(check_upload, [photo, accepted], [photo, accepted], show_progress="hidden", concurrency_limit=None,
                 api_visibility="private")
    return photo


def check_upload(path: str | None, previous: str | None) -> tuple:
    """(the photo to show, the last accepted one): the upload when it decodes, else the previous photo."""
    try:
        read_photo(path)
    except UserError as e:
        gr.Warning(str(e))
        return previous, previous
    return gr.skip(), path


def in_range(component: gr.Slider | gr.Number, payload):
    """Gradio's own range check says 'Value 0 is less than minimum value 1.'; this one names the control."""
    name, low, high = component.label or "value", component.minimum, component.maximum
    try:
        value = float(payload)
    except (TypeError, ValueError):
        raise gr.Error(f"{name} must be a number, not {payload!r}", print_exception=False) from None
    if not math.isfinite(value) or (low is not None and value < low) or (high is not None and value > high):
        low, high = (int(v) if float(v).is_integer() else v for v in (low, high))
        raise gr.Error(f"{name} must be between {low} and {high}, not {payload}", print_exception=False)
    return payload


class Slider(gr.Slider):
    is_template = True

    def preprocess(self, payload):
        return super().preprocess(in_range(self, payload))


class Number(gr.Number):
    is_template = True

    def preprocess(self, payload):
        return None if payload is None else super().preprocess(in_range(self, payload))


def size_hint(path: str | None, scale: float, width: float | None, height: float | None, prior: str | None = None,
              mode: str = "latent", steps: float | None = None) -> str:
    """'64x64 → 256x256 (0.07 megapixels, at most 16.8) · about 3 s here', read from the file's header only;
    the time from the runs this server has done (RunCosts)."""
    try:
        with Image.open(path) as photo:
            out = output_size(photo, width, height) or Settings(scale=scale).output_size(*photo.size)
    except Exception:  # no photo yet, or not an image: the restore will say so
        return f"Output: {scale:g}x the input, or width x height when given (0: from the scale factor)."
    hint = (f"{photo.width}x{photo.height} → {out[0]}x{out[1]} ({out[0] * out[1] / 1e6:.2f} megapixels, "
            f"at most {max_output_pixels() / 1e6:.1f})")
    seconds = JOBS.costs.estimate(prior or MODELS.default, mode, int(steps or Settings().steps), out[0] * out[1])
    return hint if seconds is None else f"{hint} · {duration(seconds)} on this server{busy_note(bool(JOBS.running))}"


def use_prompt(prior: Prior, prompt: str) -> None:
    """Condition a text-conditioned prior on the prompt (reset to '' between jobs); others ignore it."""
    if prior.encode_prompt is None:
        if prompt and prompt.strip():
            gr.Warning(f"The prior {prior.name!r} has no text encoder: the prompt is ignored.")
        return
    prior.set_prompt(prompt or "")


def text_conditioned(spec: str | None) -> bool | None:
    """Whether a prior takes a prompt, without loading it where possible (None: not known before loading)."""
    if not spec:
        return False
    if (prior := MODELS.loaded(spec)) is not None:
        return prior.encode_prompt is not None
    if (folder := local_folder(spec)) is not None:
        return (folder / "text_encoder").is_dir() and (folder / "unet").is_dir()
    return False if spec in ("tiny-random", "sd21-random") else None


def prompt_box(spec: str | None, **layout):
    """The prompt box for a prior (as an update, or built with `layout` when the page is made)."""
    takes_prompt = text_conditioned(spec) is not False
    return gr.Textbox(interactive=takes_prompt,
                      placeholder="what the photo shows, e.g. 'a cat'" if takes_prompt else
                      "this prior has no text encoder: no prompt", **layout)


# ------------------------------------------------------------------------------------------- restore tab

RESTORE_OUTPUTS = ("preview", "plot", "status", "result", "png", "seed", "estimate", "seconds", "maps", "show")
SHOW_ON_RESULT = [("result", "result"), ("consistency map", "consistency"), ("invented detail", "invented")]


def restore_update(**values):
    """One streamed update of the restore tab: the outputs not named are left as they are."""
    return tuple(values.get(name, gr.skip()) for name in RESTORE_OUTPUTS)


def consistency_plot(rows: list[dict], phases: tuple[str, ...] | list[str] = ()) -> pd.DataFrame | None:
    """The plot's data, or None when there is none yet.

    Gradio 6.31's plot draws no line for a colour (phase) that was missing from its first data, nor anything
    after an empty frame: so every phase the run will report starts with an empty (NaN) point.
    """
    if not rows:
        return None
    seeds = [{"step": rows[0]["step"], "consistency": math.nan, "phase": phase} for phase in phases]
    return pd.DataFrame(seeds + rows, columns=["step", "consistency", "phase"]).astype(
        {"step": "int64", "consistency": "float64", "phase": "str"})


@user_errors
def restore(image: str | None, prior: str | None = None, mode: str = "latent", guidance: float | None = None,
            steps: int | None = None, scale: float = 4.0, width: int = 0, height: int = 0, seed: int = -1,
            refine: bool | None = None, refine_lr: float | None = None, reg_every: int | None = None,
            reg_strength: float | None = None, latent_reg: str | None = None, start: float | None = None,
            eta: float | None = None, colour_fix: bool | None = None, prompt: str = "", realism: float | None = None,
            sent: float | None = None,
            request: gr.Request = None, progress=gr.Progress()):
    """Restore one photo. Streams (preview, consistency plot, status, (before, after), PNG file, seed used,
    estimated degradation, seconds); the last update carries the result. A sampler setting left out (None) is
    the prior's tuned one."""
    from latentindigo.imageio import save_png
    from latentindigo.maps import maps, save_maps
    from latentindigo.sampler import Done, FirstStage, load_pixel_models
    from latentindigo.sampler import restore as sample

    photo = read_photo(image)
    spec = prior or MODELS.default
    size = output_size(photo, width, height)
    given = dict(guidance=guidance, steps=steps, refine=refine, refine_lr=refine_lr, reg_every=reg_every,
                 reg_strength=reg_strength, latent_reg=latent_reg, start=start, eta=eta, colour_fix=colour_fix,
                 realism=realism)
    library = Settings()  # (its field types: the browser sends numbers as floats)
    settings = MODELS.settings(prior, method=mode, seed=pick_seed(seed), size=size,
                               scale=None if size else float(scale),
                               **{k: type(getattr(library, k))(v) for k, v in given.items() if v is not None})
    settings.check(photo.width, photo.height)
    out_w, out_h = settings.output_size(photo.width, photo.height)
    yield restore_update(preview=gr.Image(value=None, label="Live preview"), plot=consistency_plot([]),
                         status=f"Waiting for the device… ({photo.width}x{photo.height} → {out_w}x{out_h}, "
                                f"seed {settings.seed})",
                         result=None, png=None, seed=settings.seed, estimate="", seconds=None)
    with scratch_folder() as folder:
        with JOBS.run("restore", session(request), sent) as job:
            if MODELS.loaded(prior) is None:
                for line in MODELS.loading(prior):
                    yield restore_update(status=line)
            diffusion_prior = MODELS.prior(prior)
            use_prompt(diffusion_prior, prompt)
            rows, pacer, last_update, done, first_stage = [], None, 0.0, None, None
            phases = ["guidance"] + ["refinement"] * settings.refine + ["regularisation"] * (settings.reg_every > 0)
            events = sample(photo, settings, diffusion_prior, load_pixel_models())
            try:
                for event in events:
                    if isinstance(event, Done):
                        done = event
                        break
                    if job.stop.is_set():
                        shows = ("; the preview shows the last estimate" if job.total else
                                 f"; the preview shows the first stage ({first_stage_name(first_stage)})"
                                 if first_stage is not None else "")
                        yield restore_update(status=f"{job.stopped()}{shows}.")
                        return
                    if isinstance(event, FirstStage):  # the start: shown while the first diffusion step runs
                        yield restore_update(
                            preview=gr.Image(value=event.image,
                                             label=f"Live preview: first stage ({first_stage_name(event.realism)})"),
                            status=f"**First stage** ({first_stage_name(event.realism)}) in {event.seconds:.1f} s · "
                                   + ("diffusion starting…" if event.realism == settings.realism else
                                      "realistic stage running…"))
                        first_stage = event.realism
                        continue
                    job.step, job.total = event.step, event.total
                    progress((event.step, event.total), desc=event.phase)
                    rows.append({"step": event.step, "consistency": event.consistency, "phase": event.phase})
                    pacer = pacer or PreviewPacer(event.total)
                    preview = pacer.decode(event) if pacer.due(event.step) else None
                    if preview is None and time.perf_counter() - last_update < UPDATE_EVERY:
                        continue
                    last_update = time.perf_counter()
                    caption = f"Step {event.step}/{event.total} · {event.phase}"
                    left = job.time_left()
                    yield restore_update(
                        preview=gr.Image(value=preview, label=f"Live preview: {caption}") if preview else gr.skip(),
                        plot=consistency_plot(rows, phases),
                        status=f"**{caption}** · consistency error {event.consistency:.4f} ({event.space} space)"
                               + (f" · {duration(left)} left" if left is not None else ""))
            finally:
                events.close()  # a stopped or cancelled run must not go on sampling
            JOBS.costs.record(spec, done)
        stem = f"{Path(image).stem}-{mode}-seed{settings.seed}"
        png = str(save_png(done.image, folder / f"{stem}.png", text=recipe_text(done, photo, prior)))
        before = str(save_png(photo.resize(done.image.size, Image.BICUBIC), folder / "bicubic.png"))
        m = maps(done)
        written = save_maps(m, done.image, folder, stem)
        gallery = [(str(written["consistency-overlay"]), f"consistency map · {m.consistency_psnr:.1f} dB"),
                   (str(written["invented-overlay"]), "invented detail")]
        note = f" ({diffusion_prior.notice})" if done.latent_inn_trained is False and diffusion_prior.notice else ""
        yield restore_update(
            preview=gr.Image(value=png, label="Result"), plot=consistency_plot(rows, phases),
            status=f"**Done** in {done.seconds:.1f} s: {out_w}x{out_h}, {METHOD_NAMES[mode]}, "
                   f"prior {diffusion_prior.name}, seed {settings.seed}, consistency with the photo "
                   f"{m.consistency_psnr:.1f} dB{note}.",
            result=(before, png), png=png, seed=settings.seed, estimate=str(done.estimate),
            seconds=round(done.seconds, 2), maps=gallery, show="result")


def first_stage_name(realism: float) -> str:
    if realism == 0:
        return "restorer"
    return "Real-ESRGAN's detail on the restorer" if realism == 1 else f"realism {realism:g}"


def look_controls(look: str, tuned: Settings) -> list:
    """(realism, eta) of a fidelity-realism preset; Balanced is the prior's tuned default."""
    return {"Fidelity": [0.0, 0.0], "Balanced": [tuned.realism, tuned.eta], "Realistic": [1.0, 1.0]}[look]


def show_on_result(show: str, result, gallery, png) -> tuple | None:
    """The result slider's after-image: the result, or one of its maps laid over it (their captions name them)."""
    if not result or not png:
        return gr.skip()
    before = result[0]
    if show == "result":
        return before, png
    caption = "consistency map" if show == "consistency" else "invented detail"
    found = [item[0] for item in gallery or [] if str(item[1]).startswith(caption)]
    return (before, found[0]) if found else gr.skip()


def controls_from_recipe(path: str | None, choices: list[str]):
    """The Restore tab's controls set from a result PNG's recipe (RECIPE_CONTROLS), and a status line."""
    from latentindigo.recipe import read_recipe, settings_of

    if not path:
        return [gr.skip()] * (len(RECIPE_CONTROLS) + 1)
    try:
        saved = read_recipe(path)
    except UserError as e:
        raise gr.Error(str(e), print_exception=False) from None
    settings = settings_of(saved)
    spec = (saved.get("prior") or {}).get("spec")
    skipped, guided = [], settings.method in {mode for _, mode in MODES}
    if not guided:
        skipped.append(f"method {settings.method} (the Restore tab runs LatentINN or PixelINN)")
    if spec is not None and spec not in choices:
        skipped.append(f"prior {spec} (not offered here: start the app with --prior {spec})")
    width, height = settings.size or (0, 0)
    values = dict(prior=spec if spec in choices else gr.skip(),
                  mode=settings.method if guided else gr.skip(),
                  scale=settings.scale or gr.skip(), width=width, height=height, seed=settings.seed,
                  prompt=(saved.get("prior") or {}).get("prompt", [""])[0],
                  **{name: getattr(settings, name) for name in TUNED_CONTROLS})
    status = (f"Controls set from the recipe of {Path(path).name} (seed {settings.seed}, {settings.steps} steps): "
              "upload the same photo and press **Restore** to get the same result")
    if skipped:
        status += "; not set: " + ", ".join(skipped)
    return [values[name] for name in RECIPE_CONTROLS] + [status + "."]


# ------------------------------------------------------------------------------------------- compare and lab

def recipe_text(done, photo: Image.Image, prior: str | None) -> dict[str, str]:
    """The recipe chunk of a Compare or Lab result."""
    from latentindigo.recipe import png_text, recipe
    from latentindigo.sampler import load_pixel_models

    diffusion_prior = MODELS.loaded(prior) if done.settings.method in DIFFUSION_METHODS else None
    return png_text(recipe(done, photo, diffusion_prior, load_pixel_models()))


def tab_progress(progress, label: str):
    """run_method's progress callback for gradio's progress bar, the method's name before the phase."""
    return lambda step, total, phase: progress((step, total), desc=f"{label}: {phase}")


def results_table(rows: list[dict], scores: bool = False) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["method", "seconds"] + (["PSNR (dB)", "SSIM"] if scores else []))


@user_errors
def compare(image: str | None, methods: list[str] | None = None, prior: str | None = None,
            steps: int | None = None, scale: float = 4.0, seed: int = -1, sent: float | None = None,
            request: gr.Request = None, progress=gr.Progress()):
    """The same photo and seed through several methods. Streams (gallery, table, status)."""
    from latentindigo.imageio import save_png

    photo = read_photo(image)
    seed = pick_seed(seed)
    runs = method_runs(MODELS, methods, prior, steps, seed=seed, scale=float(scale))
    for settings in runs:
        settings.check(photo.width, photo.height)
    gallery, rows = [], []
    yield [], results_table([]), f"Waiting for the device… (seed {seed})"
    with scratch_folder() as folder, JOBS.run("compare", session(request), sent) as job:
        for i, settings in enumerate(runs):
            name = METHOD_NAMES[settings.method]
            yield gr.skip(), gr.skip(), f"Running {name} ({i + 1} of {len(runs)}), seed {seed}…"
            done = run_method(photo, settings, MODELS, prior, job, tab_progress(progress, name))
            if done is None:
                yield gr.skip(), gr.skip(), f"Stopped during {name}."
                return
            JOBS.costs.record(prior or MODELS.default, done)
            png = save_png(done.image, folder / f"{settings.method}.png", text=recipe_text(done, photo, prior))
            gallery.append((str(png), f"{name} · {done.seconds:.1f} s"))
            rows.append({"method": name, "seconds": round(done.seconds, 2)})
            yield gallery, results_table(rows), f"{name} done in {done.seconds:.1f} s."
        # the last update carries everything, for API clients that only keep the final outputs
        summary = f"**Done**: {len(runs)} methods, seed {seed}; estimated degradation: {done.estimate}."
        yield gallery, results_table(rows), summary


@user_errors
def lab(image: str | None, scale: float = 4.0, blur: float = 1.0, noise: float = 5.0, jpeg: int = 75,
        degradation_seed: int = 0, methods: list[str] | None = None, prior: str | None = None,
        steps: int | None = None, seed: int = 0, sent: float | None = None, request: gr.Request = None,
        progress=gr.Progress()):
    """Degrade a clean photo, restore it with several methods at its own size, and score each against it.
    Streams (degraded photo, gallery, table, status)."""
    from latentindigo.degradations import Degradation, degrade, scaled_size
    from latentindigo.imageio import save_png, to_image, to_tensor
    from latentindigo.metrics import psnr, ssim

    clean = read_photo(image)
    seed = pick_seed(seed)
    runs = method_runs(MODELS, methods, prior, steps, seed=seed, size=clean.size)
    d = Degradation(scale=float(scale), blur=float(blur), noise=float(noise), seed=int(degradation_seed),
                    jpeg=None if jpeg >= 100 else int(jpeg))
    low_h, low_w = scaled_size(clean.height, clean.width, d.scale)
    for settings in runs:  # before degrading: a photo too large to restore is refused at once
        settings.check(low_w, low_h)
    truth = f"x{scale:g}, blur {blur:g}, noise {noise:g}/255, " + ("no JPEG" if d.jpeg is None else f"JPEG {d.jpeg}")
    original = to_tensor(clean)
    gallery, rows = [], []
    with scratch_folder() as folder:
        low = to_image(degrade(original, d))
        low_png = str(save_png(low, folder / "degraded.png"))
        degraded = f"Degraded {clean.width}x{clean.height} to {low.width}x{low.height} ({truth})"
        yield low_png, [], results_table([], scores=True), f"{degraded}; waiting for the device…"
        with JOBS.run("lab", session(request), sent) as job:
            for i, settings in enumerate(runs):
                name = METHOD_NAMES[settings.method]
                yield gr.skip(), gr.skip(), gr.skip(), f"Running {name} ({i + 1} of {len(runs)}), seed {seed}…"
                done = run_method(low, settings, MODELS, prior, job, tab_progress(progress, name))
                if done is None:
                    yield gr.skip(), gr.skip(), gr.skip(), f"Stopped during {name}."
                    return
                JOBS.costs.record(prior or MODELS.default, done)
                p, s = psnr(done.tensor, original), ssim(done.tensor, original)
                png = save_png(done.image, folder / f"{settings.method}.png", text=recipe_text(done, low, prior))
                gallery.append((str(png), f"{name} · PSNR {p:.2f} dB · SSIM {s:.3f}"))
                rows.append({"method": name, "seconds": round(done.seconds, 2), "PSNR (dB)": round(p, 2),
                             "SSIM": round(s, 4)})
                yield gr.skip(), gallery, results_table(rows, scores=True), f"{name}: PSNR {p:.2f} dB, SSIM {s:.3f}."
        best = max(rows, key=lambda r: r["PSNR (dB)"])
        summary = f"**Done**, best PSNR: {best['method']}. The estimator saw: {done.estimate} (truth: {truth})."
        yield low_png, gallery, results_table(rows, scores=True), summary


# ------------------------------------------------------------------------------------------- the interface

if spaces is not None:
    restore, compare, lab = (spaces.GPU(duration=gpu_seconds(f))(f) for f in (restore, compare, lab))


def tuned_controls(spec: str | None) -> list:
    """Values for the Restore tab's sampler controls (TUNED_CONTROLS): prior `spec`'s tuned settings, set when the
    user picks that prior."""

    try:
        values = MODELS.settings(spec)
    except UserError as e:
        raise gr.Error(str(e), print_exception=False) from None
    return [getattr(values, name) for name in TUNED_CONTROLS]


INTRO = """# LatentINDIGO
Restore low-quality photos (blurred, downscaled, noisy, JPEG-compressed) with a latent diffusion prior guided by
an invertible wavelet network: the INN keeps the photo's coarse content, the prior invents plausible detail.
Upload a photo or pick an example, then press **Restore**."""
# small photos (inputs, the degraded one) fill their box, with visible pixels
CSS = """
#input-image img, #compare-image img, #lab-image img, #lab-degraded img {
    width: 100%; height: 100%; object-fit: contain; image-rendering: pixelated;
}
"""


def build_demo(specs: list[str], device: str | None = None, threads: int = 0,
               calibrate: bool | None = None) -> gr.Blocks:
    global MODELS
    choices = offered_priors(specs)
    MODELS = Models([spec for _, spec in choices], device, threads, default=specs[0] if specs else None,
                    calibrate=calibrate)
    examples = sorted(EXAMPLES.glob("*.png"))
    clean_examples = sorted((EXAMPLES / "clean").glob("*.png"))

    tuned = MODELS.settings(None)

    def prior_dropdown():
        return gr.Dropdown(choices, value=MODELS.default, label="Diffusion prior",
                           info="More priors: start the app with --prior SPEC")

    def ready(methods: tuple[str, ...]) -> list[str]:
        """The methods ticked by default: not `realistic` where its package is missing (it would fail the job)."""
        return [m for m in methods if m != "realistic" or realistic_package() is not None]

    def methods_box(value):
        return gr.CheckboxGroup([(METHOD_NAMES[m], m) for m in COMPARE_METHODS], value=value, label="Methods")

    with gr.Blocks(title="LatentINDIGO", delete_cache=(3600, 4 * 3600)) as demo:
        gr.Markdown(INTRO)
        with gr.Tabs():
            # ---------------------------------------------------------------- restore
            with gr.Tab("Restore", id="restore"):
                with gr.Row():
                    with gr.Column(scale=2, min_width=320):
                        image = photo_input("Low-quality photo", "input-image")
                        if examples:
                            gr.Examples([[str(p)] for p in examples], inputs=[image], label="Examples",
                                        example_labels=[p.stem for p in examples])
                        prior = prior_dropdown()
                        mode = gr.Radio(MODES, value="latent", label="Mode",
                                        info="where the INN enforces the photo's content: LatentINN guides in "
                                             "latent space (fast), PixelINN in pixels (decode + encode a step)")
                        look = gr.Radio(list(LOOKS), value="Balanced", label="Look", elem_id="look",
                                        info="Fidelity: the restorer, closest to the photo; Realistic: "
                                             "Real-ESRGAN's crisp detail on the restorer's coarse content")
                        realism = Slider(0, 1, value=tuned.realism, step=0.05, label="Realism", elem_id="realism",
                                         info="0: faithful (highest PSNR, soft), 1: realistic (natural texture, "
                                              "some invented structure)")
                        guidance = Slider(0, 2, value=tuned.guidance, step=0.05, label="Guidance strength",
                                          info="0: free prior, 1: the photo's coarse content replaces the estimate's")
                        steps = Slider(1, 200, value=tuned.steps, step=1, label="Steps", elem_id="steps")
                        with gr.Row():
                            scale = Slider(1, MAX_SCALE, value=4, step=0.5, label="Scale factor", min_width=160)
                            width = Number(0, minimum=0, maximum=16384, precision=0, label="Width", min_width=80)
                            height = Number(0, minimum=0, maximum=16384, precision=0, label="Height", min_width=80)
                        hint = gr.Markdown(size_hint(None, 4, 0, 0), elem_id="size-hint")
                        seed = Number(-1, minimum=-1, maximum=2**31 - 1, precision=0, label="Seed",
                                      info="-1: a random seed (the one used is shown with the result)")
                        recipe_file = gr.File(label="Recipe: drop a result PNG to set every control as it was",
                                              file_types=[".png"], type="filepath", height=100, elem_id="recipe")
                        with gr.Accordion("Advanced", open=False):
                            with gr.Row():
                                refine = gr.Checkbox(tuned.refine, label="Refinement",
                                                     info="adapt the INN to this photo while sampling")
                                refine_lr = Number(tuned.refine_lr, minimum=0, maximum=0.01,
                                                   label="Refinement learning rate")
                            with gr.Row():
                                reg_every = Slider(0, 50, value=tuned.reg_every, step=1,
                                                   label="Regularise every N steps", info="0: off")
                                reg_strength = Slider(0, 1, value=tuned.reg_strength, step=0.05,
                                                      label="Regularisation strength")
                            latent_reg = gr.Radio(LATENT_REGS, value=tuned.latent_reg,
                                                  label="LatentINN regularisation",
                                                  info="projection: sharper, a decode and an encode each time")
                            with gr.Row():
                                start = Slider(0.05, 1, value=tuned.start, step=0.05, label="Start strength",
                                               info="noise level the sampler starts from: higher invents more")
                                eta = Slider(0, 1, value=tuned.eta, step=0.05, label="Eta",
                                             info="fresh noise per step: 0 deterministic (DDIM), 1 as DDPM; "
                                                  "more gives more texture")
                            colour_fix = gr.Checkbox(tuned.colour_fix, label="Colour fix",
                                                     info="coarse content from the first stage, fine detail from the diffusion")
                            prompt = prompt_box(MODELS.default, value="", label="Prompt", max_length=500, lines=1,
                                                elem_id="prompt", info="text-conditioned priors only")
                        with gr.Row():
                            run_button = gr.Button("Restore", variant="primary", elem_id="restore-button")
                            sent = gr.Number(visible=False)  # set by SENT_AT
                            stop_button = gr.Button("Stop", variant="stop", elem_id="stop-button")
                    with gr.Column(scale=3, min_width=360):
                        status = gr.Markdown("Upload a photo and press **Restore**.", label="Status", elem_id="status",
                                             container=True, min_height=40)
                        with gr.Row(equal_height=True):
                            preview = gr.Image(label="Live preview", format="png", interactive=False, height=280,
                                               elem_id="preview")
                            plot = gr.LinePlot(consistency_plot([]), x="step", y="consistency", color="phase",
                                               color_map=PHASE_COLOURS, label="Consistency error over steps",
                                               y_title="RMS error", elem_id="consistency-plot")
                        gr.Markdown("*Consistency plot:* guidance and refinement report the same error (refinement "
                                    "adapts the INN, not the estimate), so their lines coincide; regularisation "
                                    "(every few steps and at the last) projects the estimate through the VAE, "
                                    "whose loss moves the error: the jumps.", elem_id="plot-caption")
                        result = gr.ImageSlider(label="Before (bicubic) / after", format="png", interactive=False,
                                                max_height=600, elem_id="result-slider")
                        show = gr.Radio(SHOW_ON_RESULT, value="result", label="Show on the result", elem_id="show",
                                        info="consistency map: where the result disagrees with the photo (through "
                                             "the forward model); invented detail: what diffusion added over the "
                                             "first stage")
                        maps_gallery = gr.Gallery(label="Maps", format="png", columns=2, height=200, interactive=False,
                                                  object_fit="contain", elem_id="maps")
                        with gr.Row():
                            png = gr.File(label="Download PNG", interactive=False, elem_id="download")
                            with gr.Column():
                                estimate = gr.Textbox(label="Estimated degradation", interactive=False)
                                with gr.Row():
                                    seed_used = gr.Number(label="Seed used", interactive=False, precision=0)
                                    seconds = gr.Number(label="Time (s)", interactive=False)
                run_button.click(
                    restore,
                    inputs=[image, prior, mode, guidance, steps, scale, width, height, seed, refine, refine_lr,
                            reg_every, reg_strength, latent_reg, start, eta, colour_fix, prompt, realism, sent],
                    outputs=[preview, plot, status, result, png, seed_used, estimate, seconds, maps_gallery, show],
                    api_name="restore", concurrency_limit=1, concurrency_id="device", show_progress="full",
                    show_progress_on=[result], trigger_mode=RUN_TRIGGER, js=SENT_AT)
                stop_button.click(stopper("restore"), sent, outputs=[status], queue=False, api_visibility="private",
                                  js=SENT_AT)
                for control in (image, scale, width, height, prior, mode, steps):
                    control.change(size_hint, [image, scale, width, height, prior, mode, steps], hint, queue=False,
                                   show_progress="hidden", api_visibility="private")
                prior.change(prompt_box, prior, prompt, queue=False, show_progress="hidden",
                             api_visibility="private")
                controls = dict(guidance=guidance, steps=steps, refine=refine, refine_lr=refine_lr, reg_every=reg_every,
                                reg_strength=reg_strength, latent_reg=latent_reg, start=start, eta=eta,
                                colour_fix=colour_fix, realism=realism)
                look.input(lambda chosen, spec: look_controls(chosen, MODELS.settings(spec)), [look, prior],
                           [realism, eta], queue=False, show_progress="hidden", api_visibility="private")
                # (input: the user's pick only; a recipe sets the prior and its own settings together)
                prior.input(tuned_controls, prior, [controls[name] for name in TUNED_CONTROLS],
                            queue=False, show_progress="hidden", api_visibility="private")
                show.change(show_on_result, [show, result, maps_gallery, png], result, queue=False,
                            show_progress="hidden", api_visibility="private")
                recipe_controls = dict(controls, prior=prior, mode=mode, scale=scale, width=width, height=height,
                                       seed=seed, prompt=prompt)
                recipe_file.upload(functools.partial(controls_from_recipe, choices=[spec for _, spec in choices]),
                                   recipe_file, [recipe_controls[name] for name in RECIPE_CONTROLS] + [status],
                                   queue=False, show_progress="hidden", api_visibility="private")
                demo.load(prompt_box, prior, prompt, queue=False, show_progress="hidden", api_visibility="private")

            # ---------------------------------------------------------------- compare
            with gr.Tab("Compare", id="compare"):
                with gr.Row():
                    with gr.Column(scale=2, min_width=320):
                        c_image = photo_input("Low-quality photo", "compare-image")
                        if examples:
                            gr.Examples([[str(p)] for p in examples], inputs=[c_image], label="Examples",
                                        example_labels=[p.stem for p in examples])
                        c_methods = methods_box(ready(COMPARE_METHODS))
                        c_prior = prior_dropdown()
                        c_steps = Slider(1, 200, value=tuned.steps, step=1, label="Steps", elem_id="compare-steps")
                        c_scale = Slider(1, MAX_SCALE, value=4, step=0.5, label="Scale factor")
                        c_seed = Number(-1, minimum=-1, maximum=2**31 - 1, precision=0, label="Seed",
                                        info="one seed for every method; -1: random")
                        with gr.Row():
                            c_run = gr.Button("Compare", variant="primary", elem_id="compare-button")
                            c_sent = gr.Number(visible=False)
                            c_stop = gr.Button("Stop", variant="stop")
                    with gr.Column(scale=3, min_width=360):
                        c_status = gr.Markdown("Same photo, same seed, several methods.", label="Status",
                                               container=True, elem_id="compare-status")
                        c_gallery = gr.Gallery(label="Results", format="png", columns=3, height="auto",
                                               interactive=False,
                                               object_fit="contain", elem_id="compare-gallery")
                        c_table = gr.Dataframe(results_table([]), label="Times", interactive=False)
                c_run.click(
                    compare, inputs=[c_image, c_methods, c_prior, c_steps, c_scale, c_seed, c_sent],
                    outputs=[c_gallery, c_table, c_status], api_name="compare", concurrency_limit=1,
                    concurrency_id="device", show_progress_on=[c_gallery], trigger_mode=RUN_TRIGGER, js=SENT_AT)
                c_stop.click(stopper("compare"), c_sent, outputs=[c_status], queue=False, api_visibility="private",
                             js=SENT_AT)

            # ---------------------------------------------------------------- degradation lab
            with gr.Tab("Degradation lab", id="lab"):
                with gr.Row():
                    with gr.Column(scale=2, min_width=320):
                        l_image = photo_input("Clean photo", "lab-image")
                        if clean_examples:
                            gr.Examples([[str(p)] for p in clean_examples], inputs=[l_image], label="Clean photos",
                                        example_labels=[p.stem for p in clean_examples])
                        with gr.Row():
                            l_scale = Slider(1, MAX_SCALE, value=4, step=0.5, label="Downscale")
                            l_blur = Slider(0, 5, value=1.0, step=0.1, label="Blur sigma",
                                            info="pixels of the clean photo")
                        with gr.Row():
                            l_noise = Slider(0, 50, value=5, step=0.5, label="Noise", info="sigma, 8-bit levels")
                            l_jpeg = Slider(10, 100, value=75, step=1, label="JPEG quality", info="100: no JPEG")
                        l_dseed = Number(0, minimum=0, maximum=2**31 - 1, precision=0, label="Degradation seed")
                        l_methods = methods_box(ready(("latent", "faithful", "realistic", "bicubic")))
                        l_prior = prior_dropdown()
                        l_steps = Slider(1, 200, value=tuned.steps, step=1, label="Steps", elem_id="lab-steps")
                        l_seed = Number(0, minimum=-1, maximum=2**31 - 1, precision=0, label="Seed",
                                        info="-1: random")
                        with gr.Row():
                            l_run = gr.Button("Degrade and restore", variant="primary", elem_id="lab-button")
                            l_sent = gr.Number(visible=False)
                            l_stop = gr.Button("Stop", variant="stop")
                    with gr.Column(scale=3, min_width=360):
                        l_status = gr.Markdown("Degrade a clean photo, restore it at its own size, and score each "
                                               "method against the original.", label="Status", container=True,
                                               elem_id="lab-status")
                        l_low = gr.Image(label="Degraded", format="png", interactive=False, height=200,
                                         elem_id="lab-degraded")
                        l_gallery = gr.Gallery(label="Restored", format="png", columns=3, height="auto",
                                               interactive=False,
                                               object_fit="contain", elem_id="lab-gallery")
                        l_table = gr.Dataframe(results_table([], scores=True), label="Scores against the original",
                                               interactive=False)
                l_run.click(
                    lab, inputs=[l_image, l_scale, l_blur, l_noise, l_jpeg, l_dseed, l_methods, l_prior, l_steps,
                                 l_seed, l_sent],
                    outputs=[l_low, l_gallery, l_table, l_status], api_name="lab", concurrency_limit=1,
                    concurrency_id="device", show_progress_on=[l_gallery], trigger_mode=RUN_TRIGGER, js=SENT_AT)
                l_stop.click(stopper("lab"), l_sent, outputs=[l_status], queue=False, api_visibility="private",
                             js=SENT_AT)

        gr.api(stop, api_name="stop", queue=False)
    return demo


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads > 0:  # torch is imported later and reads these; warm_up also sets them
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(args.threads)
    demo = build_demo(args.prior, args.device, args.threads, args.calibrate)
    demo.queue(max_size=args.max_queue, default_concurrency_limit=1)
    demo.launch(server_name=args.host, server_port=args.port, ssr_mode=False, max_file_size=MAX_UPLOAD,
                allowed_paths=[str(EXAMPLES)], prevent_thread_lock=True, footer_links=["api", "gradio"], css=CSS)
    threading.Thread(target=MODELS.warm_up, args=(JOBS,), daemon=True, name="warm-up").start()
    demo.block_thread()


if __name__ == "__main__":
    main()
