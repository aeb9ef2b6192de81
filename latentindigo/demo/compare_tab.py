"""The Compare tab: one photo and seed through several methods, with each result's numbers, a scatter of
naturalness against consistency, any two results in a before/after slider, and a grid PNG of them all (with
every method's recipe) to download."""

from __future__ import annotations

import json
import traceback
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
from PIL import Image

from latentindigo.demo import server
from latentindigo.demo.controls import (COMPARE_METHODS, METHOD_NAMES, methods_box, photo_examples, photo_input,
                                        prior_dropdown, results_gallery, run_buttons, scale_slider, seed_number,
                                        status_box, steps_slider)
from latentindigo.demo.scores import COMPARE_CAPTION, COMPARE_COLUMNS, compare_row, scatter, table
from latentindigo.demo.server import on_gpu, recipe_text, session, tab_progress, user_errors, wire_run
from latentindigo.errors import UserError
from latentindigo.serving import method_runs, pick_seed, read_photo, run_method, scratch_folder
from latentindigo.settings import DIFFUSION_METHODS, Settings

COMPARE_OUTPUTS = ("gallery", "table", "status", "plot", "left", "right", "slider", "grid")
X = "consistency (dB)"  # the scatter's x: faithfulness to the photo


@dataclass
class Result:
    method: str
    png: str
    done: object  # sampler.Done
    scores: object  # comparison.Scores
    recipe: dict

    @property
    def name(self) -> str:
        return METHOD_NAMES[self.method]


def compare_update(**values):
    """One streamed update of the tab: the outputs not named are left as they are (gr.skip). Gradio 6.31 streams
    each output as edits of its previous update, applied in place to the object the browser shows: a skip after
    a table or a plot strips the shown value's keys (the plot then fails on its next resize), so once shown, the
    gallery, table, plot and slider are sent whole in every update (an unchanged one costs no edit)."""
    return tuple(values.get(name, gr.skip()) for name in COMPARE_OUTPUTS)


def default_pair(methods: list[str]) -> tuple[str | None, str | None]:
    """The slider's two methods among `methods`: bicubic (else the first) and the default method (else the last
    other one)."""
    if not methods:
        return None, None
    left = "bicubic" if "bicubic" in methods else methods[0]
    others = [m for m in methods if m != left] or [left]
    right = Settings().method if Settings().method in others else others[-1]
    return left, right


def pickers(methods: list[str]) -> tuple[gr.Dropdown, gr.Dropdown]:
    choices = [(METHOD_NAMES[m], m) for m in methods]
    left, right = default_pair(methods)
    return gr.Dropdown(choices=choices, value=left), gr.Dropdown(choices=choices, value=right)


def pair_of(left: str | None, right: str | None, pngs: dict[str, str]) -> tuple[str, str] | None:
    """The slider's two results at full resolution, or None where one of them is not there."""
    return (pngs[left], pngs[right]) if left in pngs and right in pngs else None


def show_pair(left: str | None, right: str | None, gallery: list | None):
    """The picked pair in the slider, from the results the gallery shows (their captions start with the method's
    name): nothing runs again."""
    by_name = {str(caption).split(" · ")[0]: path for path, caption in gallery or []}
    pngs = {m: by_name[name] for m, name in METHOD_NAMES.items() if name in by_name}
    return pair_of(left, right, pngs) or gr.skip()


def one_line(e: Exception) -> str:
    text = str(e) if isinstance(e, (UserError, gr.Error)) else f"{type(e).__name__}: {e}"
    return " ".join(text.split())[:200]


def save_grid(photo: Image.Image, results: list[Result], title: list[str], path: Path) -> str:
    """The comparison PNG: the input and every result, labelled with its numbers, and every method's recipe."""
    from latentindigo.comparison import grid
    from latentindigo.imageio import save_png
    from latentindigo.recipe import comparison_text

    image = grid(photo, [(r.name, r.done.image, r.scores.caption()) for r in results], title)
    return str(save_png(image, path, text=comparison_text({r.method: r.recipe for r in results})))


@on_gpu
@user_errors
def compare(image: str | None, methods: list[str] | None = None, prior: str | None = None,
            steps: int | None = None, scale: float = 4.0, seed: int = -1, sent: float | None = None,
            request: gr.Request = None, progress=gr.Progress()):
    """The same photo and seed through several methods. Streams (gallery, table, status, scatter, left and right
    pickers, slider, comparison PNG); the last update carries them all. A method that fails is named in the
    status and the others go on; after Stop, what finished stays and the comparison PNG covers it."""
    from latentindigo.comparison import score
    from latentindigo.imageio import save_png
    from latentindigo.recipe import CHUNK

    photo = read_photo(image)
    seed = pick_seed(seed)
    runs = method_runs(server.MODELS, methods, prior, steps, seed=seed, scale=float(scale))
    for settings in runs:
        settings.check(photo.width, photo.height)
    ticked = [s.method for s in runs]
    names = [METHOD_NAMES[m] for m in ticked]
    results: list[Result] = []
    failures: list[str] = []
    stopped = None
    left, right = default_pair(ticked)

    def shown(status: str, **values):
        """An update with everything shown so far (see compare_update)."""
        return compare_update(
            gallery=[(r.png, f"{r.name} · {r.done.seconds:.1f} s") for r in results],
            table=table([compare_row(r.name, r.scores) for r in results], COMPARE_COLUMNS),
            plot=scatter([(r.name, r.scores.consistency, r.scores.niqe) for r in results], names, X),
            slider=pair_of(left, right, {r.method: r.png for r in results}), status=status, **values)

    yield shown(f"Waiting for the device… (seed {seed})", grid=None,
                **dict(zip(("left", "right"), pickers(ticked))))
    with scratch_folder() as folder, server.JOBS.run("compare", session(request), sent) as job:
        for i, settings in enumerate(runs):
            name = METHOD_NAMES[settings.method]
            yield shown(f"Running {name} ({i + 1} of {len(runs)}), seed {seed}…")
            try:
                done = run_method(photo, settings, server.MODELS, prior, job, tab_progress(progress, name))
            except Exception as e:  # the others still run; the failure is named in the status
                if not isinstance(e, UserError):
                    traceback.print_exc()
                failures.append(f"{name} failed: {one_line(e)}")
                yield shown(failures[-1])
                continue
            if done is None:
                stopped = name
                break
            server.JOBS.costs.record(prior or server.MODELS.default, done)
            text = recipe_text(done, photo, prior)
            png = str(save_png(done.image, folder / f"{settings.method}.png", text=text))
            results.append(Result(settings.method, png, done, score(done), json.loads(text[CHUNK])))
            yield shown(f"{name} done in {done.seconds:.1f} s.")
        if not results:
            if stopped is not None:
                yield shown(f"Stopped during {stopped}; no method had finished.")
                return
            raise UserError("every method failed: " + "; ".join(failures))
        # the slider's pair and the pickers' choices among the methods that gave a result
        finished = [r.method for r in results]
        left, right = default_pair(finished)
        out = results[0].done.image
        spec = prior or server.MODELS.default
        uses_prior = any(m in DIFFUSION_METHODS for m in finished)
        ran = f"{len(results)} of {len(runs)} methods" if len(results) < len(runs) else f"{len(runs)} methods"
        notes = [f"Stopped during {stopped}: it and the methods after it are not shown."] if stopped else []
        heading = (f"LatentINDIGO comparison: {photo.width}x{photo.height} → {out.width}x{out.height}, seed {seed}"
                   + (f", prior {spec}" if uses_prior else ""))
        legend = ("Consistency with the photo: higher is closer to its content. NIQE: lower is more natural. "
                  "Every method's recipe is in this PNG.")
        title = [heading, legend, *notes, *failures]
        grid = save_grid(photo, results, title, folder / f"{Path(image).stem}-comparison-seed{seed}.png")
        status = ("**Stopped**" if stopped else "**Done**") + f": {ran}, seed {seed}"
        status += "".join(f"; {line.rstrip('.')}" for line in [*notes, *failures])
        status += f"; estimated degradation: {results[-1].done.estimate}."
        # the last update carries everything, for API clients that only keep the final outputs
        yield shown(status, grid=grid, **dict(zip(("left", "right"), pickers(finished))))


def build(choices: list[tuple[str, str]], tuned: Settings) -> None:
    """The tab's controls, with the default prior's `tuned` settings, and its events."""
    with gr.Tab("Compare", id="compare"):
        with gr.Row():
            with gr.Column(scale=2, min_width=320):
                image = photo_input("Low-quality photo", "compare-image")
                photo_examples(image)
                methods = methods_box(COMPARE_METHODS)
                prior = prior_dropdown(choices)
                steps = steps_slider(tuned.steps, "compare-steps")
                scale = scale_slider()
                seed = seed_number(-1, "one seed for every method; -1: random")
                buttons = run_buttons("Compare", "compare-button")
            with gr.Column(scale=3, min_width=360):
                status = status_box("Same photo, same seed, several methods.", "compare-status")
                gallery = results_gallery("Results", "compare-gallery")
                results = gr.Dataframe(table([], COMPARE_COLUMNS), label="Numbers", interactive=False,
                                       elem_id="compare-table")
                gr.Markdown(COMPARE_CAPTION, elem_id="compare-caption")
                plot = gr.ScatterPlot(None, x=X, y="NIQE", color="method", label="Naturalness against consistency",
                                      x_title="consistency with the photo (dB): more faithful →",
                                      y_title="NIQE: lower is more natural", tooltip="all", elem_id="compare-plot")
                with gr.Row():
                    left = gr.Dropdown([], label="Left", elem_id="compare-left")
                    right = gr.Dropdown([], label="Right", elem_id="compare-right")
                pair = gr.ImageSlider(label="The two picked results (left / right), full resolution", format="png", interactive=False,
                                      max_height=800, elem_id="compare-slider")
                grid = gr.File(label="Download comparison (one PNG: the input and every result with its numbers and "
                                     "recipe)", interactive=False, elem_id="compare-grid")
        wire_run("compare", compare, buttons, inputs=[image, methods, prior, steps, scale, seed],
                 outputs=[gallery, results, status, plot, left, right, pair, grid], status=status,
                 progress_on=[gallery])
        for picker in (left, right):
            picker.input(show_pair, [left, right, gallery], pair, queue=False, show_progress="hidden",
                         api_visibility="private")
