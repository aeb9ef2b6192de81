"""The error each phase reports at step 9 of 10 (the last with all three phases: no refinement follows the last
guidance), LatentINN and PixelINN, guidance 0 and 1 (docs/method.md's
table): the rocket example, 64x64 -> 256x256 (x4 blur + noise + JPEG), mini's tuned settings with every step run.

    python scripts/guidance_errors.py
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    from PIL import Image

    from latentindigo.degradations import Degradation, degrade
    from latentindigo.imageio import to_image, to_tensor
    from latentindigo.priors import load_prior
    from latentindigo.sampler import Step, restore
    from latentindigo.settings import settings_for

    prior = load_prior("mini", device="cpu")
    clean = Image.open(ROOT / "assets" / "examples" / "clean" / "rocket.png").convert("RGB")
    clean = clean.resize((256, 256), Image.Resampling.LANCZOS)
    y = to_image(degrade(to_tensor(clean), Degradation(scale=4, blur=1.2, noise=5, jpeg=75, seed=0)))
    print("| mode | guidance | refinement (fit) | regularisation (after the projection) |\n|---|---|---|---|")
    for mode, name in (("latent", "LatentINN"), ("pixel", "PixelINN")):
        for guidance in (0.0, 1.0):
            settings = settings_for("mini", method=mode, guidance=guidance, early_stop=0)
            last = {e.phase: e.consistency for e in restore(y, settings, prior)
                    if isinstance(e, Step) and e.step == e.total - 1}
            print(f"| {name}, guidance {guidance:g} | {last['guidance']:.4f} | {last['refinement']:.4f} | "
                  f"{last['regularisation']:.4f} |")


if __name__ == "__main__":
    main()
