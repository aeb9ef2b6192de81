"""Side-by-side grid for docs/quality.md and the README: input, bicubic, each first stage, the start, PixelINN and
LatentINN (the prior's tuned settings, realism included) and the ground truth on evaluation pairs.

    python -m scripts.eval_grid [--prior mini] [--names astronaut_1 coffee_1 ...] [--out docs/eval_grid.png]
    python -m scripts.eval_grid --real assets/examples/coins.png --box 0 0 96 64 --out docs/real_coins.png
    python -m scripts.eval_grid --real assets/examples/hopper.png --box 24 8 104 88 --out docs/real_hopper.png

Each row is one pair of the evaluation set (see scripts/make_eval_set.py) restored with default settings;
the input is shown enlarged with nearest-neighbour so its pixels stay visible. With `--real`, one real
low-quality photo (no ground truth) is restored x4 and a crop of it (`--box`, in input pixels) shown.
"""

import argparse
from pathlib import Path

from PIL import Image, ImageDraw

from latentindigo.evaluate import pairs
from latentindigo.imageio import load_image
from latentindigo.priors import load_prior
from latentindigo.sampler import run
from latentindigo.settings import DIFFUSION_METHODS, settings_for

# label -> method ("input" and "ground truth" are the pair's own images)
COLUMNS = {"input": None, "bicubic": "bicubic", "faithful": "faithful", "Real-ESRGAN": "realistic",
           "start": "first-stage", "PixelINN": "pixel", "LatentINN (default)": "latent", "ground truth": None}
METHODS = [method for method in COLUMNS.values() if method]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prior", default="mini")
    parser.add_argument("--gt", type=Path, default=Path("data/eval/gt"))
    parser.add_argument("--lq", type=Path, default=Path("data/eval/lq"))
    parser.add_argument("--names", nargs="+", help="pair names (default: the first four)")
    parser.add_argument("--out", type=Path, default=Path("docs/eval_grid.png"))
    parser.add_argument("--real", type=Path, help="a real low-quality photo instead of the evaluation pairs")
    parser.add_argument("--box", type=int, nargs=4, default=(0, 0, 96, 64), help="with --real: crop to show")
    args = parser.parse_args()
    prior = load_prior(args.prior)
    if args.real:
        return real_row(args, prior)
    chosen = [(g, q) for g, q in pairs(args.gt, args.lq) if not args.names or g.stem in args.names][:4]
    side, label = 256, 20
    grid = Image.new("RGB", (side * len(COLUMNS), label + side * len(chosen)), "white")
    draw = ImageDraw.Draw(grid)
    for c, name in enumerate(COLUMNS):
        draw.text((c * side + 6, 4), name, fill="black")
    for r, (gt_path, lq_path) in enumerate(chosen):
        gt, lq = load_image(gt_path), load_image(lq_path)
        cells = [lq.resize(gt.size, Image.Resampling.NEAREST)]
        for method in METHODS:
            settings = settings_for(args.prior, method=method, size=gt.size)
            cells.append(run(lq, settings, prior if method in DIFFUSION_METHODS else None).image)
        cells.append(gt)
        for c, cell in enumerate(cells):
            grid.paste(cell.resize((side, side)), (c * side, label + r * side))
        print(gt_path.stem, flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(args.out)
    print(f"wrote {args.out}")


def real_row(args: argparse.Namespace, prior) -> None:
    """The columns but the ground truth: the photo restored x4, the box shown."""
    low = load_image(args.real)
    left, top, right, bottom = args.box
    cells = [low.resize((low.width * 4, low.height * 4), Image.Resampling.NEAREST)]
    for method in METHODS:
        settings = settings_for(args.prior, method=method, scale=4)
        cells.append(run(low, settings, prior if method in DIFFUSION_METHODS else None).image)
    box = (left * 4, top * 4, right * 4, bottom * 4)
    width, height, label = box[2] - box[0], box[3] - box[1], 20
    grid = Image.new("RGB", (width * len(cells), label + height), "white")
    draw = ImageDraw.Draw(grid)
    for c, (name, cell) in enumerate(zip(COLUMNS, cells)):
        draw.text((c * width + 6, 4), name, fill="black")
        grid.paste(cell.crop(box), (c * width, label))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
