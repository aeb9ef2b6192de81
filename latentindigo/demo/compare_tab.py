"""The Compare tab: one photo and seed through several methods (or, as a realism sweep, each at several
realisms), with each result's numbers, a scatter of naturalness against consistency, any two results in a
before/after slider, and a grid PNG of them all (with every result's recipe) to download."""

from __future__ import annotations

import json
import traceback
from dataclasses import dataclass, replace
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
from latentindigo.settings import DIFFUSION_METHODS, REALISM_METHODS, REALISM_SWEEP, Settings

COMPARE_OUTPUTS = ("gallery", "table", "status", "plot", "left", "right", "slider", "grid")
X = "consistency (dB)"  # the scatter's x: faithfulness to the photo
AT = " realism "  # a swept result's key: its method, AT, its realism


def entries(runs: list[Settings], sweep: bool) -> list[tuple[str, Settings]]:
    """(key, settings) of each result: one per method, or with `sweep` one per realism of REALISM_SWEEP for each method
    that starts from the realism control (the first stages are computed once for them all)."""
    out = []
    for s in runs:
        swept = sweep and s.method in REALISM_METHODS
        out += [(f"{s.method}{AT}{r:.2g}", replace(s, realism=r)) for r in REALISM_SWEEP] if swept else [(s.method, s)]
    return out


def name_of(key: str) -> str:
    """A result's name on the page: its method's, and its realism in a sweep."""
    method, _, realism = key.partition(AT)
    return METHOD_NAMES[method] + (f", realism {realism}" if realism else "")


@dataclass
class Result:
    key: str  # the method (see `entries`)
    png: str
    done: object  # sampler.Done
    scores: object  # comparison.Scores
    recipe: dict

    @property
    def name(self) -> str:
        return name_of(self.key)


def compare_update(**values):
    """One streamed update of the tab: the outputs not named are left as they are (gr.skip). Gradio 6.31 streams
    each output as edits of its previous update, applied in place to the object the browser shows: a skip after
    a table or a plot strips the shown value's keys (the plot then fails on its next resize), so once shown, the
    gallery, table, plot and slider are sent whole in every update (an unchanged one costs no edit)."""
    return tuple(values.get(name, gr.skip()) for name in COMPARE_OUTPUTS)


def default_pair(keys: list[str]) -> tuple[str | None, str | None]:
    """The slider's two results among `keys`: bicubic (else the first) and the default method (else the last
    other one)."""
    if not keys:
        return None, None
    left = "bicubic" if "bicubic" in keys else keys[0]
    others = [k for k in keys if k != left] or [left]
    right = Settings().method if Settings().method in others else others[-1]
    return left, right


def pickers(keys: list[str]) -> tuple[gr.Dropdown, gr.Dropdown]:
    choices = [(name_of(k), k) for k in keys]
    left, right = default_pair(keys)
    return gr.Dropdown(choices=choices, value=left), gr.Dropdown(choices=choices, value=right)


def pair_of(left: str | None, right: str | None, pngs: dict[str, str]) -> tuple[str, str] | None:
    """The slider's two results at full resolution, or None where one of them is not there."""
    return (pngs[left], pngs[right]) if left in pngs and right in pngs else None


def show_pair(left: str | None, right: str | None, gallery: list | None):
    """The picked pair in the slider, from the results the gallery shows (their captions start with the method's
    name): nothing runs again."""
    by_name = {str(caption).split(" · ")[0]: path for path, caption in gallery or []}
    pngs = {key: by_name[name_of(key)] for key in (left, right) if key and name_of(key) in by_name}
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
    return str(save_png(image, path, text=comparison_text({r.key: r.recipe for r in results})))


@on_gpu
@user_errors
def compare(image: str | None, methods: list[str] | None = None, prior: str | None = None,
            steps: int | None = None, scale: float = 4.0, seed: int = -1, sweep: bool = False,
            sent: float | None = None, request: gr.Request = None, progress=gr.Progress()):
    """The same photo and seed through several methods, or with `sweep` each method that starts from the realism
    control at realism 0, 1/3, 2/3 and 1 (the others once). Streams (gallery, table, status, scatter, left and right
    pickers, slider, comparison PNG); the last update carries them all. A method that fails is named in the
    status and the others go on; after Stop, what finished stays and the comparison PNG covers it."""
    from latentindigo.comparison import score
    from latentindigo.imageio import save_png
    from latentindigo.recipe import CHUNK

    photo = read_photo(image)
    seed = pick_seed(seed)
    runs = entries(method_runs(server.MODELS, methods, prior, steps, seed=seed, scale=float(scale)), bool(sweep))
    for _, settings in runs:
        settings.check(photo.width, photo.height)
    ticked = [key for key, _ in runs]
    names = [name_of(key) for key in ticked]
    unit = "results" if sweep else "methods"
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
            slider=pair_of(left, right, {r.key: r.png for r in results}), status=status, **values)

    yield shown(f"Waiting for the device… (seed {seed})", grid=None,
                **dict(zip(("left", "right"), pickers(ticked))))
    with scratch_folder() as folder, server.JOBS.run("compare", session(request), sent) as job:
        for i, (key, settings) in enumerate(runs):
            name = name_of(key)
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
            png = str(save_png(done.image, folder / f"{key.replace(AT, '-realism-')}.png", text=text))
            results.append(Result(key, png, done, score(done), json.loads(text[CHUNK])))
            yield shown(f"{name} done in {done.seconds:.1f} s.")
        if not results:
            if stopped is not None:
                yield shown(f"Stopped during {stopped}; no method had finished.")
                return
            raise UserError("every method failed: " + "; ".join(failures))
        # the slider's pair and the pickers' choices among the methods that gave a result
        finished = [r.key for r in results]
        left, right = default_pair(finished)
        out = results[0].done.image
        spec = prior or server.MODELS.default
        uses_prior = any(r.done.settings.method in DIFFUSION_METHODS for r in results)
        ran = f"{len(results)} of {len(runs)} {unit}" if len(results) < len(runs) else f"{len(runs)} {unit}"
        notes = [f"Stopped during {stopped}: it and the methods after it are not shown."] if stopped else []
        heading = (f"LatentINDIGO comparison: {photo.width}x{photo.height} → {out.width}x{out.height}, seed {seed}"
                   + (f", prior {spec}" if uses_prior else ""))
        legend = ("Consistency with the photo: higher is closer to its content. NIQE: lower is more natural. "
                  "Every result's recipe is in this PNG.")
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
                sweep = gr.Checkbox(False, label="Realism sweep", elem_id="compare-sweep",
                                    info="each ticked method that starts from the first stages at realism 0, ⅓, ⅔ "
                                         "and 1, side by side (the first stages run once)")
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
                pair = gr.ImageSlider(label="The two picked results (left / right), full resolution", format="png",
                                      interactive=False, max_height=800, elem_id="compare-slider")
                grid = gr.File(label="Download comparison (one PNG: the input and every result with its numbers and "
                                     "recipe)", interactive=False, elem_id="compare-grid")
        wire_run("compare", compare, buttons, inputs=[image, methods, prior, steps, scale, seed, sweep],
                 outputs=[gallery, results, status, plot, left, right, pair, grid], status=status,
                 progress_on=[gallery])
        for picker in (left, right):
            picker.input(show_pair, [left, right, gallery], pair, queue=False, show_progress="hidden",
                         api_visibility="private")
