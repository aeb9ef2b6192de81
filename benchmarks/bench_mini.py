"""Speed of the bundled prior on this machine: 64x64 -> 256x256 with default settings.

    python benchmarks/bench_mini.py [--method latent] [--repeats 3]

Prints the time to load `mini` (and the pixel models), then for each example photo (assets/examples/clean,
cropped and degraded to 64x64 with blur, noise and JPEG) the seconds per image and the time from calling
the sampler to its first preview (the first-stage estimate R(y), which the demo shows at once) and to its
first step event (the first diffusion preview), and their medians, as a table and a JSON line.
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


def inputs() -> list:
    from PIL import Image

    from latentindigo.degradations import Degradation, degrade
    from latentindigo.imageio import to_image, to_tensor

    out = []
    for i, path in enumerate(sorted((ROOT / "assets" / "examples" / "clean").glob("*.png"))):
        image = Image.open(path).convert("RGB")
        side = min(image.size)
        image = image.crop((0, 0, side, side)).resize((256, 256), Image.Resampling.LANCZOS)
        out.append((path.stem, to_image(degrade(to_tensor(image), Degradation(scale=4, blur=1.2, noise=5, jpeg=75,
                                                                             seed=i)))))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prior", default="mini")
    parser.add_argument("--method", default="latent")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    start = time.perf_counter()
    import torch  # noqa: F401  (imports are part of a cold start, reported separately)
    from diffusers import AutoencoderKL, UNet2DModel  # noqa: F401  (diffusers imports its models lazily)

    from latentindigo.priors import load_prior
    from latentindigo.sampler import Done, FirstStage, Step, load_pixel_models, restore, run
    from latentindigo.settings import settings_for

    imported = time.perf_counter() - start
    start = time.perf_counter()
    prior = load_prior(args.prior, device="cpu")
    pixel = load_pixel_models()
    loaded = time.perf_counter() - start

    photos = inputs()
    settings = settings_for(args.prior, method=args.method, scale=4)
    run(photos[0][1], replace(settings, steps=1), prior, pixel)  # warm-up
    rows = []
    for name, photo in photos:
        for _ in range(args.repeats):
            start, first, first_step = time.perf_counter(), None, None
            for event in restore(photo, settings, prior, pixel):
                if isinstance(event, FirstStage) and first is None:  # (the faithful stage, when realism > 0)
                    first = time.perf_counter() - start
                if isinstance(event, Step) and first_step is None:
                    first_step = time.perf_counter() - start
                if isinstance(event, Done):
                    rows.append({"photo": name, "seconds": time.perf_counter() - start, "first_preview": first,
                                 "first_step": first_step})
    print(f"imports {imported:.2f} s, loading {args.prior} + pixel models {loaded:.2f} s; "
          f"{args.method}, the prior's tuned settings ({settings.steps} steps, {settings.latent_reg} every "
          f"{settings.reg_every}, eta {settings.eta:g}), 64x64 -> 256x256, "
          f"{torch.get_num_threads()} threads")
    print("| photo | s/image | first preview (s) | first step event (s) |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['photo']} | {r['seconds']:.2f} | {r['first_preview']:.2f} | {r['first_step']:.2f} |")
    median = statistics.median(r["seconds"] for r in rows)
    first = statistics.median(r["first_preview"] for r in rows)
    first_step = statistics.median(r["first_step"] for r in rows)
    print(f"median {median:.2f} s per image, first preview (R(y)) after {first:.2f} s, first step event after "
          f"{first_step:.2f} s")
    print(json.dumps({"imports": imported, "load": loaded, "median_seconds": median, "median_first_preview": first,
                      "median_first_step": first_step, "rows": rows}))


if __name__ == "__main__":
    main()
