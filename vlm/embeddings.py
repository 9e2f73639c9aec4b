"""CLIP image-tower output → what the store keeps: the unit-length embedding and the length it was divided by."""
from __future__ import annotations

import torch


def unit_embeddings(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """features: (N, D) raw `encode_image` output, any float dtype → ((N, D) float32 unit length, (N,) float32 norms).

    Computed in float32 whatever the model's dtype, so a bf16 forward loses nothing more here. `unit * norm` gives
    the raw output back: the input official ClipCap MLP checkpoints were trained on (CLIP_prefix_caption's
    predict.py feeds `encode_image` unscaled).
    """
    raw = features.float()
    norms = raw.norm(dim=-1)
    return raw / norms.clamp_min(1e-12)[:, None], norms
