"""Side-by-side grid for the README: input, bicubic, inn, pixel, latent and ground truth on evaluation pairs.

    python -m scripts.eval_grid [--prior mini] [--names astronaut_1 coffee_1 ...] [--out docs/eval_grid.png]

Each row is one pair of the evaluation set (see scripts/make_eval_set.py) restored with default settings;
the input is shown enlarged with nearest-neighbour so its pixels stay visible.
"""

import argparse
from pathlib import Path

from PIL import Image, ImageDraw

from latentindigo.evaluate import pairs
from latentindigo.imageio import load_image
from latentindigo.priors import load_prior
from latentindigo.sampler import run
from latentindigo.settings import DIFFUSION_METHODS, settings_for

COLUMNS = ("input", "bicubic", "inn", "pixel", "latent", "ground truth")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prior", default="mini")
    parser.add_argument("--gt", type=Path, default=Path("data/eval/gt"))
    parser.add_argument("--lq", type=Path, default=Path("data/eval/lq"))
    parser.add_argument("--names", nargs="+", help="pair names (default: the first four)")
    parser.add_argument("--out", type=Path, default=Path("docs/eval_grid.png"))
    args = parser.parse_args()
    prior = load_prior(args.prior)
    chosen = [(g, q) for g, q in pairs(args.gt, args.lq) if not args.names or g.stem in args.names][:4]
    side, label = 256, 20
    grid = Image.new("RGB", (side * len(COLUMNS), label + side * len(chosen)), "white")
    draw = ImageDraw.Draw(grid)
    for c, name in enumerate(COLUMNS):
        draw.text((c * side + 6, 4), name, fill="black")
    for r, (gt_path, lq_path) in enumerate(chosen):
        gt, lq = load_image(gt_path), load_image(lq_path)
        cells = [lq.resize(gt.size, Image.Resampling.NEAREST)]
        for method in COLUMNS[1:-1]:
            settings = settings_for(args.prior, method=method, size=gt.size)
            cells.append(run(lq, settings, prior if method in DIFFUSION_METHODS else None).image)
        cells.append(gt)
        for c, cell in enumerate(cells):
            grid.paste(cell.resize((side, side)), (c * side, label + r * side))
        print(gt_path.stem, flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
