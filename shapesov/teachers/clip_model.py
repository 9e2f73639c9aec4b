"""The tiny CLIP as an open_clip model: registered config (data, not code), and open_clip's `local-dir:` format.

A `local-dir:` directory holds `open_clip_config.json` ({"model_cfg", "preprocess_cfg"}) and
`open_clip_model.safetensors`; `open_clip.create_model_and_transforms("local-dir:" + path)` rebuilds the model and its
preprocessing from it, which is how the feature pipeline loads any CLIP.
"""
from __future__ import annotations

import json
from pathlib import Path

import open_clip
import torch
from safetensors.torch import save_file

MODEL_CONFIG_DIR = Path(__file__).parent / "model_configs"
CONFIG_FILE = "open_clip_config.json"  # file names open_clip's factory looks for in a local-dir
WEIGHTS_FILE = "open_clip_model.safetensors"
_registered = False


def register_model_configs() -> None:
    """Make our model configs (e.g. `shapes-clip-tiny`) known to open_clip by name."""
    global _registered
    if not _registered:
        open_clip.add_model_config(MODEL_CONFIG_DIR)
        _registered = True


def preprocess_config(image_size: int) -> dict:
    """open_clip preprocess config: squash (no centre crop) so that a region crop keeps its whole object."""
    return {"size": image_size, "mode": "RGB", "mean": list(open_clip.OPENAI_DATASET_MEAN),
            "std": list(open_clip.OPENAI_DATASET_STD), "interpolation": "bicubic", "resize_mode": "squash",
            "fill_color": 0}


def create_clip(model_name: str, init_logit_scale: float) -> open_clip.CLIP:
    """A randomly initialised model of a registered config, logit scale set to `init_logit_scale` (log space)."""
    register_model_configs()
    model = open_clip.create_model(model_name, pretrained=None)
    with torch.no_grad():
        model.logit_scale.fill_(init_logit_scale)
    return model


def save_local_dir(model: open_clip.CLIP, model_name: str, image_size: int, out_dir: Path) -> list[Path]:
    """Write the model as an open_clip `local-dir:` directory; returns the files written."""
    register_model_configs()
    out_dir.mkdir(parents=True, exist_ok=True)
    config = {"model_cfg": open_clip.get_model_config(model_name), "preprocess_cfg": preprocess_config(image_size)}
    config_path = out_dir / CONFIG_FILE
    config_path.write_text(json.dumps(config, indent=2))
    weights_path = out_dir / WEIGHTS_FILE
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(weights_path))
    return [config_path, weights_path]


def load_local_dir(path: Path):
    """(model in eval mode, eval preprocess, tokenizer) through open_clip's own `local-dir:` loading path."""
    name = f"local-dir:{path}"
    model, _, preprocess = open_clip.create_model_and_transforms(name)
    return model.eval(), preprocess, open_clip.get_tokenizer(name)
