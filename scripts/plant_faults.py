"""Plant each fault the sampler's tests must catch, one at a time, and run the relevant tests against it.

    python scripts/plant_faults.py [--all] [--only NAME]

Each fault is a one-line edit of latentindigo/sampler.py, made in a temporary copy of the package (the
checkout is never touched). The tests run are those of tests/test_sampler.py that name the phase (`--all`: the
whole file, a few minutes a fault on 2 cores); the failing ones are printed. A fault no test catches is
printed as NOT CAUGHT and the script exits with 1.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# name -> (the sampler's text, what it becomes, the tests that name that phase): each breaks one phase
FAULTS = {
    "guidance a no-op": ("guided = z0 + self.p.settings.guidance * (", "guided = z0 + 0 * (", "guidance"),
    "PixelINN guidance a no-op": ("guided = x0 + self.p.settings.guidance * (", "guided = x0 + 0 * (", "guidance"),
    "refinement skipped": ("        self.optimiser.step()\n", "        pass\n", "refine"),
    "regularisation skipped": ("    z0 = z0 + s.reg_strength * (target - z0)\n", "    z0 = z0\n",
                               "projection or spread or regularis"),
    "the DDIM step an identity": ("    return z_prev\n", "    return z_t\n", "ddim"),
    "the final back-projection removed": (
        'final_consistency(out.clamp(0, 1), resize(x_first, tuple(y.shape[-2:]), "bicubic"))', "out.clamp(0, 1)",
        "consistent"),
    "PixelINN guidance in latent space": (
        'guide = PixelGuidance(p, run) if s.method == "pixel" else LatentGuidance(p, run)',
        "guide = LatentGuidance(p, run)", "space or guidance"),
}


def plant(name: str, every_test: bool) -> bool:
    """Run the relevant tests (or every test of test_sampler.py) against the sampler with fault `name`; True when
    a test fails."""
    old, new, relevant = FAULTS[name]
    with tempfile.TemporaryDirectory(prefix="latentindigo-fault-") as tmp:
        tmp = Path(tmp)
        shutil.copytree(ROOT / "latentindigo", tmp / "latentindigo", ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copytree(ROOT / "tests", tmp / "tests", ignore=shutil.ignore_patterns("__pycache__"))
        (tmp / "assets").symlink_to(ROOT / "assets")
        sampler = tmp / "latentindigo" / "sampler.py"
        text = sampler.read_text()
        if text.count(old) != 1:
            raise SystemExit(f"fault {name!r}: its text is in sampler.py {text.count(old)} times, not once")
        sampler.write_text(text.replace(old, new))
        started = time.perf_counter()
        select = [] if every_test else ["-k", relevant]
        result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                 "tests/test_sampler.py", *select],
                                cwd=tmp, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(tmp)})
    failed = [line for line in result.stdout.splitlines() if line.startswith("FAILED")]
    seconds = time.perf_counter() - started
    summary = result.stdout.strip().splitlines()[-1]
    names = ", ".join(line.split()[1].split("::")[1] for line in failed)
    print(f"{name}: " + (f"caught by {names} ({summary}, {seconds:.0f} s)" if failed else
                         f"NOT CAUGHT ({summary})"), flush=True)
    return bool(failed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all", action="store_true", help="run every test of tests/test_sampler.py per fault")
    parser.add_argument("--only", choices=list(FAULTS))
    args = parser.parse_args()
    caught = [plant(name, args.all) for name in ([args.only] if args.only else FAULTS)]
    sys.exit(0 if all(caught) else 1)


if __name__ == "__main__":
    main()
