"""How well the early stop's cheap stand-in (`sampler.OutputChange`) tracks the output the user sees, and what it
costs against a step.

    python benchmarks/bench_early_stop.py [--prior mini] [--photos 4]

Every step of full runs (early stop set so low that it never stops) on the example photos (64x64 -> 256x256,
x4 blur + noise + JPEG), the prior's tuned settings: the stand-in's estimate of how far the step moved the output
against how far it really moved it (the composed output, colour fix and back-projection included, decoded), in
8-bit grey levels; and the stand-in's seconds against the step's. With `--prior tiny-random` it runs the random
prior at x8 without the colour fix (settings where its output keeps moving).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prior", default="mini")
    parser.add_argument("--photos", type=int, default=4)
    args = parser.parse_args()

    import numpy as np
    import torch
    from PIL import Image

    from latentindigo import sampler
    from latentindigo.degradations import Degradation, degrade, resize
    from latentindigo.imageio import to_image, to_tensor
    from latentindigo.priors import load_prior
    from latentindigo.settings import settings_for

    prior = load_prior(args.prior, device="cpu")
    random = args.prior == "tiny-random"
    settings = settings_for(args.prior, early_stop=1e-9, scale=8 if random else 4,
                            **({"colour_fix": False, "start_detail_levels": 3} if random else {}))
    pairs, times = [], {"stand-in": [], "step": []}

    class Recorded(sampler.OutputChange):
        def __init__(self, p, run):
            super().__init__(p, run)
            self.run = run

        def __call__(self, z, previous):
            start = time.perf_counter()
            estimate = super().__call__(z, previous)
            times["stand-in"].append(time.perf_counter() - start)
            seen = [finish(self.p, self.run.compose(x)) for x in (z, previous)]  # (one call a step: it never stops)
            pairs.append((estimate * 255, float((seen[0] - seen[1]).pow(2).mean().sqrt()) * 255))
            return estimate

    def finish(p, out):
        """What `restore` does after the diffusion."""
        if p.settings.colour_fix:
            out = sampler.wavelet_colour_fix(out, p.start, p.settings.colour_fix_levels)
        return sampler.final_consistency(out.clamp(0, 1), resize(p.start, tuple(p.y.shape[-2:]), "bicubic"))

    sampler.OutputChange = Recorded
    for path in sorted((ROOT / "assets" / "examples" / "clean").glob("*.png"))[: args.photos]:
        clean = Image.open(path).convert("RGB")
        side = min(clean.size)
        clean = clean.crop((0, 0, side, side)).resize((256, 256), Image.Resampling.LANCZOS)
        y = to_image(degrade(to_tensor(clean), Degradation(scale=4, blur=1.2, noise=5, jpeg=75, seed=0)))
        if random:
            y = y.resize((24, 24))
        last = time.perf_counter()
        for event in sampler.restore(y, settings, prior):
            if isinstance(event, sampler.Step) and event.phase == "guidance":
                times["step"].append(time.perf_counter() - last)
            last = time.perf_counter()
    estimates, seen = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    print(f"prior {args.prior}, {len(pairs)} steps: output moved per step (grey levels, RMS): stand-in median "
          f"{np.median(estimates):.3f} / max {estimates.max():.3f}, decoded median {np.median(seen):.3f} / max "
          f"{seen.max():.3f}; correlation {np.corrcoef(estimates, seen)[0, 1]:.2f}; stand-in / decoded median "
          f"{np.median(estimates / np.maximum(seen, 1e-9)):.2f}")
    print(f"stand-in {statistics.median(times['stand-in']) * 1000:.1f} ms per call, a step (to its guidance event) "
          f"{statistics.median(times['step']) * 1000:.0f} ms: "
          f"{2 * statistics.median(times['stand-in']) / statistics.median(times['step']):.1%} of a step "
          f"(at most two calls a step), {torch.get_num_threads()} threads")


if __name__ == "__main__":
    main()
