"""The evaluation set: x4 from 64x64 to 256x256 with blur + noise + JPEG, from the validation photos.

    python -m scripts.make_eval_set --photos data/photos/val --out data/eval

Three 256x256 ground-truth crops per photo (left, centre, right of a 256-high resize) and their degraded
64x64 versions, each with its own seeded blur (sigma 0.8-1.6), Gaussian noise (2-8 levels) and JPEG
quality (60-90). Writes OUT/gt/*.png, OUT/lq/*.png and OUT/degradations.json.
"""

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

from latentindigo.degradations import Degradation, degrade
from latentindigo.imageio import save_png, to_image, to_tensor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, default=Path("data/photos/val"))
    parser.add_argument("--out", type=Path, default=Path("data/eval"))
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--scale", type=int, default=4)
    args = parser.parse_args()
    records = {}
    for i, path in enumerate(sorted(args.photos.glob("*.png"))):
        photo = Image.open(path).convert("RGB")
        photo = photo.resize((max(args.size, round(photo.width * args.size / photo.height)), args.size),
                             Image.Resampling.LANCZOS)
        for j, left in enumerate(np.linspace(0, photo.width - args.size, 3).round().astype(int)):
            name = f"{path.stem}_{j}"
            gt = photo.crop((left, 0, left + args.size, args.size))
            rng = np.random.default_rng(1000 * i + j)
            d = Degradation(scale=args.scale, blur=float(rng.uniform(0.8, 1.6)), noise=float(rng.uniform(2, 8)),
                            jpeg=int(rng.integers(60, 91)), seed=1000 * i + j)
            save_png(gt, args.out / "gt" / f"{name}.png")
            save_png(to_image(degrade(to_tensor(gt), d)), args.out / "lq" / f"{name}.png")
            records[name] = d.to_dict()
    (args.out / "degradations.json").write_text(json.dumps(records, indent=1))
    print(f"{len(records)} pairs in {args.out}")


if __name__ == "__main__":
    main()
