"""Quality of each method on pairs of ground-truth and low-quality images.

    python -m latentindigo evaluate --gt data/eval/gt --lq data/eval/lq --prior mini

Pairs are matched by file name. Each method restores every low-quality image to its ground truth's size;
the table gives mean PSNR and SSIM against the ground truth, measurement consistency (PSNR of the output
re-degraded to the input's size against the input), the detail measure (gradient energy of the output over
that of the ground truth: how much), the detail correlation (of the output's and the ground truth's Laplacians:
whether it is in the right place), NIQE (a no-reference naturalness score, lower is more natural; one fit over
the whole set's 96x96 patches, as per-image NIQE on small crops is unstable) and seconds per image; a last row
gives the ground truth's own scores. NIQE alone rewards invented detail: read it beside PSNR. For the diffusion
methods, what the diffusion changed: the RMS of the result against its start (8-bit grey levels), the share of
pixels it moved by more than 2 levels, and the steps it took (fewer than asked when the output stopped moving).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from latentindigo import metrics
from latentindigo.errors import UserError
from latentindigo.imageio import load_image, to_image, to_tensor
from latentindigo.niqe import niqe_pooled
from latentindigo.sampler import PixelModels, run
from latentindigo.settings import DIFFUSION_METHODS, Settings, settings_for

METHODS = ("bicubic", "faithful", "realistic", "first-stage", "inn", "sdedit", "pixel", "latent")
COLUMNS = ("psnr", "ssim", "consistency", "detail", "detail_r", "niqe", "seconds", "change", "moved", "steps")
REFERENCE = "ground truth"  # the table's last row


def pairs(gt_dir: Path, lq_dir: Path) -> list[tuple[Path, Path]]:
    """(ground truth, low quality) files with the same name stem."""
    for folder in (gt_dir, lq_dir):
        if not Path(folder).is_dir():
            raise UserError(f"{folder} is not a folder")
    gts = {p.stem: p for p in sorted(Path(gt_dir).iterdir()) if p.is_file()}
    found = [(gts[p.stem], p) for p in sorted(Path(lq_dir).iterdir()) if p.is_file() and p.stem in gts]
    if not found:
        raise UserError(f"no image in {lq_dir} has a ground truth of the same name in {gt_dir}")
    return found


def evaluate(gt_dir: Path, lq_dir: Path, prior=None, methods: tuple[str, ...] = METHODS,
             settings: Settings | None = None, pixel: PixelModels | None = None,
             progress=None) -> dict[str, dict[str, float]]:
    """Mean of each column per method (NIQE pooled over the set); `settings` default to the prior's tuned ones."""
    settings = settings or (settings_for(prior.name) if prior else Settings())
    images = []  # (ground truth, low-quality image, its tensor)
    for gt_path, lq_path in pairs(gt_dir, lq_dir):
        lq = load_image(lq_path)
        images.append((to_tensor(load_image(gt_path)), lq, to_tensor(lq)))
    table = {}
    for method in methods:
        rows, outputs = [], []
        for gt, lq, y in images:
            s = replace(settings, method=method, size=(gt.shape[-1], gt.shape[-2]), scale=None)
            done = run(lq, s, prior if method in DIFFUSION_METHODS else None, pixel)
            out = done.tensor.cpu()
            outputs.append(out)
            rows.append({"psnr": metrics.psnr(out, gt), "ssim": metrics.ssim(out, gt),
                         "consistency": metrics.consistency(out, y), "detail": metrics.detail(out, gt),
                         "detail_r": metrics.detail_correlation(out, gt), "seconds": done.seconds,
                         "change": done.change.rms * 255 if done.change else float("nan"),
                         "moved": done.change.moved if done.change else float("nan"),
                         "steps": done.steps_taken if done.change else float("nan")})
            if progress:
                progress(method)
        table[method] = {c: float(np.mean([r[c] for r in rows])) for c in COLUMNS if c != "niqe"}
        table[method]["niqe"] = pooled_niqe(outputs)
    # what the truth itself scores: consistency with a blurred, noisy input is bounded well below 100 dB
    table[REFERENCE] = {"psnr": 100.0, "ssim": 1.0, "detail": 1.0, "detail_r": 1.0, "seconds": 0.0,
                        "change": float("nan"), "moved": float("nan"), "steps": float("nan"),
                        "consistency": float(np.mean([metrics.consistency(gt, y) for gt, _, y in images])),
                        "niqe": pooled_niqe([gt for gt, _, _ in images])}
    return table


def pooled_niqe(images: list[torch.Tensor]) -> float:
    """NIQE fitted over the 96x96 patches of all the images (NaN when they hold fewer than two)."""
    try:
        return niqe_pooled([np.asarray(to_image(x)) for x in images])
    except ValueError:
        return float("nan")


def cells(r: dict[str, float]) -> str:
    """One method's means as markdown table cells, in COLUMNS' order (detail to three decimals: its target
    boundary is 0.2)."""
    changed = ("– | – | –" if np.isnan(r["change"]) else
               f"{r['change']:.2f} | {r['moved']:.1%} | {r['steps']:.1f}")
    return (f"{r['psnr']:.2f} | {r['ssim']:.3f} | {r['consistency']:.2f} | {r['detail']:.3f} | "
            f"{r['detail_r']:.3f} | {r['niqe']:.2f} | {r['seconds']:.2f} | {changed}")


def markdown(table: dict[str, dict[str, float]]) -> str:
    lines = ["| method | PSNR (dB) | SSIM | consistency (dB) | detail | detail r | NIQE (pooled) | s/image | "
             "change (RMS, /255) | moved > 2/255 | steps taken |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {method} | {cells(r)} |" for method, r in table.items()]
    return "\n".join(lines)
