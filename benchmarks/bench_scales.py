"""Where a default run's time goes as the output grows: 64 -> 256, 128 -> 512, 256 -> 1024 (and 512 -> 2048 with
--sizes), LatentINN with the bundled prior's tuned settings (realism included), on this machine.

    python benchmarks/bench_scales.py [--sizes 64 128 256] [--method latent] [--repeats 1]

Per input size: seconds to the faithful stage (the first FirstStage event), to the start (Real-ESRGAN and the
combination: the second), through the diffusion steps (to the last Step event) and to the result (colour fix,
final consistency, conversion), the total, and the total's seconds per output megapixel with its ratio to the
smallest size's (1.0: the cost follows the pixels).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def photo(side: int):
    from PIL import Image

    from latentindigo.degradations import Degradation, degrade
    from latentindigo.imageio import to_image, to_tensor

    clean = Image.open(ROOT / "assets" / "examples" / "clean" / "chelsea.png").convert("RGB")
    clean = clean.resize((4 * side, 4 * side), Image.Resampling.LANCZOS)
    return to_image(degrade(to_tensor(clean), Degradation(scale=4, blur=1.2, noise=5, jpeg=75, seed=0)))


def timeline(image, settings, prior, pixel) -> dict[str, float]:
    from latentindigo.sampler import Done, FirstStage, Step, restore

    start, marks, stages = time.perf_counter(), {}, 0
    for event in restore(image, settings, prior, pixel):
        now = time.perf_counter() - start
        if isinstance(event, FirstStage):
            stages += 1
            marks["faithful" if stages == 1 else "start"] = now
        elif isinstance(event, Step):
            marks["steps"] = now
        elif isinstance(event, Done):
            marks["total"] = now
    marks.setdefault("start", marks["faithful"])
    return marks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--method", default="latent")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--prior", default="mini")
    args = parser.parse_args()

    import torch

    from latentindigo.priors import load_prior
    from latentindigo.sampler import load_pixel_models, run
    from latentindigo.settings import settings_for

    prior, pixel = load_prior(args.prior), load_pixel_models()
    settings = settings_for(args.prior, method=args.method, scale=4)
    run(photo(32), replace(settings, steps=1), prior, pixel)  # warm-up
    print(f"{args.method}, {args.prior}'s tuned settings ({settings.steps} steps, realism {settings.realism:g}), "
          f"{torch.get_num_threads()} threads; seconds (median of {args.repeats})\n")
    print("| input -> output | faithful stage | + realistic stage | + diffusion steps | + finish | total | "
          "s per output MP | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    first = None
    for side in args.sizes:
        image = photo(side)
        runs = [timeline(image, settings, prior, pixel) for _ in range(args.repeats)]
        m = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        per_mp = m["total"] / (16 * side * side / 1e6)
        first = first or per_mp
        print(f"| {side} -> {4 * side} | {m['faithful']:.2f} | {m['start'] - m['faithful']:.2f} | "
              f"{m['steps'] - m['start']:.2f} | {m['total'] - m['steps']:.2f} | {m['total']:.2f} | "
              f"{per_mp:.1f} | {per_mp / first:.2f} |", flush=True)


if __name__ == "__main__":
    main()
