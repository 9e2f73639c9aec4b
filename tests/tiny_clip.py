"""A tiny open_clip model with random weights, saved the way real checkpoints are, for tests."""
from __future__ import annotations

import json
from pathlib import Path

import torch

MODEL_CONFIGS = Path(__file__).parent / "assets" / "model_configs"
TINY = "tiny-vit-test"


def tiny_model(seed: int = 0):
    import open_clip

    open_clip.add_model_config(MODEL_CONFIGS)
    torch.manual_seed(seed)
    return open_clip.create_model(TINY)


def save_checkpoint(path: Path, seed: int = 0) -> Path:
    """Architecture-name format: a state dict written with torch.save."""
    torch.save(tiny_model(seed).state_dict(), path)
    return path


def save_local_dir(folder: Path, seed: int = 0, preprocess_cfg: dict | None = None) -> Path:
    """open_clip's folder format: open_clip_config.json + open_clip_model.safetensors."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    model_cfg = json.loads((MODEL_CONFIGS / f"{TINY}.json").read_text())
    config = {"model_cfg": model_cfg, "preprocess_cfg": preprocess_cfg or {}}
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    state = {k: v.contiguous() for k, v in tiny_model(seed).state_dict().items()}
    save_file(state, str(folder / "open_clip_model.safetensors"))
    return folder
