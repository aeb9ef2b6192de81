"""What a default run costs against its first stages, and how well the demo's size line predicts it, by input size
(x4 with the bundled prior's tuned settings, realism included; the demo's estimate is fitted as at its start-up).

    python benchmarks/bench_interactive.py [--sizes 64x64 128x128 256x256 640x480] [--repeats 2]

Per input size, side by side in one process (the two alternate, so a noisy machine slows both): the seconds of
the first stages alone (`--method first-stage`: restorer, Real-ESRGAN, their combination) and of the default run
(LatentINN), medians over the repeats; their ratio, the median of each repeat's (a pair runs back to back, so
its ratio is the least disturbed by a load that comes and goes) with the range; the steps the default took,
and the size line's estimate (`RunCosts` after the start-up's two timed runs, `serving.Jobs.time_first_runs`)
against the measured time.
Every run computes its first stages (no cache), as a new photo would.
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


def photo(width: int, height: int, seed: int = 0):
    """A real photo cropped to the aspect, degraded to width x height (x4 blur, noise, JPEG)."""
    from PIL import Image

    from latentindigo.degradations import Degradation, degrade
    from latentindigo.imageio import to_image, to_tensor

    clean = Image.open(ROOT / "assets" / "examples" / "clean" / "chelsea.png").convert("RGB")
    clean = clean.resize((width * 4, height * 4), Image.Resampling.LANCZOS)
    return to_image(degrade(to_tensor(clean), Degradation(scale=4, blur=1.2, noise=5, jpeg=75, seed=seed)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["64x64", "128x128", "256x256", "640x480"])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    import torch

    from latentindigo.sampler import load_pixel_models, run
    from latentindigo.serving import Jobs, Models

    models = Models(["mini"])
    jobs = Jobs()
    models.warm_up(jobs)  # as the demo starts: loads the models and times two short runs for the size line
    default = models.settings(None, scale=4)
    prior, pixel = models.prior(), load_pixel_models()
    print(f"{torch.get_num_threads()} threads; default: {default.method}, realism {default.realism:g}, "
          f"{default.steps} steps, early stop {default.early_stop:g} grey levels")
    print("| input | output | first stages (s) | default (s) | default / first stages (range) | steps taken | "
          "size line's estimate (s) | estimate / measured |\n|---|---|---|---|---|---|---|---|")
    rows = []
    for size in args.sizes:
        width, height = (int(n) for n in size.split("x"))
        image = photo(width, height)
        estimate = jobs.costs.estimate("mini", default.method, default.steps, width * height * 16)
        first, full, taken = [], [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            run(image, replace(default, method="first-stage"), prior, pixel)
            first.append(time.perf_counter() - start)
            start = time.perf_counter()
            done = run(image, default, prior, pixel)
            full.append(time.perf_counter() - start)
            taken.append(done.steps_taken)
        ratios = [f / s for f, s in zip(full, first)]
        row = {"input": size, "output": f"{width * 4}x{height * 4}", "first_stages": statistics.median(first),
               "default": statistics.median(full), "ratios": ratios, "steps_taken": taken, "estimate": estimate}
        rows.append(row)
        print(f"| {size} | {row['output']} | {row['first_stages']:.2f} | {row['default']:.2f} | "
              f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}) | "
              f"{', '.join(map(str, taken))} | {estimate:.1f} | {estimate / row['default']:.2f} |", flush=True)
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
