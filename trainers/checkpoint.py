"""Checkpoints that hold everything a run needs to continue exactly: model, optimizer, scheduler,
the criterion's queues, RNG states, the data position and the resolved config.

Loaded as data, never code (vlm.tensor_files: `torch.load(weights_only=True)`; a file holding code is refused with a
message naming it and the flag).
"""
from __future__ import annotations

import os
import random
from pathlib import Path

import torch

from vlm.tensor_files import load_tensor_file

CHECKPOINT_NAME = "checkpoint.pt"


def rng_state() -> dict:
    return {"python": random.getstate(), "torch": torch.get_rng_state()}


def restore_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(state["torch"])


def save_checkpoint(path: Path, **state) -> Path:
    """Write `state` to `path` through a temporary file, so a crash never leaves half a checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{path.name}")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path} (flag --resume or --eval-only; make eval: RUN)")
    return load_tensor_file(path, "flag --resume or --eval-only")
