"""The Restore tab: one photo, with a live preview of the sampler and its consistency plot, the maps of the
result, and controls a result PNG's recipe can set."""

from __future__ import annotations

import functools
import math
import time
from pathlib import Path

import gradio as gr
import pandas as pd
from PIL import Image

from latentindigo.demo import live, server
from latentindigo.demo.controls import (METHOD_NAMES, Number, Slider, photo_examples, photo_input, prior_dropdown,
                                        run_buttons, scale_slider, seed_number, status_box, steps_slider)
from latentindigo.demo.server import on_gpu, recipe_text, session, user_errors, wire_run
from latentindigo.errors import UserError
from latentindigo.serving import (PreviewPacer, busy_note, cached_start, duration, held_first_stages, pick_seed,
                                  read_photo, run_events, scratch_folder)
from latentindigo.settings import Settings, local_folder, max_output_pixels, output_size

# the sampler settings the Restore tab's controls set; their defaults are the chosen prior's tuned settings
TUNED_CONTROLS = ("realism", "guidance", "steps", "refine", "refine_lr", "reg_every", "reg_strength", "latent_reg",
                  "start", "eta", "colour_fix", "early_stop")
# the controls a result PNG's recipe sets
RECIPE_CONTROLS = ("prior", "mode", "scale", "width", "height", "seed", "prompt") + TUNED_CONTROLS
LATENT_REGS = [("spread matching (free)", "spread"), ("projection through the VAE", "projection")]
MODES = [("LatentINN", "latent"), ("PixelINN", "pixel")]  # where the INN guides
# the fidelity-realism presets: the realism control and the sampler's fresh noise (none where only fidelity counts)
LOOKS = ("Fidelity", "Balanced", "Realistic")
PHASE_COLOURS = {"guidance": "#4f46e5", "refinement": "#f59e0b", "regularisation": "#10b981"}
UPDATE_EVERY = 0.25  # seconds between streamed status/plot updates (previews and the result always go)
RESTORE_OUTPUTS = ("preview", "plot", "status", "result", "png", "seed", "estimate", "seconds", "maps", "show")
SHOW_ON_RESULT = [("result", "result"), ("consistency map", "consistency"), ("invented detail", "invented")]


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
    seconds = server.JOBS.costs.estimate(prior or server.MODELS.default, mode, int(steps or Settings().steps),
                                         out[0] * out[1])
    if seconds is None:
        return hint
    return f"{hint} · {duration(seconds)} on this server{busy_note(bool(server.JOBS.running))}"


def text_conditioned(spec: str | None) -> bool | None:
    """Whether a prior takes a prompt, without loading it where possible (None: not known before loading)."""
    if not spec:
        return False
    if (prior := server.MODELS.loaded(spec)) is not None:
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


@on_gpu
@user_errors
def restore(image: str | None, prior: str | None = None, mode: str = "latent", guidance: float | None = None,
            steps: int | None = None, scale: float = 4.0, width: int = 0, height: int = 0, seed: int = -1,
            refine: bool | None = None, refine_lr: float | None = None, reg_every: int | None = None,
            reg_strength: float | None = None, latent_reg: str | None = None, start: float | None = None,
            eta: float | None = None, colour_fix: bool | None = None, prompt: str = "", realism: float | None = None,
            early_stop: float | None = None, sent: float | None = None,
            request: gr.Request = None, progress=gr.Progress()):
    """Restore one photo. Streams (preview, consistency plot, status, (before, after), PNG file, seed used,
    estimated degradation, seconds); the last update carries the result. A sampler setting left out (None) is
    the prior's tuned one."""
    from latentindigo.imageio import save_png
    from latentindigo.maps import maps, save_maps
    from latentindigo.sampler import Done, FirstStage, phases

    photo = read_photo(image)
    spec = prior or server.MODELS.default
    size = output_size(photo, width, height)
    given = dict(guidance=guidance, steps=steps, refine=refine, refine_lr=refine_lr, reg_every=reg_every,
                 reg_strength=reg_strength, latent_reg=latent_reg, start=start, eta=eta, colour_fix=colour_fix,
                 realism=realism, early_stop=early_stop)
    library = Settings()  # (its field types: the browser sends numbers as floats)
    prompts = {"prompt": prompt.strip()} if prompt and prompt.strip() else {}
    settings = server.MODELS.settings(prior, method=mode, seed=pick_seed(seed), size=size,
                                      scale=None if size else float(scale), **prompts,
                                      **{k: type(getattr(library, k))(v) for k, v in given.items() if v is not None})
    settings.check(photo.width, photo.height)
    out_w, out_h = settings.output_size(photo.width, photo.height)
    # the server holds this photo's first stages (a new realism, `live`): the start comes at once, and the preview
    # keeps what it shows until then (the new start the realism slider showed)
    held = held_first_stages(photo, settings, server.MODELS, prior)
    yield restore_update(preview=gr.Image(value=None, label="Live preview") if held is None else gr.skip(),
                         plot=consistency_plot([]),
                         status=f"Waiting for the device… ({photo.width}x{photo.height} → {out_w}x{out_h}, "
                                f"seed {settings.seed})",
                         result=None, png=None, seed=settings.seed, estimate="", seconds=None)
    with scratch_folder() as folder:
        with server.JOBS.run("restore", session(request), sent) as job:
            if server.MODELS.loaded(prior) is None:
                for line in server.MODELS.loading(prior):
                    yield restore_update(status=line)
            diffusion_prior = server.MODELS.prior(prior)
            if prompts and diffusion_prior.encode_prompt is None:
                gr.Warning(f"The prior {diffusion_prior.name!r} has no text encoder: the prompt is ignored.")
            rows, pacer, last_update, done, first_stage = [], None, 0.0, None, None
            held = held_first_stages(photo, settings, server.MODELS, prior)  # (another job may have run meanwhile)
            for event in run_events(photo, settings, server.MODELS, prior, job):
                if isinstance(event, Done):
                    done = event
                elif isinstance(event, FirstStage):  # the start: shown while the first diffusion step runs
                    if event.realism != settings.realism and held is not None and "realistic" in held:
                        continue  # (the faithful stage, shown while the realistic one runs: it does not run)
                    yield restore_update(
                        preview=gr.Image(value=event.image,
                                         label=f"Live preview: first stage ({first_stage_name(event.realism)})"),
                        status=f"**First stage** ({first_stage_name(event.realism)}) in {event.seconds:.1f} s · "
                               + ("diffusion starting…" if event.realism == settings.realism else
                                  "realistic stage running…"))
                    first_stage = event.realism
                else:
                    progress((event.step, event.total), desc=event.phase)
                    rows.append({"step": event.step, "consistency": event.consistency, "phase": event.phase})
                    pacer = pacer or PreviewPacer(event.total)
                    # (none of the last step: the result follows; a run that stops at step 1 decodes nothing)
                    preview = pacer.decode(event) if pacer.due(event.step) and not event.last else None
                    if preview is None and time.perf_counter() - last_update < UPDATE_EVERY:
                        continue
                    last_update = time.perf_counter()
                    caption = f"Step {event.step}/{event.total} · {event.phase}"
                    left = job.time_left()
                    yield restore_update(
                        preview=gr.Image(value=preview, label=f"Live preview: {caption}") if preview else gr.skip(),
                        plot=consistency_plot(rows, phases(settings)),
                        status=f"**{caption}** · consistency error {event.consistency:.4f} ({event.space} space)"
                               + (f" · {duration(left)} left" if left is not None else ""))
            if done is None:  # stopped
                shows = ("; the preview shows the last estimate" if job.total else
                         f"; the preview shows the first stage ({first_stage_name(first_stage)})"
                         if first_stage is not None else "")
                yield restore_update(status=f"{job.stopped()}{shows}.")
                return
            server.JOBS.costs.record(spec, done)
            if settings.uses_realistic:  # makes the next realism's start a multiply-add (`live`)
                cached_start(photo, settings, server.MODELS, prior)
        stem = f"{Path(image).stem}-{mode}-seed{settings.seed}"
        png = str(save_png(done.image, folder / f"{stem}.png", text=recipe_text(done, photo, prior)))
        before = str(save_png(photo.resize(done.image.size, Image.BICUBIC), folder / "bicubic.png"))
        m = maps(done)
        written = save_maps(m, done.image, folder, stem)
        gallery = [(str(written["consistency-overlay"]), f"consistency map · {m.consistency_psnr:.1f} dB"),
                   (str(written["invented-overlay"]), "invented detail")]
        note = f" ({diffusion_prior.notice})" if done.latent_inn_trained is False and diffusion_prior.notice else ""
        yield restore_update(
            preview=gr.Image(value=png, label="Result"), plot=consistency_plot(rows, phases(settings)),
            status=f"**Done** in {done.seconds:.1f} s: {out_w}x{out_h}, {METHOD_NAMES[mode]}, "
                   f"prior {diffusion_prior.name}, seed {settings.seed}, consistency with the photo "
                   f"{m.consistency_psnr:.1f} dB{note}. {done.summary[0].upper() + done.summary[1:]}.",
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
                  prompt=settings.prompt,
                  **{name: getattr(settings, name) for name in TUNED_CONTROLS})
    status = (f"Controls set from the recipe of {Path(path).name} (seed {settings.seed}, {settings.steps} steps): "
              "upload the same photo and press **Restore** to get the same result")
    if skipped:
        status += "; not set: " + ", ".join(skipped)
    return [values[name] for name in RECIPE_CONTROLS] + [status + "."]


def tuned_controls(spec: str | None) -> list:
    """Values for the Restore tab's sampler controls (TUNED_CONTROLS): prior `spec`'s tuned settings, set when the
    user picks that prior."""

    try:
        values = server.MODELS.settings(spec)
    except UserError as e:
        raise gr.Error(str(e), print_exception=False) from None
    return [getattr(values, name) for name in TUNED_CONTROLS]


def build(demo: gr.Blocks, choices: list[tuple[str, str]], tuned: Settings) -> None:
    """The tab's controls, with the default prior's `tuned` settings, and its events."""
    with gr.Tab("Restore", id="restore"):
        with gr.Row():
            with gr.Column(scale=2, min_width=320):
                image = photo_input("Low-quality photo", "input-image")
                photo_examples(image)
                prior = prior_dropdown(choices)
                mode = gr.Radio(MODES, value="latent", label="Mode",
                                info="where the INN enforces the photo's content: LatentINN guides in latent space "
                                     "(fast), PixelINN in pixels (decode + encode a step)")
                look = gr.Radio(list(LOOKS), value="Balanced", label="Look", elem_id="look",
                                info="Fidelity: the restorer, closest to the photo; Realistic: Real-ESRGAN's crisp "
                                     "detail on the restorer's coarse content")
                realism = Slider(0, 1, value=tuned.realism, step=0.01, label="Realism", elem_id="realism",
                                 info="0: faithful (highest PSNR, soft), 1: realistic (natural texture, some invented "
                                      "structure)")
                guidance = Slider(0, 2, value=tuned.guidance, step=0.05, label="Guidance strength",
                                  info="0: free prior, 1: the photo's coarse content replaces the estimate's")
                steps = steps_slider(tuned.steps, "steps")
                with gr.Row():
                    scale = scale_slider(min_width=160)
                    width = Number(0, minimum=0, maximum=16384, precision=0, label="Width", min_width=80)
                    height = Number(0, minimum=0, maximum=16384, precision=0, label="Height", min_width=80)
                hint = gr.Markdown(size_hint(None, 4, 0, 0), elem_id="size-hint")
                seed = seed_number(-1, "-1: a random seed (the one used is shown with the result)")
                recipe_file = gr.File(label="Recipe: drop a result PNG to set every control as it was",
                                      file_types=[".png"], type="filepath", height=100, elem_id="recipe")
                with gr.Accordion("Advanced", open=False):
                    with gr.Row():
                        refine = gr.Checkbox(tuned.refine, label="Refinement",
                                             info="adapt the INN to this photo while sampling")
                        refine_lr = Number(tuned.refine_lr, minimum=0, maximum=0.01, label="Refinement learning rate")
                    with gr.Row():
                        reg_every = Slider(0, 50, value=tuned.reg_every, step=1, label="Regularise every N steps",
                                           info="0: off")
                        reg_strength = Slider(0, 1, value=tuned.reg_strength, step=0.05,
                                              label="Regularisation strength")
                    latent_reg = gr.Radio(LATENT_REGS, value=tuned.latent_reg, label="LatentINN regularisation",
                                          info="projection: sharper, a decode and an encode each time")
                    with gr.Row():
                        start = Slider(0.05, 1, value=tuned.start, step=0.05, label="Start strength",
                                       info="noise level the sampler starts from: higher invents more")
                        eta = Slider(0, 1, value=tuned.eta, step=0.05, label="Eta",
                                     info="fresh noise per step: 0 deterministic (DDIM), 1 as DDPM; more gives more "
                                          "texture")
                    with gr.Row():
                        colour_fix = gr.Checkbox(tuned.colour_fix, label="Colour fix",
                                                 info="coarse content from the first stage, fine detail from the "
                                                      "diffusion")
                        early_stop = Number(tuned.early_stop, minimum=0, maximum=255, label="Early stop (grey levels)",
                                            elem_id="early-stop",
                                            info="stop when a step moves the result by less than this (RMS); when "
                                                 "the whole diffusion moves it by less, keep the start; 0: every "
                                                 "step")
                    prompt = prompt_box(server.MODELS.default, value="", label="Prompt", max_length=500, lines=1,
                                        elem_id="prompt",
                                        info="text-conditioned priors only; empty: a neutral quality prompt")
                buttons = run_buttons("Restore", "restore-button", stop_elem_id="stop-button")
            with gr.Column(scale=3, min_width=360):
                status = status_box("Upload a photo and press **Restore**.", "status", min_height=40)
                with gr.Row(equal_height=True):
                    preview = gr.Image(label="Live preview", format="png", interactive=False, height=280,
                                       elem_id="preview")
                    plot = gr.LinePlot(consistency_plot([]), x="step", y="consistency", color="phase",
                                       color_map=PHASE_COLOURS, label="Consistency error over steps",
                                       y_title="RMS error", elem_id="consistency-plot")
                gr.Markdown("*Consistency plot:* each phase's error after it ran: guidance puts the photo's coarse "
                            "content into the estimate (0 at guidance 1, where the INN is exact), refinement shows "
                            "how well the forward model, which it adapts, fits the prior's estimate, and "
                            "regularisation (every few steps and at the last) pulls the estimate back towards what "
                            "the prior makes, which moves the error again.",
                            elem_id="plot-caption")
                result = gr.ImageSlider(label="Before (bicubic) / after", format="png", interactive=False,
                                        max_height=600, elem_id="result-slider")
                show = gr.Radio(SHOW_ON_RESULT, value="result", label="Show on the result", elem_id="show",
                                info="consistency map: where the result disagrees with the photo (through the forward "
                                     "model); invented detail: what diffusion added over the first stage")
                maps_gallery = gr.Gallery(label="Maps", format="png", columns=2, height=200, interactive=False,
                                          object_fit="contain", elem_id="maps")
                with gr.Row():
                    png = gr.File(label="Download PNG", interactive=False, elem_id="download")
                    with gr.Column():
                        estimate = gr.Textbox(label="Estimated degradation", interactive=False)
                        # shown once a run has given them: before, Gradio would show its empty value as 0
                        with gr.Row(visible=False) as numbers:
                            seed_used = gr.Number(label="Seed used", interactive=False, precision=0,
                                                  elem_id="seed-used")
                            seconds = gr.Number(label="Time (s)", interactive=False, elem_id="seconds")
        restore_inputs = [image, prior, mode, guidance, steps, scale, width, height, seed, refine, refine_lr,
                          reg_every, reg_strength, latent_reg, start, eta, colour_fix, prompt, realism, early_stop]
        restore_outputs = [preview, plot, status, result, png, seed_used, estimate, seconds, maps_gallery, show]
        ran = wire_run("restore", restore, buttons, inputs=restore_inputs, outputs=restore_outputs,
                       status=status, progress_on=[result], show_progress="full")

        def show_numbers(event):
            event.success(lambda: gr.Row(visible=True), None, numbers, queue=False, show_progress="hidden",
                          api_visibility="private")

        show_numbers(ran)
        for control in (image, scale, width, height, prior, mode, steps):
            control.change(size_hint, [image, scale, width, height, prior, mode, steps], hint, queue=False,
                           show_progress="hidden", api_visibility="private")
        prior.change(prompt_box, prior, prompt, queue=False, show_progress="hidden", api_visibility="private")
        controls = dict(guidance=guidance, steps=steps, refine=refine, refine_lr=refine_lr, reg_every=reg_every,
                        reg_strength=reg_strength, latent_reg=latent_reg, start=start, eta=eta, colour_fix=colour_fix,
                        realism=realism, early_stop=early_stop)
        looked = look.input(lambda chosen, spec: look_controls(chosen, server.MODELS.settings(spec)), [look, prior],
                            [realism, eta], queue=False, show_progress="hidden", api_visibility="private")
        # after a run, a new realism shows its start at once and runs the diffusion from it
        live.wire([realism.release, looked.then], restore, restore_inputs, restore_outputs,
                  [image, prior, mode, scale, width, height, realism], preview, status, buttons[1], [result],
                  show_numbers)
        # (input: the user's pick only; a recipe sets the prior and its own settings together)
        prior.input(tuned_controls, prior, [controls[name] for name in TUNED_CONTROLS],
                    queue=False, show_progress="hidden", api_visibility="private")
        show.change(show_on_result, [show, result, maps_gallery, png], result, queue=False,
                    show_progress="hidden", api_visibility="private")
        recipe_controls = dict(controls, prior=prior, mode=mode, scale=scale, width=width, height=height, seed=seed,
                               prompt=prompt)
        recipe_file.upload(functools.partial(controls_from_recipe, choices=[spec for _, spec in choices]),
                           recipe_file, [recipe_controls[name] for name in RECIPE_CONTROLS] + [status],
                           queue=False, show_progress="hidden", api_visibility="private")
        demo.load(prompt_box, prior, prompt, queue=False, show_progress="hidden", api_visibility="private")
