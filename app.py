"""LatentINDIGO demo: restore low-quality photos in the browser, or through the API.

    python app.py                                     # http://127.0.0.1:7860 with the bundled `mini` prior
    python app.py --prior tiny-random --port 7861     # tiny random prior (tests, UI work), another port
    python app.py --prior ./my-prior --host 0.0.0.0   # a diffusers folder, served to the network

Tabs: Restore (one photo, with a live preview of the sampler), Compare (one photo and seed through several
methods), Degradation lab (degrade a clean photo, restore it, PSNR/SSIM against the original).
API endpoints: /restore and /compare stream their updates, /lab, /stop (ends this session's run).
Every option has an environment variable too: `python app.py --help`.

This file launches the page and wires the tabs into it; each tab is built in its own module of
`latentindigo/demo/` (restore_tab, compare_tab, lab_tab), from the controls they share (controls), with what
the server keeps for every tab (server: the priors offered, one job at a time on the device, Stop).

The page is served before torch and the library are imported (that takes seconds, diffusers more): they are
imported where they are used, and a thread loads the default prior right after the launch.
"""

from __future__ import annotations

import argparse
import os
import threading

import gradio as gr

from latentindigo.demo import compare_tab, lab_tab, restore_tab, server
from latentindigo.demo.controls import EXAMPLES
from latentindigo.serving import Models

# Priors the dropdown always offers: name -> label. Any other spec comes in through --prior or
# LATENTINDIGO_PRIORS. sd21 is offered everywhere: without a network and a cached copy, choosing it says how
# to pre-download it.
NAMED_PRIORS = {
    "mini": "mini (bundled, runs on a CPU)",
    "sd21": "Stable Diffusion 2.1-base (GPU; ~2.6 GB download on first use)",
}
MAX_UPLOAD = "64mb"


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
    choices = offered_priors(specs)
    server.MODELS = Models([spec for _, spec in choices], device, threads, default=specs[0] if specs else None,
                           calibrate=calibrate)
    tuned = server.MODELS.settings(None)
    with gr.Blocks(title="LatentINDIGO", delete_cache=(3600, 4 * 3600)) as demo:
        gr.Markdown(INTRO)
        with gr.Tabs():
            restore_tab.build(demo, choices, tuned)
            compare_tab.build(choices, tuned)
            lab_tab.build(choices, tuned)
        gr.api(server.stop, api_name="stop", queue=False)
    return demo


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads > 0:  # torch is imported later and reads these; warm_up also sets them
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(args.threads)
    demo = build_demo(args.prior, args.device, args.threads, args.calibrate)
    demo.queue(max_size=args.max_queue, default_concurrency_limit=1)
    demo.launch(server_name=args.host, server_port=args.port, ssr_mode=False, max_file_size=MAX_UPLOAD,
                allowed_paths=[str(EXAMPLES)], prevent_thread_lock=True, footer_links=["api", "gradio"], css=CSS)
    threading.Thread(target=server.MODELS.warm_up, args=(server.JOBS,), daemon=True, name="warm-up").start()
    demo.block_thread()


if __name__ == "__main__":
    main()
