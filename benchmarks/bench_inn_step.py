"""Operations and time of one guidance + refinement step of the sampler (INN forward with gradients, inverse,
backward, optimiser step), for the prior's LatentINN and for the PixelINN, at one output size.

    python benchmarks/bench_inn_step.py                          # mini, 256x256 output, x4, CPU
    python benchmarks/bench_inn_step.py --prior sd21-random --size 512 --device cuda

Operations are the ATen calls that compute something (views left out), counted with a dispatch mode: on a GPU
each is at least one kernel launch, and at these sizes the launches, not the arithmetic, set the INN's time.
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import sys
import time
from types import SimpleNamespace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402


class CountOperations(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.counts = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not func.is_view:
            self.counts[str(func.overloadpacket).removeprefix("aten.")] += 1
        return func(*args, **(kwargs or {}))


def measure(inn, estimate: torch.Tensor, levels: int, repeats: int) -> dict:
    from latentindigo.sampler import Guidance

    run = SimpleNamespace(settings=SimpleNamespace(refine=True, refine_lr=1e-4), levels=levels,
                          gamma=torch.zeros(1, inn.gamma_dim, device=estimate.device))
    guide = Guidance(run, inn, torch.rand_like(estimate))  # (a per-image copy with its optimiser)
    step = lambda: (guide.swap(estimate), guide.refine())  # noqa: E731
    step()  # warm-up
    with CountOperations() as counted:
        step()
    times = []
    for _ in range(repeats):
        if estimate.device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        if estimate.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return {"operations": sum(counted.counts.values()), "by_kind": dict(counted.counts.most_common(8)),
            "ms": 1000 * statistics.median(times), "size": list(estimate.shape[-2:])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prior", default="mini")
    parser.add_argument("--size", type=int, default=256, help="output side (square)")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from latentindigo.priors import load_prior
    from latentindigo.sampler import levels_for, load_pixel_models

    prior = load_prior(args.prior, device=args.device)
    device = prior.device
    levels = levels_for((args.scale, args.scale), (1, 1))
    latent = args.size // prior.factor
    results = {
        "latent_inn": measure(prior.latent_inn, torch.randn(1, prior.latent_inn.channels, latent, latent,
                                                            device=device), levels, args.repeats),
        "pixel_inn": measure(load_pixel_models().inn.to(device), torch.rand(1, 3, args.size, args.size,
                                                                             device=device), levels, args.repeats),
    }
    print(f"{args.prior}, {args.size}x{args.size} output, x{args.scale} ({levels} INN levels), {device}, "
          f"{args.threads} threads")
    print("| INN | input | operations per step | ms per step (median) |\n|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['size'][0]}x{r['size'][1]} | {r['operations']} | {r['ms']:.1f} |")
    for name, r in results.items():
        print(name, "most frequent:", ", ".join(f"{k} {v}" for k, v in r["by_kind"].items()))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
