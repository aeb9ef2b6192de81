"""Speed of the demo's live realism on this machine: after one run of a photo, the start for a new realism made from
the first stages the server holds (`serving.cached_start`, then the JPEG the preview is sent), at 512x512 output.

    python benchmarks/bench_live_realism.py [--photo assets/examples/hopper.png] [--repeats 5] [--threads 1]

Prints the first run's seconds, the first new start's (it blurs the two stages once: `first_stages.realism_detail`,
which the Restore tab does at the end of a run), then per realism the median seconds of reading the photo, the
cache look-up and the multiply-add, the conversion to an image and the JPEG, and a JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photo", default=str(ROOT / "assets" / "examples" / "hopper.png"))
    parser.add_argument("--size", type=int, default=512, help="output width and height")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the browser test's server uses 1)")
    args = parser.parse_args()

    import torch

    from latentindigo.demo.live import start_file
    from latentindigo.imageio import to_image
    from latentindigo.serving import Jobs, Models, cached_start, read_photo, run_method

    torch.set_num_threads(args.threads)
    models = Models(["mini"], device="cpu")
    photo = read_photo(args.photo)
    settings = models.settings("mini", method="latent", seed=0, size=(args.size, args.size))
    t0 = time.perf_counter()
    with Jobs().run("restore", None) as job:
        run_method(photo, settings, models, "mini", job)
    first_run = time.perf_counter() - t0
    t0 = time.perf_counter()
    cached_start(photo, replace(settings, realism=0.5), models, "mini")
    first_start = time.perf_counter() - t0

    rows = {}
    for realism in (0.0, 1 / 3, 2 / 3, 1.0):
        parts = {"read": [], "start": [], "image": [], "jpeg": [], "total": []}
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            again = read_photo(args.photo)
            t1 = time.perf_counter()
            start = cached_start(again, replace(settings, realism=realism), models, "mini")
            t2 = time.perf_counter()
            image = to_image(start)
            t3 = time.perf_counter()
            start_file(image)
            t4 = time.perf_counter()
            for name, seconds in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0), strict=True):
                parts[name].append(seconds)
        rows[f"{realism:.2f}"] = {name: statistics.median(v) for name, v in parts.items()}

    print(f"{photo.width}x{photo.height} -> {args.size}x{args.size}, {args.threads} thread(s): first run "
          f"{first_run:.1f} s, first new start {first_start:.3f} s (the stages blurred once)")
    print("realism  read    start   image   jpeg    total (s, medians)")
    for realism, row in rows.items():
        print(f"{realism:>7}  " + "  ".join(f"{row[name]:.4f}" for name in ("read", "start", "image", "jpeg", "total")))
    print(json.dumps({"first_run": first_run, "first_start": first_start, "realism": rows}))


if __name__ == "__main__":
    main()
