"""The Restore tab's live realism: after a run, moving Realism (or picking a Look) shows the new start at once,
made from the first stages the server holds for the photo (`serving.cached_start`: no network runs), then runs the
diffusion from it as a new job, the Restore tab's own run: one job at a time on the device, Stop ends it, and the
newest value wins (a value set while the job runs or waits runs after it, with the controls as they are then).

Without first stages for this photo at this output size (no run yet, a new photo or size, another job since), or
with no photo or a setting the run would refuse, it says why in the status line and starts nothing.
"""

from __future__ import annotations

import hashlib
import io
import time
from pathlib import Path

import gradio as gr
from gradio.utils import get_upload_folder
from PIL import Image

from latentindigo.demo import server
from latentindigo.demo.server import RUN_TRIGGER, SENT_AT, session
from latentindigo.errors import UserError
from latentindigo.serving import cached_start, held_first_stages, read_photo
from latentindigo.settings import output_size


def new_start(image: str | None, prior: str | None, mode: str, scale: float, width: float | None,
              height: float | None, realism: float, request: gr.Request = None) -> tuple:
    """(the preview, the status line, whether the run goes on) for a new realism: the new start in the preview when
    the server holds this photo's first stages at this output size. Runs no network."""
    from latentindigo.imageio import to_image

    t0 = time.perf_counter()
    what = f"Realism {realism:g}"
    if not image:
        return gr.skip(), f"{what}: no photo yet; upload one and press **Restore**.", False
    try:
        photo = read_photo(image)
        size = output_size(photo, width, height)
        settings = server.MODELS.settings(prior, method=mode, size=size, scale=None if size else float(scale),
                                          realism=float(realism))
        settings.check(photo.width, photo.height)
        held = held_first_stages(photo, settings, server.MODELS, prior)  # (a missing package says so here)
    except UserError as e:
        return gr.skip(), f"{what}: nothing runs, {e}.", False
    job = server.JOBS.running.get(session(request) or "")
    if job is not None and job.kind == "restore":  # its stream owns the preview: the new value runs after it
        return gr.skip(), f"{what}: runs when the current job ends.", True
    out_w, out_h = settings.output_size(photo.width, photo.height)
    if held is None:
        return (gr.skip(), (f"{what}: press **Restore** first; the server holds no first stages for this photo at "
                            f"{out_w}x{out_h} (a new photo or size, or another job since)."), False)
    if server.spaces is not None and held["faithful"].device.type != "cpu":  # ZeroGPU: no GPU outside a job
        return gr.skip(), f"{what}: the diffusion runs from the new start once the GPU is attached…", True
    start = cached_start(photo, settings, server.MODELS, prior)
    if start is None:  # the last run had realism 0
        return gr.skip(), f"{what}: the realistic stage runs first (the last run did not need it)…", True
    preview = gr.update(value=start_file(to_image(start)), label=f"Live preview: the start at realism {realism:g}")
    return (preview, (f"**{what}**: the new start, from this photo's first stages in "
                      f"{time.perf_counter() - t0:.2f} s · the diffusion runs from it…"), True)


def start_file(image: Image.Image) -> str:
    """The start as a JPEG of quality 95 in gradio's file cache, where it would put it (a folder named by its
    hash): encoded in about a millisecond at 512x512, where gradio's PNG for the preview's format takes about 90 ms,
    and it is a quarter of the bytes to send."""
    data = io.BytesIO()
    image.save(data, format="JPEG", quality=95)
    folder = Path(get_upload_folder()) / hashlib.sha256(data.getvalue()).hexdigest()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "start.jpg"
    path.write_bytes(data.getvalue())
    return str(path)


def go_on(go: bool) -> None:
    """Ends the chain here (silently: the status line has said why) unless the run goes on."""
    if not go:
        raise gr.Error("the run does not go on", visible=False, print_exception=False)


def wire(triggers: list, restore, inputs: list, outputs: list, new_start_inputs: list, preview: gr.Image,
         status: gr.Markdown, sent: gr.Number, progress_on: list, after) -> None:
    """On each trigger (an event listener such as `realism.release`): `new_start` at once (not queued), then,
    unless it said no, `restore` (its `inputs` + the time it was sent) as the Restore button runs it, and `after`
    on its success."""
    go = gr.State(False)
    for trigger in triggers:
        shown = trigger(new_start, new_start_inputs, [preview, status, go], queue=False, show_progress="hidden",
                        trigger_mode="always_last", api_visibility="private")
        ran = shown.success(go_on, go, None, queue=False, show_progress="hidden", api_visibility="private").success(
            restore, inputs=inputs + [sent], outputs=outputs, concurrency_limit=1, concurrency_id="device",
            show_progress_on=progress_on, show_progress="full", trigger_mode=RUN_TRIGGER, js=SENT_AT,
            api_visibility="private")
        after(ran)
