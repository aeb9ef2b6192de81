"""Safetensors files for the project's own networks, with the constructor config in the metadata."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TypeVar

import torch
from safetensors import safe_open
from safetensors.torch import save_file

M = TypeVar("M", bound=torch.nn.Module)


def save_weights(module: torch.nn.Module, path: str | Path, **info: object) -> Path:
    """Write a module's weights with its `config` (and any extra JSON-able info) as metadata."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"config": json.dumps(module.config), **{k: json.dumps(v) for k, v in info.items()}}
    tensors = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    tmp = path.with_suffix(".tmp")
    save_file(tensors, tmp, metadata=metadata)
    tmp.replace(path)
    return path


def load_weights(cls: type[M], path: str | Path) -> M:
    """Build `cls(**config)` from a file written by `save_weights` and load its weights (eval mode)."""
    with safe_open(str(path), framework="pt") as f:
        config = json.loads(f.metadata()["config"])
        state = {k: f.get_tensor(k) for k in f.keys()}
    module = cls(**config)
    module.load_state_dict(state)
    return module.eval()


def read_info(path: str | Path) -> dict:
    """The extra metadata of a weights file, decoded."""
    with safe_open(str(path), framework="pt") as f:
        return {k: json.loads(v) for k, v in f.metadata().items()}
