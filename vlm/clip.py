"""open_clip models from local files only.

A model is named either `local-dir:<dir>` (open_clip's folder format: `open_clip_config.json` plus a
weights file) or an architecture name plus a checkpoint file; architecture JSONs can be registered from
a directory first (configs as data, open_clip's registry). Hub names and pretrained tags would need the
internet, so they are refused — with the config key to change — before anything is loaded.
"""
from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import torch

LOCAL_DIR = "local-dir:"
HUB_PREFIXES = ("hf-hub:", "hf:", "http://", "https://", "timm/")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class ModelLoadError(ValueError):
    """A model that cannot be loaded from local files; the message names the config key."""


@dataclass(frozen=True)
class ClipSource:
    """Where a CLIP model comes from, resolved and checked: what `load_clip` needs on any worker."""

    open_clip_name: str  # passed to open_clip.create_model_and_transforms
    checkpoint: str | None  # weights file for an architecture name; None for local-dir (found in the folder)
    model_config_dir: str | None  # extra architecture JSONs to register before creating the model
    weights_path: str  # the file whose bytes are the weights (hash it for provenance)


@dataclass
class LoadedClip:
    model: torch.nn.Module
    tokenizer: object
    preprocess_cfg: dict  # open_clip's: size, mean, std, interpolation, resize_mode, fill_color
    embed_dim: int
    dtype: torch.dtype
    device: torch.device


def register_model_configs(directory: str | None, key: str) -> None:
    """Add the architecture JSONs of `directory` to open_clip's registry (name = file stem)."""
    if not directory:
        return
    import open_clip

    if not Path(directory).is_dir():
        raise ModelLoadError(f"model config directory not found: {directory} (config key {key})")
    open_clip.add_model_config(directory)


def _local_dir_weights(directory: str, key: str) -> str:
    import open_clip.factory

    folder = Path(directory)
    if not (folder / "open_clip_config.json").is_file():
        raise ModelLoadError(f"{directory} has no open_clip_config.json, so it is not an open_clip model folder "
                             f"(config key {key})")
    # The same rule open_clip applies when it loads the folder, so the hash is of the file it will load.
    weights = open_clip.factory._find_checkpoint_in_dir(folder)
    if weights is None:
        raise ModelLoadError(f"no weights file (*.safetensors, *.bin, *.pth) in {directory} (config key {key}); "
                             f"refusing to run with random weights")
    return str(weights)


def resolve_clip(model: str, checkpoint: str | None, model_config_dir: str | None,
                 key: str = "model") -> ClipSource:
    """Check that the model can be loaded offline and find its weights file; errors name `<key>.clip` etc."""
    import open_clip

    if not model:
        raise ModelLoadError(f"no CLIP model given (config key {key}.clip)")
    if model.startswith(HUB_PREFIXES):
        raise ModelLoadError(f"{key}.clip = {model!r} names a hub model, which cannot be downloaded here; "
                             f"give `local-dir:<folder>` or an architecture name with {key}.checkpoint")
    if model.startswith(LOCAL_DIR):
        directory = model[len(LOCAL_DIR):]
        if not Path(directory).is_dir():
            raise ModelLoadError(f"model folder not found: {directory} (config key {key}.clip)")
        weights = _local_dir_weights(directory, f"{key}.clip")
        return ClipSource(model, None, model_config_dir, weights)
    register_model_configs(model_config_dir, f"{key}.model_config_dir")
    if model.replace("/", "-") not in open_clip.list_models():
        raise ModelLoadError(f"{key}.clip = {model!r} is neither `local-dir:<folder>` nor a registered "
                             f"architecture; add its JSON under {key}.model_config_dir")
    if not checkpoint:
        raise ModelLoadError(f"{key}.clip = {model!r} needs a weights file in {key}.checkpoint")
    if not os.path.isfile(checkpoint):
        hint = " (a pretrained tag needs a download; give a local file)" if "/" not in checkpoint else ""
        raise ModelLoadError(f"checkpoint not found: {checkpoint}{hint} (config key {key}.checkpoint)")
    return ClipSource(model, checkpoint, model_config_dir, checkpoint)


def resolve_device(device: str) -> torch.device:
    """`auto` → cuda when available, else cpu."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("device 'cuda' requested but no GPU is visible (config key runtime.device)")
    return torch.device(device)


def load_clip(source: ClipSource, device: str = "cpu", dtype: str = "fp32") -> LoadedClip:
    """Build the model and load its weights (`torch.load(weights_only=True)` or safetensors), in eval mode."""
    import open_clip

    register_model_configs(source.model_config_dir, "model.model_config_dir")
    target = resolve_device(device)
    try:
        model, _, _ = open_clip.create_model_and_transforms(
            source.open_clip_name, pretrained=source.checkpoint, device=target, weights_only=True)
    except pickle.UnpicklingError as error:
        raise ModelLoadError(f"{source.weights_path} holds more than tensors (it asks to build objects or run code) "
                             f"and was refused; save a plain state dict or safetensors ({error})") from error
    model = model.to(dtype=DTYPES[dtype]).eval().requires_grad_(False)
    tokenizer = open_clip.get_tokenizer(source.open_clip_name)
    with torch.inference_mode():
        embed_dim = int(model.encode_text(tokenizer(["a"]).to(target)).shape[-1])
    return LoadedClip(model, tokenizer, dict(open_clip.get_model_preprocess_cfg(model)), embed_dim,
                      DTYPES[dtype], target)
