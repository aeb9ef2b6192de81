"""The Degradation lab tab: degrade a clean photo, restore it with several methods at its own size, and score
each against the original (PSNR, SSIM) and for naturalness (NIQE), with a scatter of the two."""

from __future__ import annotations

import gradio as gr

from latentindigo.demo import server
from latentindigo.demo.controls import (EXAMPLES, METHOD_NAMES, Number, Slider, methods_box, photo_examples,
                                        photo_input, prior_dropdown, results_gallery, run_buttons, scale_slider,
                                        seed_number, status_box, steps_slider)
from latentindigo.demo.scores import LAB_CAPTION, LAB_COLUMNS, lab_row, scatter, table
from latentindigo.demo.server import on_gpu, recipe_text, session, tab_progress, user_errors, wire_run
from latentindigo.serving import method_runs, pick_seed, read_photo, run_method, scratch_folder
from latentindigo.settings import Settings

PSNR = "PSNR (dB)"  # the scatter's x
PSNR_COLUMN = LAB_COLUMNS[2]


@on_gpu
@user_errors
def lab(image: str | None, scale: float = 4.0, blur: float = 1.0, noise: float = 5.0, jpeg: int = 75,
        degradation_seed: int = 0, methods: list[str] | None = None, prior: str | None = None,
        steps: int | None = None, seed: int = 0, sent: float | None = None, request: gr.Request = None,
        progress=gr.Progress()):
    """Degrade a clean photo, restore it with several methods at its own size, and score each against it.
    Streams (degraded photo, gallery, table, status, scatter of NIQE against PSNR)."""
    from latentindigo.comparison import score
    from latentindigo.degradations import Degradation, degrade, scaled_size
    from latentindigo.imageio import save_png, to_image, to_tensor

    clean = read_photo(image)
    seed = pick_seed(seed)
    runs = method_runs(server.MODELS, methods, prior, steps, seed=seed, size=clean.size)
    d = Degradation(scale=float(scale), blur=float(blur), noise=float(noise), seed=int(degradation_seed),
                    jpeg=None if jpeg >= 100 else int(jpeg))
    low_h, low_w = scaled_size(clean.height, clean.width, d.scale)
    for settings in runs:  # before degrading: a photo too large to restore is refused at once
        settings.check(low_w, low_h)
    truth = f"x{scale:g}, blur {blur:g}, noise {noise:g}/255, " + ("no JPEG" if d.jpeg is None else f"JPEG {d.jpeg}")
    original = to_tensor(clean)
    gallery, rows, points, names = [], [], [], [METHOD_NAMES[s.method] for s in runs]

    def shown(status: str) -> tuple:
        """Everything so far: a table or plot skipped after it was shown is stripped in the browser
        (compare_tab.compare_update says why)."""
        return low_png, gallery, table(rows, LAB_COLUMNS), status, scatter(points, names, PSNR)

    with scratch_folder() as folder:
        low = to_image(degrade(original, d))
        low_png = str(save_png(low, folder / "degraded.png"))
        degraded = f"Degraded {clean.width}x{clean.height} to {low.width}x{low.height} ({truth})"
        yield shown(f"{degraded}; waiting for the device…")
        with server.JOBS.run("lab", session(request), sent) as job:
            for i, settings in enumerate(runs):
                name = METHOD_NAMES[settings.method]
                yield shown(f"Running {name} ({i + 1} of {len(runs)}), seed {seed}…")
                done = run_method(low, settings, server.MODELS, prior, job, tab_progress(progress, name))
                if done is None:
                    yield shown(f"Stopped during {name}.")
                    return
                server.JOBS.costs.record(prior or server.MODELS.default, done)
                s = score(done, truth=original)
                png = save_png(done.image, folder / f"{settings.method}.png", text=recipe_text(done, low, prior))
                gallery.append((str(png), f"{name} · PSNR {s.psnr:.2f} dB · SSIM {s.ssim:.3f}"))
                rows.append(lab_row(name, s))
                points.append((name, s.psnr, s.niqe))
                yield shown(f"{name}: PSNR {s.psnr:.2f} dB, SSIM {s.ssim:.3f}.")
        best = max(rows, key=lambda r: r[PSNR_COLUMN])
        yield shown(f"**Done**, best PSNR: {best['method']}. The estimator saw: {done.estimate} (truth: {truth}).")


def build(choices: list[tuple[str, str]], tuned: Settings) -> None:
    """The tab's controls, with the default prior's `tuned` settings, and its events."""
    with gr.Tab("Degradation lab", id="lab"):
        with gr.Row():
            with gr.Column(scale=2, min_width=320):
                image = photo_input("Clean photo", "lab-image")
                photo_examples(image, EXAMPLES / "clean", "Clean photos")
                with gr.Row():
                    scale = scale_slider("Downscale")
                    blur = Slider(0, 5, value=1.0, step=0.1, label="Blur sigma", info="pixels of the clean photo")
                with gr.Row():
                    noise = Slider(0, 50, value=5, step=0.5, label="Noise", info="sigma, 8-bit levels")
                    jpeg = Slider(10, 100, value=75, step=1, label="JPEG quality", info="100: no JPEG")
                degradation_seed = Number(0, minimum=0, maximum=2**31 - 1, precision=0, label="Degradation seed")
                methods = methods_box(("latent", "faithful", "realistic", "bicubic"))
                prior = prior_dropdown(choices)
                steps = steps_slider(tuned.steps, "lab-steps")
                seed = seed_number(0, "-1: random")
                buttons = run_buttons("Degrade and restore", "lab-button")
            with gr.Column(scale=3, min_width=360):
                status = status_box("Degrade a clean photo, restore it at its own size, and score each method against "
                                    "the original.", "lab-status")
                low = gr.Image(label="Degraded", format="png", interactive=False, height=200, elem_id="lab-degraded")
                gallery = results_gallery("Restored", "lab-gallery")
                scores = gr.Dataframe(table([], LAB_COLUMNS), label="Scores against the original",
                                      interactive=False, elem_id="lab-table")
                gr.Markdown(LAB_CAPTION)
                plot = gr.ScatterPlot(None, x=PSNR, y="NIQE", color="method", label="Naturalness against PSNR",
                                      x_title="PSNR against the clean photo (dB): more faithful →",
                                      y_title="NIQE: lower is more natural", tooltip="all", elem_id="lab-plot")
        wire_run("lab", lab, buttons,
                 inputs=[image, scale, blur, noise, jpeg, degradation_seed, methods, prior, steps, seed],
                 outputs=[low, gallery, scores, status, plot], status=status, progress_on=[gallery])
