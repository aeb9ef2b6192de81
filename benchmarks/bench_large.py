"""A large photo on the CPU: seconds and peak memory of the first stages alone, of the default run, and of the
default run in the demo's Restore tab, side by side, for one input size at x4 with the bundled prior's tuned
settings; and the demo's size line's estimate against the tab's measured time.

    python benchmarks/bench_large.py [--size 640x480] [--prior mini]

Each run is its own process (peak memory is a process's high-water mark, and torch's allocations are not seen by
tracemalloc): `method="first-stage"` (the faithful stage and, at the tuned realism, Real-ESRGAN and the
combination: the start the diffusion would get), the prior's default method, and the Restore tab's function with
no setting changed (`restore_tab.restore`, in-process as the browser calls it: previews, maps, PNG and recipe
included), after the server's start-up (models loaded, `time_first_runs` fitting the size line). Seconds are the
run's, models loaded before; peak RSS is the process's maximum resident set (ru_maxrss, models, Python and torch
included), and "loaded" the resident set once the models are in. The input: a crop of assets/examples/clean/chelsea.png resized
to the size (Lanczos), then noise 3/255 and JPEG quality 75 at that size.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def photo(width: int, height: int):
    from PIL import Image

    from latentindigo.degradations import Degradation, degrade
    from latentindigo.imageio import to_image, to_tensor

    clean = Image.open(ROOT / "assets" / "examples" / "clean" / "chelsea.png").convert("RGB")  # 128 x 128
    crop = min(128, round(128 * width / height)), min(128, round(128 * height / width))
    left, top = (128 - crop[0]) // 2, (128 - crop[1]) // 2
    clean = clean.crop((left, top, left + crop[0], top + crop[1])).resize((width, height), Image.Resampling.LANCZOS)
    return to_image(degrade(to_tensor(clean), Degradation(scale=1, noise=3, jpeg=75, seed=0)))


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child(method: str, prior_spec: str, width: int, height: int) -> None:
    """One run in this process; prints its measurements as JSON on the last line."""
    import torch

    from latentindigo.priors import load_prior
    from latentindigo.sampler import load_pixel_models, run
    from latentindigo.settings import DIFFUSION_METHODS, settings_for

    image = photo(width, height)
    settings = settings_for(prior_spec, scale=4, **({"method": method} if method != "default" else {}))
    t0 = time.perf_counter()
    prior = load_prior(prior_spec) if settings.method in DIFFUSION_METHODS else None
    pixel = load_pixel_models()
    if settings.uses_realistic:
        pixel.realistic_model()
    loaded, load_seconds = rss_mib(), time.perf_counter() - t0
    t0 = time.perf_counter()
    done = run(image, settings, prior, pixel)
    seconds = time.perf_counter() - t0
    print(json.dumps(dict(method=settings.method, realism=settings.realism, steps=settings.steps, seconds=seconds,
                          load_seconds=load_seconds, loaded_mib=loaded, peak_mib=rss_mib(), size=done.image.size,
                          threads=torch.get_num_threads())))


def demo_child(prior_spec: str, width: int, height: int) -> None:
    """The Restore tab's run as the demo serves it; prints its measurements as JSON on the last line."""
    import tempfile
    from types import SimpleNamespace

    import torch

    import app
    from latentindigo.demo import restore_tab, server

    app.build_demo([prior_spec])
    t0 = time.perf_counter()
    server.MODELS.warm_up(server.JOBS)  # as app.main's start-up thread: loads, then times two short runs
    loaded, load_seconds = rss_mib(), time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "photo.png"
        photo(width, height).save(path)
        hint = restore_tab.size_hint(str(path), 4.0, 0, 0)
        t0 = time.perf_counter()
        for update in restore_tab.restore(str(path), request=SimpleNamespace(session_hash="bench")):
            last = update
        seconds = time.perf_counter() - t0
    status = str(last[restore_tab.RESTORE_OUTPUTS.index("status")])
    print(json.dumps(dict(seconds=seconds, hint=hint, status=status, load_seconds=load_seconds, loaded_mib=loaded,
                          peak_mib=rss_mib(), threads=torch.get_num_threads())))


def measure(method: str, prior_spec: str, width: int, height: int) -> dict:
    command = [sys.executable, __file__, "--child", method, "--prior", prior_spec, "--size", f"{width}x{height}"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if result.returncode:
        sys.exit(f"{method} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="640x480", help="input WIDTHxHEIGHT (the output is 4x)")
    parser.add_argument("--prior", default="mini")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    width, height = (int(n) for n in args.size.lower().split("x"))
    if args.child:
        return demo_child(args.prior, width, height) if args.child == "demo" else child(args.child, args.prior, width,
                                                                                        height)

    first, full, demo = (measure(method, args.prior, width, height) for method in ("first-stage", "default", "demo"))
    print(f"{width}x{height} -> {first['size'][0]}x{first['size'][1]}, {args.prior}'s tuned settings "
          f"(realism {full['realism']:g}; default method {full['method']}, {full['steps']} steps), "
          f"{full['threads']} threads\n")
    print("| | first stages alone | default run | ratio | default in the demo's Restore tab |")
    print("|---|---|---|---|---|")
    for label, key, unit in (("seconds", "seconds", "s"), ("peak RSS", "peak_mib", " MiB"),
                             ("RSS once the models are loaded", "loaded_mib", " MiB")):
        print(f"| {label} | {first[key]:.1f}{unit} | {full[key]:.1f}{unit} | {full[key] / first[key]:.2f} | "
              f"{demo[key]:.1f}{unit} |")
    print(f"\nThe demo's size line: {demo['hint']}\nIts status at the end: {demo['status']}")
    print(f"\n(loading the models took {first['load_seconds']:.1f} s and {full['load_seconds']:.1f} s, and the demo's "
          f"start-up {demo['load_seconds']:.1f} s, not counted)")


if __name__ == "__main__":
    main()
