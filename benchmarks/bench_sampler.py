"""Time and peak memory per image of each sampler, for the same prior, size, steps and seed.

    python benchmarks/bench_sampler.py                                   # sd21-random, 256x256, CPU
    python benchmarks/bench_sampler.py --size 512 --device cuda          # fp16 on a GPU

Each method runs in a fresh process so that its peak memory is its own: on CUDA the peak of
`torch.cuda.max_memory_allocated`, on the CPU the peak resident set size (VmHWM, reset after the models
are loaded) above what the loaded models already hold, and the whole process's peak. Prints a table and
JSON with the ratios to unguided sampling (SDEdit from the same start).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def measure(args: argparse.Namespace) -> dict:
    """Child process: load, warm up, then time `repeats` restorations of one method."""
    import numpy as np
    import torch
    from PIL import Image

    from latentindigo.priors import load_prior
    from latentindigo.sampler import run
    from latentindigo.settings import settings_for

    torch.manual_seed(0)
    prior = load_prior(args.prior, device=args.device)
    device = prior.device
    small = args.size // args.scale
    rng = np.random.default_rng(0)
    base = rng.random((small // 8 + 1, small // 8 + 1, 3))
    image = Image.fromarray((base * 255).astype(np.uint8)).resize((small, small), Image.Resampling.BICUBIC)
    settings = settings_for(args.prior, method=args.method, steps=args.steps, size=(args.size, args.size), seed=0)
    run(image, replace(settings, steps=1), prior)  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base_memory = torch.cuda.memory_allocated()
    else:
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak RSS to the current RSS
        base_memory = _rss_kib("VmRSS") * 1024
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        run(image, settings, prior)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = _rss_kib("VmHWM") * 1024
    return {"method": args.method, "seconds": statistics.median(times), "all_seconds": times,
            "peak_bytes": peak, "working_bytes": peak - base_memory, "device": str(device),
            "dtype": str(prior.dtype).replace("torch.", "")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prior", default="sd21-random")
    parser.add_argument("--size", type=int, default=256, help="output side (square)")
    parser.add_argument("--scale", type=int, default=4, help="input side = size / scale")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--methods", nargs="+", default=["sdedit", "latent", "pixel", "dps"])
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--method", help=argparse.SUPPRESS)  # set in the child processes
    args = parser.parse_args()

    if args.method:
        print(json.dumps(measure(args)))
        return

    results = []
    for method in args.methods:
        cmd = [sys.executable, __file__, "--method", method] + [
            a for pair in (("--prior", args.prior), ("--size", args.size), ("--scale", args.scale),
                           ("--steps", args.steps), ("--repeats", args.repeats), ("--device", args.device))
            for a in map(str, pair)]
        out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        if out.returncode:
            sys.exit(f"{method} failed:\n{out.stderr[-3000:]}")
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"{method}: {results[-1]['seconds']:.2f} s", file=sys.stderr)

    unguided = next(r for r in results if r["method"] == "sdedit")
    gib = 2**30
    print(f"\nprior {args.prior}, {args.size}x{args.size} from {args.size // args.scale}, {args.steps} steps, "
          f"{results[0]['device']} {results[0]['dtype']}")
    print(f"{'method':8s} {'s/image':>9s} {'x unguided':>11s} {'peak GiB':>9s} {'x unguided':>11s} "
          f"{'working GiB':>12s} {'x unguided':>11s}")
    for r in results:
        r["time_ratio"] = r["seconds"] / unguided["seconds"]
        r["peak_ratio"] = r["peak_bytes"] / unguided["peak_bytes"]
        r["working_ratio"] = r["working_bytes"] / max(unguided["working_bytes"], 1)
        print(f"{r['method']:8s} {r['seconds']:9.2f} {r['time_ratio']:11.2f} {r['peak_bytes'] / gib:9.2f} "
              f"{r['peak_ratio']:11.2f} {r['working_bytes'] / gib:12.2f} {r['working_ratio']:11.2f}")
    summary = {"prior": args.prior, "size": args.size, "scale": args.scale, "steps": args.steps, "results": results}
    print(json.dumps(summary))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
