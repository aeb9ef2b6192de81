"""Check `latentindigo.niqe` against the official MATLAB NIQE on the five distorted images of pyiqa's
calibration set (pyiqa 0.1.16's sdist, ResultsCalibra/: dist_dir/*.bmp and calibration_summary.csv, row `niqe`).

    pip download --no-deps --no-binary :all: pyiqa==0.1.16 && tar xzf pyiqa-0.1.16.tar.gz
    python -m scripts.validate_niqe pyiqa-0.1.16/ResultsCalibra

Those images are reserved for independent evaluation: this checks the metric, nothing is tuned on them.
"""

import argparse
import csv
from pathlib import Path

import numpy as np
from PIL import Image

from latentindigo.niqe import niqe

TOLERANCE = 0.05


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("calibra", type=Path, help="pyiqa's ResultsCalibra folder")
    folder = parser.parse_args().calibra
    with open(folder / "calibration_summary.csv") as f:
        rows = {row["Method"]: row for row in csv.DictReader(f)}
    worst = 0.0
    print("| image | MATLAB | ours | difference |\n|---|---|---|---|")
    for name, value in rows["niqe"].items():
        if name == "Method":
            continue
        ours = niqe(np.asarray(Image.open(folder / "dist_dir" / name).convert("RGB")))
        worst = max(worst, abs(ours - float(value)))
        print(f"| {name} | {float(value):.4f} | {ours:.4f} | {ours - float(value):+.4f} |")
    print(f"largest difference {worst:.4f} ({'within' if worst <= TOLERANCE else 'NOT within'} {TOLERANCE})")
    raise SystemExit(worst > TOLERANCE)


if __name__ == "__main__":
    main()
