"""Build the offline photo set used to train the INNs and the bundled prior.

Sources that need no model hub: scikit-image's bundled data, scikit-learn's two sample images and the
photographs (not the drawings) of Debian's `mate-backgrounds`, `plasma-workspace-wallpapers` and
`lomiri-wallpapers-16.04` / `-20.04`.
The validation split is fixed by photo (astronaut, chelsea, coffee, rocket) so no crop of a validation
photo is ever trained on.

    python -m scripts.build_photoset --out data/photos

writes `OUT/train/*.png`, `OUT/val/*.png`, the provenance list `assets/photoset.csv` and the compact
calibration set `assets/calibration/*.png` (the training split downsized, shipped for `calibrate`).
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import tempfile
from pathlib import Path

from PIL import Image

VALIDATION = ("astronaut", "chelsea", "coffee", "rocket")

# name -> (skimage.data function, author, licence)
SKIMAGE = {
    "astronaut": ("astronaut", "NASA (Eileen Collins portrait)", "public domain"),
    "chelsea": ("chelsea", "Stefan van der Walt", "CC0"),
    "coffee": ("coffee", "Rachel Michetti", "CC0"),
    "rocket": ("rocket", "SpaceX", "public domain"),
    "hubble_deep_field": ("hubble_deep_field", "NASA", "public domain"),
    "camera": ("camera", "Lav Varshney", "CC0"),
    "grass": ("grass", "linolafett (DeviantArt)", "CC0"),
    "gravel": ("gravel", "CC0Textures", "CC0"),
    "brick": ("brick", "CC0Textures", "CC0"),
}

SKLEARN = {
    "china": ("danielbuechele (Flickr)", "CC BY 2.0"),
    "flower": ("vultilion (Flickr)", "CC BY 2.0"),
}

# Ubuntu Touch's wallpapers, photographs only (lomiri-wallpapers' copyright file: photo -> author, licence)
LOMIRI_1604 = {
    "Bridge_by_Sander_Klootwijk": ("Sander Klootwijk", "CC-BY-SA-4.0"),
    "Dragonfly_by_Bolly": ("Bolly", "CC-BY-SA-4.0"),
    "Picture_0B_by_freespace": ("Trevor Freespace", "CC-BY-4.0"),
    "Picture_1A_by_freespace": ("Trevor Freespace", "CC-BY-4.0"),
    "Wine_by_Jakkub_Mede": ("Jakub Mede", "CC-BY-4.0"),
    "aitzgorri_by_Aitzol_Berasategi": ("Aitzol Berasategi", "CC-BY-4.0"),
    "free_by_Peter_Nerlich": ("Peter Nerlich", "CC-BY-SA-4.0"),
    "friends_by_Aitzol_Berasategi": ("Aitzol Berasategi", "CC-BY-4.0"),
    "greentock_by_Peter_Nerlich": ("Peter Nerlich", "CC-BY-SA-4.0"),
    "life_by_Aitzol_Berasategi": ("Aitzol Berasategi", "CC-BY-4.0"),
    "picosdeeuropa_by_Aitzol_Berasategi": ("Aitzol Berasategi", "CC-BY-4.0"),
    "seeding_by_Clements_Engelhardt": ("Clemens Engelhardt", "CC0-1.0"),
    "sunset_by_Aitzol_Berasategi": ("Aitzol Berasategi", "CC-BY-4.0"),
}
LOMIRI_2004 = {"Kleiber_by_Lukas_Baubkus": ("Lukas Baubkus", "CC-BY-SA-3.0")}
LOMIRI = LOMIRI_1604 | LOMIRI_2004  # photo -> (author, licence)

# Debian package -> {photo name: path inside the package}; only photographs, the abstract art is left out.
MATE = "usr/share/backgrounds/mate/nature"
PLASMA = "usr/share/wallpapers"
DEBIAN = {
    "mate-backgrounds": {
        name: f"{MATE}/{name}.jpg"
        for name in ("Aqua", "Blinds", "Dune", "FreshFlower", "Garden", "GreenMeadow", "LadyBird",
                     "RainDrops", "Storm", "TwoWings", "Wood", "YellowFlower")
    },
    "plasma-workspace-wallpapers": {
        name: f"{PLASMA}/{name}/contents/images/{size}.jpg"
        for name, size in (("BytheWater", "1280x1024"), ("ColdRipple", "1280x1024"),
                           ("ColorfulCups", "2560x1600"), ("EveningGlow", "1280x1024"),
                           ("FallenLeaf", "1280x1024"), ("Grey", "1280x1024"), ("Kite", "1280x1024"),
                           ("OneStandsOut", "1280x1024"), ("Path", "1280x1024"),
                           ("summer_1am", "1280x1024"))
    },
    "lomiri-wallpapers-16.04": {name: f"usr/share/backgrounds/{name}.jpg" for name in LOMIRI_1604},
    "lomiri-wallpapers-20.04": {name: f"usr/share/backgrounds/{name}.jpg" for name in LOMIRI_2004},
}
DEBIAN_LICENCE = {
    "mate-backgrounds": ("MATE artists, see /usr/share/doc/mate-backgrounds/copyright", "GPL-2+"),
    "plasma-workspace-wallpapers": ("KDE Visual Design Group", "GPL-2+"),
}


def _unpack_debian(package: str, workdir: Path) -> Path:
    """Download a .deb from the Debian archive and unpack it without installing it."""
    subprocess.run(["apt-get", "download", package], cwd=workdir, check=True, capture_output=True)
    deb = next(workdir.glob(f"{package}_*.deb"))
    root = workdir / package
    subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True)
    return root


def _shrink(image: Image.Image, short_side: int) -> Image.Image:
    """Downscale large wallpapers: more detail per crop and less of the source's JPEG noise."""
    scale = short_side / min(image.size)
    if scale >= 1:
        return image
    size = (round(image.width * scale), round(image.height * scale))
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def collect(debs: Path | None) -> list[tuple[str, Image.Image, str, str, str]]:
    """Return (name, image, source, author, licence) for every photo."""
    import sklearn.datasets
    import skimage.data

    photos = []
    for name, (fn, author, licence) in SKIMAGE.items():
        array = getattr(skimage.data, fn)()
        photos.append((name, Image.fromarray(array).convert("RGB"), f"scikit-image skimage.data.{fn}",
                       author, licence))
    for name, array in zip(("china", "flower"), sklearn.datasets.load_sample_images().images):
        author, licence = SKLEARN[name]
        photos.append((name, Image.fromarray(array), f"scikit-learn sample image {name}.jpg", author, licence))
    with tempfile.TemporaryDirectory() as tmp:
        for package, files in DEBIAN.items():
            root = debs / package if debs else _unpack_debian(package, Path(tmp))
            for name, rel in files.items():
                author, licence = DEBIAN_LICENCE.get(package) or LOMIRI[name]
                with Image.open(root / rel) as im:
                    photos.append((name, im.convert("RGB"), f"Debian {package}: /{rel}", author, licence))
    return photos


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data/photos"))
    parser.add_argument("--provenance", type=Path, default=Path("assets/photoset.csv"))
    parser.add_argument("--debs", type=Path, help="folder with the Debian packages already unpacked (by name)")
    parser.add_argument("--short-side", type=int, default=768, help="downscale training photos to this")
    parser.add_argument("--calibration", type=Path, default=Path("assets/calibration"))
    parser.add_argument("--calibration-side", type=int, default=256, help="short side of calibration photos")
    args = parser.parse_args()

    rows = []
    for name, image, source, author, licence in collect(args.debs):
        split = "val" if name in VALIDATION else "train"
        if split == "train":
            image = _shrink(image, args.short_side)
        path = args.out / split / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path)
        if split == "train":
            args.calibration.mkdir(parents=True, exist_ok=True)
            _shrink(image, args.calibration_side).save(args.calibration / f"{name}.png", optimize=True)
        rows.append({"name": name, "split": split, "width": image.width, "height": image.height,
                     "source": source, "author": author, "licence": licence})
        print(f"{split:5s} {name:18s} {image.width}x{image.height}  {licence}")
    args.provenance.parent.mkdir(parents=True, exist_ok=True)
    with open(args.provenance, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    counts = {s: sum(r["split"] == s for r in rows) for s in ("train", "val")}
    print(f"{counts['train']} training and {counts['val']} validation photos in {args.out}")


if __name__ == "__main__":
    main()
