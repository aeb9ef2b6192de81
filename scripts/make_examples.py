"""Write the demo's example images to `assets/examples/` from scikit-image's bundled photos.

    python -m scripts.make_examples          # needs scikit-image (a test-only dependency)

For each validation photo (astronaut, coffee, chelsea, rocket) this writes
- `assets/examples/clean/NAME.png`: a crop downsized to 128 pixels on its long side, for the
  degradation lab (degrade it there, restore it, and compare with this original);
- `assets/examples/NAME.png`: the same crop downsized to 256 pixels on its long side, then degraded
  x4 (Gaussian blur, bicubic downscale, light Gaussian noise, JPEG), for the restore and compare tabs;
and a real low-quality photo, not degraded by us: `assets/examples/coins.png`, a crop of scikit-image's old,
grainy scan of Greek coins at its own resolution.
The output is deterministic; the files are committed, so the app itself never needs scikit-image.
Sources and licences: `assets/examples/README.md`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout, installed or not

from latentindigo.degradations import Degradation, degrade  # noqa: E402
from latentindigo.imageio import save_png, to_image, to_tensor  # noqa: E402

OUT = ROOT / "assets" / "examples"

# name -> crop box (left, top, right, bottom) in the original photo
CROPS = {
    "astronaut": (64, 0, 384, 320),  # face and shoulders
    "coffee": (0, 0, 600, 400),  # the whole cup, landscape
    "chelsea": (100, 0, 400, 300),  # the cat's face
    "rocket": (200, 0, 456, 427),  # the launch pad, portrait
}

# real low-quality photos: name -> crop box, kept at their own resolution
REAL = {"coins": (0, 0, 200, 150)}  # the top-left coins of skimage.data.coins

# the degradation of the restore examples; `seed` varies per photo
DEGRADATION = {"scale": 4.0, "blur": 2.0, "noise": 4.0, "jpeg": 70}


def downsize(image: Image.Image, long_side: int) -> Image.Image:
    ratio = long_side / max(image.size)
    return image.resize((max(1, round(image.width * ratio)), max(1, round(image.height * ratio))), Image.LANCZOS)


def main() -> None:
    from skimage import data  # test-only dependency, imported here so `--help` works without it

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    for seed, (name, box) in enumerate(CROPS.items()):
        photo = Image.fromarray(getattr(data, name)()).convert("RGB").crop(box)
        clean = save_png(downsize(photo, 128), args.out / "clean" / f"{name}.png")
        degraded = to_image(degrade(to_tensor(downsize(photo, 256)), Degradation(**DEGRADATION, seed=seed)))
        low = save_png(degraded, args.out / f"{name}.png")
        report(clean, args.out), report(low, args.out)
    for name, box in REAL.items():
        report(save_png(Image.fromarray(getattr(data, name)()).convert("RGB").crop(box), args.out / f"{name}.png"),
               args.out)


def report(path: Path, out: Path) -> None:
    with Image.open(path) as im:
        print(f"{path.relative_to(out.parent.parent)}: {im.width}x{im.height}, {path.stat().st_size / 1024:.0f} KB")


if __name__ == "__main__":
    main()
