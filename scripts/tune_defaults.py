"""Tune the sampler's defaults on the evaluation set (x4, 64x64 -> 256x256, blur + noise + JPEG).

    python -m scripts.tune_defaults [--prior mini] [--gt data/eval/gt --lq data/eval/lq]

One setting at a time is varied around the prior's tuned settings (`settings_for`: its sampler_settings.json over
the library defaults; all sweeps for the LatentINN, regularisation and eta for the slower PixelINN); each row is the mean over the evaluation pairs (see `latentindigo.evaluate`).
The tuning section of docs/history.md (*Tuning the defaults*) is this script's output.
"""

import argparse
import json
from dataclasses import replace
from pathlib import Path

from latentindigo.evaluate import cells, markdown, evaluate
from latentindigo.priors import load_prior
from latentindigo.settings import settings_for

SWEEPS = {
    "steps": [10, 20, 30],
    "guidance": [0.5, 0.8, 1.0],
    "start": [0.25, 0.4, 0.6],
    "refine": [False, True],
    "reg_every": [0, 2, 3, 5],
    "latent_reg": ["spread", "projection"],
    "eta": [0.0, 0.5, 1.0],
    "colour_fix": [False, True],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prior", default="mini")
    parser.add_argument("--gt", type=Path, default=Path("data/eval/gt"))
    parser.add_argument("--lq", type=Path, default=Path("data/eval/lq"))
    parser.add_argument("--methods", nargs="+", default=["latent", "pixel"])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    prior = load_prior(args.prior)
    rows = []
    header, rule = markdown({}).splitlines()  # evaluate's columns, with the setting after the method
    print(header.replace("| method |", "| method | setting |"), rule + "---|", sep="\n")
    default = settings_for(args.prior)
    for method in args.methods:
        sweeps = SWEEPS if method == "latent" else {k: SWEEPS[k] for k in ("reg_every", "eta")}
        configs = [("defaults", default)] + [(f"{name}={value}", replace(default, **{name: value}))
                                             for name, values in sweeps.items() for value in values
                                             if value != getattr(default, name)]
        for label, settings in configs:
            result = evaluate(args.gt, args.lq, prior, (method,), settings)[method]
            rows.append({"method": method, "setting": label, **result})
            print(f"| {method} | {label} | {cells(result)} |", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
