"""Ways to walk from the faithful first stage F to the realistic one G, measured on the evaluation pairs.

    python -m scripts.measure_realism --gt data/eval/gt --lq data/eval/lq --out docs/realism_curve.png

For every candidate and every 0.1 of the control r: PSNR and SSIM against the ground truth and NIQE pooled over
the set (one Gaussian fitted over all the images' patches), beside bicubic, F and G alone and the ground truth.
Candidates (r = 0 is F for all of them):

- local: split-5 with G's detail taken only where it agrees with F's within a tolerance that r sets
  (0.06 r / (1 - r); the RMS of the blurred difference of their fine bands, a Cauchy weight);
- blend: (1 - r) F + r G, a pixel blend;
- split-L: F + r (high_L(G) - high_L(F)): F's wavelet bands coarser than L levels, its finer bands blended
  towards G's (the bands of the colour fix, `degradations.low_band`); split-5 at r = 1 is `local` at r = 1;
- pixel-inn: the PixelINN's details blended from F's towards G's under F's coarse part (the INN's guidance
  with the faithful stage as the measurement: exact at r = 0 because the INN is invertible);
- latent-inn: the same in the `mini` VAE's latent space with the LatentINN, composed as F + D(z_r) - D(E(F)) so
  that the VAE's loss on F cancels.

Then LatentINN and PixelINN (the mini prior, its tuned settings) started from `combine` at every point of the
control: what the diffusion adds over its start; the default (the tuned realism) is marked.

Writes the table to stdout and OUT.json, and the curves (PSNR against NIQE) to OUT. Needs matplotlib (a
developer tool: `pip install matplotlib`).
"""

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from latentindigo import metrics

from latentindigo.degradations import blur, low_band, resize
from latentindigo.evaluate import pairs
from latentindigo.first_stages import load_realistic, realistic_estimate
from latentindigo.imageio import load_image, to_tensor
from latentindigo.niqe import niqe_pooled
from latentindigo.priors import load_prior
from latentindigo.restorer import restore_first_stage
from latentindigo.sampler import levels_for, load_pixel_models, run
from latentindigo.settings import settings_for

CONTROL = [round(0.1 * i, 1) for i in range(11)]


def split(levels: int):
    def combine(f, g, r, **_):
        return f + r * ((g - low_band(g, levels)) - (f - low_band(f, levels)))
    return combine


def blend(f, g, r, **_):
    return f + r * (g - f)


def pixel_inn(f, g, r, inn, gamma, levels, **_):
    with torch.no_grad():
        coarse, df = inn(f, gamma, levels=levels)
        _, dg = inn(g, gamma, levels=levels)
        return inn.inverse(coarse, [a + r * (b - a) for a, b in zip(df, dg)], gamma, tuple(f.shape[-2:]))


def latent_inn(f, g, r, prior, gamma, levels, **_):
    zf, zg = prior.encode(f), prior.encode(g)
    with torch.no_grad():
        coarse, df = prior.latent_inn(zf, gamma, levels=levels)
        _, dg = prior.latent_inn(zg, gamma, levels=levels)
        z = prior.latent_inn.inverse(coarse, [a + r * (b - a) for a, b in zip(df, dg)], gamma, tuple(zf.shape[-2:]))
    return f + prior.decode(z) - prior.decode(zf)


def local(f, g, r, **_):
    change = (g - low_band(g, 5)) - (f - low_band(f, 5))
    if r in (0.0, 1.0):
        return f + r * change
    disagreement = blur(change, 1.0).pow(2).mean(dim=1, keepdim=True).sqrt()
    return f + change / (1 + (disagreement / (0.06 * r / (1 - r))) ** 2)


CANDIDATES = {"local": local, "blend": blend, **{f"split-{levels}": split(levels) for levels in range(1, 6)},
              "pixel-inn": pixel_inn, "latent-inn": latent_inn}
SAMPLERS = {"LatentINN": "latent", "PixelINN": "pixel"}


def scores(outputs: list[torch.Tensor], truths: list[torch.Tensor]) -> dict[str, float]:
    outputs = [o.clamp(0, 1) for o in outputs]
    return {"psnr": float(np.mean([metrics.psnr(o, t) for o, t in zip(outputs, truths)])),
            "ssim": float(np.mean([metrics.ssim(o, t) for o, t in zip(outputs, truths)])),
            "niqe": niqe_pooled([uint8(o) for o in outputs])}


def uint8(x: torch.Tensor) -> np.ndarray:
    return (x[0].permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gt", type=Path, default=Path("data/eval/gt"))
    parser.add_argument("--lq", type=Path, default=Path("data/eval/lq"))
    parser.add_argument("--candidates", nargs="+", default=list(CANDIDATES), choices=list(CANDIDATES))
    parser.add_argument("--samplers", nargs="*", default=list(SAMPLERS), choices=list(SAMPLERS))
    parser.add_argument("--out", type=Path, default=Path("docs/realism_curve.png"))
    args = parser.parse_args()
    torch.manual_seed(0)
    pixel, prior, realistic = load_pixel_models(), load_prior("mini"), load_realistic()
    items, truths = [], []
    for gt_path, lq_path in pairs(args.gt, args.lq):
        gt, y = to_tensor(load_image(gt_path)), to_tensor(load_image(lq_path))
        size = tuple(gt.shape[-2:])
        gamma, estimate = pixel.estimator.estimate(y)
        f = restore_first_stage(pixel.restorer, y, size, estimate.jpeg)
        g = realistic_estimate(realistic, y, size)
        items.append(dict(f=f, g=g, y=y, lq=load_image(lq_path), gamma=gamma,
                          levels=levels_for(size, tuple(y.shape[-2:]))))
        truths.append(gt)
        print(gt_path.stem, flush=True)
    table = {"bicubic": scores([resize(i["y"], tuple(t.shape[-2:]), "bicubic") for i, t in zip(items, truths)],
                               truths),
             "faithful": scores([i["f"] for i in items], truths), "realistic": scores([i["g"] for i in items], truths),
             "ground truth": {"psnr": 100.0, "ssim": 1.0, "niqe": niqe_pooled([uint8(t) for t in truths])}}
    curves = {}
    for name in args.candidates:
        combine = CANDIDATES[name]
        curves[name] = [scores([combine(i["f"], i["g"], r, inn=pixel.inn, prior=prior, gamma=i["gamma"],
                                        levels=i["levels"]) for i in items], truths) | {"r": r} for r in CONTROL]
        for row in curves[name]:
            print(f"{name:10s} r={row['r']:<4g}  PSNR {row['psnr']:.2f}  SSIM {row['ssim']:.3f}  NIQE {row['niqe']:.2f}",
                  flush=True)
    tuned = settings_for("mini")
    control = sorted(set(CONTROL) | {tuned.realism})  # the default is a point of the samplers' curves
    for name in args.samplers:
        curves[name] = []
        for r in control:
            outputs = [run(i["lq"], replace(tuned, method=SAMPLERS[name], realism=r, size=(t.shape[-1], t.shape[-2]),
                                            scale=None), prior, pixel).tensor for i, t in zip(items, truths)]
            curves[name].append(scores(outputs, truths) | {"r": r})
            row = curves[name][-1]
            print(f"{name:10s} r={r:<4g}  PSNR {row['psnr']:.2f}  SSIM {row['ssim']:.3f}  NIQE {row['niqe']:.2f}",
                  flush=True)
        if name == "LatentINN":  # the demo's default method
            table[f"default (LatentINN, r = {tuned.realism:g})"] = curves[name][control.index(tuned.realism)]
    for name, row in table.items():
        print(f"{name:12s} PSNR {row['psnr']:.2f}  SSIM {row['ssim']:.3f}  NIQE {row['niqe']:.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps({"points": table, "curves": curves}, indent=1))
    plot(table, curves, args.out)


def plot(table: dict, curves: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for name, rows in curves.items():
        ax.plot([r["niqe"] for r in rows], [r["psnr"] for r in rows], marker=".", label=name,
                ls="--" if name in SAMPLERS else "-")
    for name, row in table.items():
        if name != "ground truth":
            ax.scatter([row["niqe"]], [row["psnr"]], marker="*", s=120, zorder=3)
            ax.annotate(name, (row["niqe"], row["psnr"]), textcoords="offset points", xytext=(5, 4))
    ax.axvline(table["ground truth"]["niqe"], color="grey", ls=":", label="ground truth NIQE")
    ax.set_xlabel("NIQE, pooled over the set (lower = more natural)")
    ax.set_ylabel("PSNR against the ground truth (dB)")
    ax.invert_xaxis()
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("faithful (r = 0) to realistic (r = 1): up and right is better")
    fig.tight_layout()
    fig.savefig(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
