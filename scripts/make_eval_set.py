"""The evaluation set: x4 from 64x64 to 256x256 with blur + noise + JPEG, from the validation photos.

    python -m scripts.make_eval_set --photos data/photos/val --out data/eval
    python -m scripts.make_eval_set --opencv-doc --crops 1 --out data/eval_opencv   # the independent set

The independent set is 15 photographs of Debian's `opencv-doc` package (its examples/data folder), downloaded
and unpacked here; they are reserved for independent evaluation: never train, tune or choose defaults on them.

Three 256x256 ground-truth crops per photo (left, centre, right of a 256-high resize) and their degraded
64x64 versions, each with its own seeded blur (sigma 0.8-1.6), Gaussian noise (2-8 levels) and JPEG
quality (60-90). Writes OUT/gt/*.png, OUT/lq/*.png and OUT/degradations.json.
"""

import argparse
import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from latentindigo.degradations import Degradation, degrade
from latentindigo.imageio import save_png, to_image, to_tensor


# photographs (not drawings, charts or calibration boards) of opencv-doc's examples/data
OPENCV_DOC_PHOTOS = ("HappyFish", "aero3", "aloeL", "apple", "baboon", "board", "building", "butterfly", "fruits",
                     "home", "leuvenA", "messi5", "orange", "squirrel_cls", "stuff")
OPENCV_DOC_DATA = "usr/share/doc/opencv-doc/examples/data"


def opencv_doc_photos(workdir: Path) -> list[Path]:
    """Download Debian's opencv-doc package and unpack its photographs into workdir."""
    subprocess.run(["apt-get", "download", "opencv-doc"], cwd=workdir, check=True, capture_output=True)
    deb = next(workdir.glob("opencv-doc_*.deb"))
    subprocess.run(["dpkg", "-x", str(deb), str(workdir / "root")], check=True)
    return [workdir / "root" / OPENCV_DOC_DATA / f"{name}.jpg" for name in OPENCV_DOC_PHOTOS]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, default=Path("data/photos/val"))
    parser.add_argument("--out", type=Path, default=Path("data/eval"))
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--crops", type=int, default=3, help="crops per photo: left, centre, right; 1: centre")
    parser.add_argument("--opencv-doc", action="store_true", help="the independent set from Debian's opencv-doc")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        photos = opencv_doc_photos(Path(tmp)) if args.opencv_doc else sorted(args.photos.glob("*.png"))
        records = make_pairs(photos, args)
    (args.out / "degradations.json").write_text(json.dumps(records, indent=1))
    print(f"{len(records)} pairs in {args.out}")


def make_pairs(photos: list[Path], args: argparse.Namespace) -> dict:
    records = {}
    for i, path in enumerate(photos):
        photo = Image.open(path).convert("RGB")
        photo = photo.resize((max(args.size, round(photo.width * args.size / photo.height)), args.size),
                             Image.Resampling.LANCZOS)
        lefts = np.linspace(0, photo.width - args.size, 3).round().astype(int)
        for j, left in enumerate(lefts if args.crops == 3 else lefts[1:2]):
            name = f"{path.stem}_{j}"
            gt = photo.crop((left, 0, left + args.size, args.size))
            rng = np.random.default_rng(1000 * i + j)
            d = Degradation(scale=args.scale, blur=float(rng.uniform(0.8, 1.6)), noise=float(rng.uniform(2, 8)),
                            jpeg=int(rng.integers(60, 91)), seed=1000 * i + j)
            save_png(gt, args.out / "gt" / f"{name}.png")
            save_png(to_image(degrade(to_tensor(gt), d)), args.out / "lq" / f"{name}.png")
            records[name] = d.to_dict()
    return records


if __name__ == "__main__":
    main()
