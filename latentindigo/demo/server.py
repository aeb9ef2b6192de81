"""What the server keeps for every tab: the priors it offers (`MODELS`) and its one job at a time on the device
(`JOBS`), the Run and Stop buttons' wiring, ZeroGPU, one-line errors, results' recipes.
"""

from __future__ import annotations

import functools
import traceback
from collections.abc import Callable

import gradio as gr
from PIL import Image

from latentindigo.errors import UserError
from latentindigo.serving import Jobs, Models, gpu_seconds
from latentindigo.settings import DIFFUSION_METHODS

try:  # Hugging Face ZeroGPU: a GPU is attached only while a decorated job runs
    import spaces
except ImportError:
    spaces = None

MODELS = Models([])  # app.build_demo replaces it with the priors it offers: read it as server.MODELS
JOBS = Jobs()
# A click while the tab's run is still going is kept and runs next (gradio's default drops it): right after
# Stop, the stopped run may not have ended in the browser yet, and the user's next Run must not be lost.
RUN_TRIGGER = "always_last"


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


def on_gpu(fn: Callable) -> Callable:
    """`fn` with a GPU attached while it runs on ZeroGPU (for `gpu_seconds(fn)` at the most); elsewhere `fn`."""
    return fn if spaces is None else spaces.GPU(duration=gpu_seconds(fn, JOBS.costs, lambda: MODELS.default))(fn)


def wire_run(kind: str, fn: Callable, buttons: tuple[gr.Button, gr.Number, gr.Button], inputs: list, outputs: list,
             status: gr.Markdown, progress_on: list, **options) -> gr.events.Dependency:
    """A tab's Run button calls `fn` as the API's /`kind`, one job at a time on the device, with the time it was
    sent (`SENT_AT`) as its last input; its Stop button ends that run (`stopper`) in `status`. Returns the run's
    event."""
    run, sent, stop_button = buttons
    event = run.click(fn, inputs=inputs + [sent], outputs=outputs, api_name=kind, concurrency_limit=1,
                      concurrency_id="device", show_progress_on=progress_on, trigger_mode=RUN_TRIGGER, js=SENT_AT,
                      **options)
    stop_button.click(stopper(kind), sent, outputs=[status], queue=False, api_visibility="private", js=SENT_AT)
    return event


def recipe_text(done, photo: Image.Image, prior: str | None) -> dict[str, str]:
    """The recipe chunk of a tab's result PNG."""
    from latentindigo.recipe import png_text, recipe
    from latentindigo.sampler import load_pixel_models

    diffusion_prior = MODELS.loaded(prior) if done.settings.method in DIFFUSION_METHODS else None
    return png_text(recipe(done, photo, diffusion_prior, load_pixel_models()))


def tab_progress(progress, label: str):
    """run_method's progress callback for gradio's progress bar, the method's name before the phase."""
    return lambda step, total, phase: progress((step, total), desc=f"{label}: {phase}")

