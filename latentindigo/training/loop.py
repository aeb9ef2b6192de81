"""The loop every trainer shares (resume, cosine learning rate, validation, checkpoints) and its checkpoint."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm


@dataclass
class Checkpoint:
    """Weights, optimiser state and progress of one training run, in safetensors + JSON."""

    folder: Path

    @property
    def weights(self) -> Path:
        return self.folder / "checkpoint.safetensors"

    @property
    def meta(self) -> Path:
        return self.folder / "checkpoint.json"

    def save(self, modules: dict[str, torch.nn.Module], optimizer: torch.optim.Optimizer, info: dict) -> None:
        tensors = {f"{name}.{k}": v.detach().cpu().contiguous() for name, m in modules.items()
                   for k, v in m.state_dict().items()}
        state = optimizer.state_dict()
        for pid, pstate in state["state"].items():
            for key, value in pstate.items():
                tensors[f"optim.{pid}.{key}"] = torch.as_tensor(value).cpu().contiguous()
        self.folder.mkdir(parents=True, exist_ok=True)
        # write-then-rename so an interrupted save never leaves a corrupt checkpoint behind
        save_file(tensors, self.weights.with_suffix(".tmp"))
        self.weights.with_suffix(".tmp").replace(self.weights)
        meta = dict(info, param_groups=state["param_groups"])
        self.meta.with_suffix(".tmp").write_text(json.dumps(meta, indent=1))
        self.meta.with_suffix(".tmp").replace(self.meta)

    def load(self, modules: dict[str, torch.nn.Module], optimizer: torch.optim.Optimizer) -> dict:
        """Restore a saved run; returns its info (empty when there is nothing to resume)."""
        if not self.weights.exists():
            return {}
        tensors = load_file(self.weights)
        for name, m in modules.items():
            prefix = f"{name}."
            m.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
        meta = json.loads(self.meta.read_text())
        state: dict = {"state": {}, "param_groups": meta.pop("param_groups")}
        for key, value in tensors.items():
            if key.startswith("optim."):
                _, pid, name = key.split(".", 2)
                state["state"].setdefault(int(pid), {})[name] = value
        optimizer.load_state_dict(state)
        return meta


def run_loop(out: Path, modules: dict[str, torch.nn.Module], optimizer: torch.optim.Optimizer, steps: int,
              loss_fn, settings: dict, validate, every: int, progress=None) -> dict:
    """The loop every trainer shares: resume, cosine learning-rate decay, progress bar (and `progress(step,
    steps)` after each step), validation and checkpoints. `settings["lr"]` is the peak learning rate."""
    checkpoint = Checkpoint(out)
    info = checkpoint.load(modules, optimizer) or {"step": 0, "history": [], "settings": settings}
    start = info["step"]
    if start:
        print(f"resuming {out} at step {start}")
    for m in modules.values():
        m.train()
    bar = tqdm(range(start, steps), initial=start, total=steps, desc=out.name, dynamic_ncols=True)
    running, t0 = [], time.time()
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = settings["lr"] * 0.5 * (1 + math.cos(math.pi * step / steps))
        loss, parts = loss_fn(step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], 1.0)
        optimizer.step()
        running.append(parts)
        bar.set_postfix({k: f"{v:.4g}" for k, v in parts.items()})
        if progress is not None:
            progress(step + 1, steps)
        if (step + 1) % every == 0 or step + 1 == steps:
            for m in modules.values():
                m.eval()
            with torch.no_grad():
                val = validate()
            for m in modules.values():
                m.train()
            mean = {k: float(np.mean([r[k] for r in running])) for k in running[0]}
            info["history"].append({"step": step + 1, "train": mean, "val": val,
                                    "seconds": round(time.time() - t0, 1)})
            info["step"] = step + 1
            checkpoint.save(modules, optimizer, info)
            tqdm.write(f"step {step + 1}: train {mean} val {val}")
            running = []
    return info
