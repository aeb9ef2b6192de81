"""The Compare tab: one photo and seed through several methods."""

from __future__ import annotations

import gradio as gr

from latentindigo.demo import server
from latentindigo.demo.controls import (COMPARE_METHODS, METHOD_NAMES, methods_box, photo_examples, photo_input,
                                        prior_dropdown, results_gallery, run_buttons, scale_slider, seed_number,
                                        status_box, steps_slider)
from latentindigo.demo.server import (on_gpu, recipe_text, results_table, session, tab_progress, user_errors,
                                      wire_run)
from latentindigo.serving import method_runs, pick_seed, read_photo, run_method, scratch_folder
from latentindigo.settings import Settings


@on_gpu
@user_errors
def compare(image: str | None, methods: list[str] | None = None, prior: str | None = None,
            steps: int | None = None, scale: float = 4.0, seed: int = -1, sent: float | None = None,
            request: gr.Request = None, progress=gr.Progress()):
    """The same photo and seed through several methods. Streams (gallery, table, status)."""
    from latentindigo.imageio import save_png

    photo = read_photo(image)
    seed = pick_seed(seed)
    runs = method_runs(server.MODELS, methods, prior, steps, seed=seed, scale=float(scale))
    for settings in runs:
        settings.check(photo.width, photo.height)
    gallery, rows = [], []
    yield [], results_table([]), f"Waiting for the device… (seed {seed})"
    with scratch_folder() as folder, server.JOBS.run("compare", session(request), sent) as job:
        for i, settings in enumerate(runs):
            name = METHOD_NAMES[settings.method]
            yield gr.skip(), gr.skip(), f"Running {name} ({i + 1} of {len(runs)}), seed {seed}…"
            done = run_method(photo, settings, server.MODELS, prior, job, tab_progress(progress, name))
            if done is None:
                yield gr.skip(), gr.skip(), f"Stopped during {name}."
                return
            server.JOBS.costs.record(prior or server.MODELS.default, done)
            png = save_png(done.image, folder / f"{settings.method}.png", text=recipe_text(done, photo, prior))
            gallery.append((str(png), f"{name} · {done.seconds:.1f} s"))
            rows.append({"method": name, "seconds": round(done.seconds, 2)})
            yield gallery, results_table(rows), f"{name} done in {done.seconds:.1f} s."
        # the last update carries everything, for API clients that only keep the final outputs
        summary = f"**Done**: {len(runs)} methods, seed {seed}; estimated degradation: {done.estimate}."
        yield gallery, results_table(rows), summary


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
                table = gr.Dataframe(results_table([]), label="Times", interactive=False)
        wire_run("compare", compare, buttons, inputs=[image, methods, prior, steps, scale, seed],
                 outputs=[gallery, table, status], status=status, progress_on=[gallery])
