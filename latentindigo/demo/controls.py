"""The controls the tabs share, each built in one place: photo inputs (checked on upload) with their examples,
number inputs that name themselves in range errors, and the prior, methods, steps, scale, seed, Run/Stop,
status and results builders.

Gradio writes `controls.pyi` beside this file (its stubs for the components defined here; git ignores it).
"""

from __future__ import annotations

import math
from pathlib import Path

import gradio as gr

from latentindigo.demo import server
from latentindigo.errors import UserError
from latentindigo.serving import read_photo
from latentindigo.settings import ASSETS, MAX_SCALE, realistic_package

EXAMPLES = ASSETS / "examples"
METHOD_NAMES = {"latent": "LatentINN", "pixel": "PixelINN", "first-stage": "first stage (the start)",
                "faithful": "faithful (restorer)", "realistic": "realistic (Real-ESRGAN)", "inn": "INN only",
                "bicubic": "bicubic", "sdedit": "SDEdit", "dps": "DPS"}
COMPARE_METHODS = ("latent", "pixel", "first-stage", "faithful", "realistic", "inn", "bicubic", "sdedit")


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


def photo_examples(photo: ImageInput, folder: Path = EXAMPLES, label: str = "Examples") -> None:
    """The folder's PNGs as examples for `photo`, if it has any."""
    examples = sorted(folder.glob("*.png"))
    if examples:
        gr.Examples([[str(p)] for p in examples], inputs=[photo], label=label,
                    example_labels=[p.stem for p in examples])


def prior_dropdown(choices: list[tuple[str, str]]) -> gr.Dropdown:
    return gr.Dropdown(choices, value=server.MODELS.default, label="Diffusion prior",
                       info="More priors: start the app with --prior SPEC")


def methods_box(ticked: tuple[str, ...]) -> gr.CheckboxGroup:
    """Every method of COMPARE_METHODS, `ticked` ticked but `realistic` where its package is missing (it would
    fail the job)."""
    value = [m for m in ticked if m != "realistic" or realistic_package() is not None]
    return gr.CheckboxGroup([(METHOD_NAMES[m], m) for m in COMPARE_METHODS], value=value, label="Methods")


def steps_slider(value: int, elem_id: str) -> Slider:
    return Slider(1, 200, value=value, step=1, label="Steps", elem_id=elem_id)


def scale_slider(label: str = "Scale factor", **layout) -> Slider:
    return Slider(1, MAX_SCALE, value=4, step=0.5, label=label, **layout)


def seed_number(value: int, info: str) -> Number:
    return Number(value, minimum=-1, maximum=2**31 - 1, precision=0, label="Seed", info=info)


def run_buttons(label: str, elem_id: str, stop_elem_id: str | None = None) -> tuple[gr.Button, gr.Number, gr.Button]:
    """(Run, the hidden time it was sent, Stop) in a row, for `server.wire_run`."""
    with gr.Row():
        run = gr.Button(label, variant="primary", elem_id=elem_id)
        sent = gr.Number(visible=False)  # set by SENT_AT
        stop = gr.Button("Stop", variant="stop", elem_id=stop_elem_id)
    return run, sent, stop


def status_box(text: str, elem_id: str, **layout) -> gr.Markdown:
    return gr.Markdown(text, label="Status", container=True, elem_id=elem_id, **layout)


def results_gallery(label: str, elem_id: str) -> gr.Gallery:
    return gr.Gallery(label=label, format="png", columns=3, height="auto", interactive=False, object_fit="contain",
                      elem_id=elem_id)
