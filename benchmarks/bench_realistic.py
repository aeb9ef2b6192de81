"""Speed and peak memory of the realistic first stage (Real-ESRGAN x4plus, `rrdbnet.upscale`) on this machine.

    python benchmarks/bench_realistic.py [--sizes 64 128 256] [--repeats 3]

Each input size runs in a fresh process, so that its peak resident memory (ru_maxrss, after loading the model)
is its own; prints seconds (median) and the peak's growth over the loaded model, per size, as a table.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def measure(size: int, repeats: int) -> dict:
    import torch

    from latentindigo.rrdbnet import realesrgan_x4plus, upscale

    model = realesrgan_x4plus()
    x = torch.rand(1, 3, size, size)
    upscale(model, x[..., :16, :16])  # warm-up
    loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        upscale(model, x)
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"input": size, "output": 4 * size, "seconds": statistics.median(times), "model_mib": loaded,
            "peak_growth_mib": peak - loaded, "threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # the child process's size
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.repeats)))
        return
    print("| input | output | seconds | peak memory over the loaded model (MiB) | resident with the model (MiB) |")
    print("|---|---|---|---|---|")
    for size in args.sizes:
        out = subprocess.run([sys.executable, __file__, "--one", str(size), "--repeats", str(args.repeats)],
                             capture_output=True, text=True, check=True).stdout
        row = json.loads(out.strip().splitlines()[-1])
        print(f"| {size}x{size} | {4 * size}x{4 * size} | {row['seconds']:.2f} | {row['peak_growth_mib']:.0f} | "
              f"{row['model_mib']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
