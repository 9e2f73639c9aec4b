"""open_clip's inference preprocessing, on tensors: resize each crop once, normalise whole batches.

open_clip's transform is PIL resize (bicubic, uint8 out) → centre crop → to float → normalise. We resize
the uint8 crop tensor with antialiasing (torchvision matches PIL's filter to about one grey level) and
centre-crop in the worker, so crops travel as compact uint8 (3, S, S); the float conversion and
normalisation happen per batch next to the model. tests/pipelines/test_clip_model.py checks the result
against open_clip's own transform.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

INTERPOLATIONS = {"bicubic": InterpolationMode.BICUBIC, "bilinear": InterpolationMode.BILINEAR,
                  "nearest": InterpolationMode.NEAREST}


@dataclass(frozen=True)
class CropPreprocess:
    """The parts of open_clip's preprocess config that shape the pixels."""

    size: tuple[int, int]  # (height, width) of the model input
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bicubic"
    resize_mode: str = "shortest"  # shortest | squash | longest
    fill_color: int = 0

    @classmethod
    def from_open_clip(cls, cfg: dict) -> "CropPreprocess":
        size = cfg.get("size", 224)
        size = (size, size) if isinstance(size, int) else tuple(size)
        mode = cfg.get("resize_mode", "shortest")
        if mode not in ("shortest", "squash", "longest"):
            raise ValueError(f"open_clip resize_mode {mode!r} is not supported")
        return cls(size, tuple(cfg["mean"]), tuple(cfg["std"]), cfg.get("interpolation", "bicubic"), mode,
                   int(cfg.get("fill_color", 0)))


def resize_crop(crop: np.ndarray, pre: CropPreprocess) -> torch.Tensor:
    """crop: (h, w, 3) uint8 → (3, H, W) uint8 at the model's input size, as open_clip's transform resizes."""
    pixels = torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1)
    interpolation = INTERPOLATIONS[pre.interpolation]
    height, width = pre.size
    if pre.resize_mode == "squash":
        return F.resize(pixels, [height, width], interpolation=interpolation, antialias=True)
    if pre.resize_mode == "shortest":
        # A scalar size resizes the shorter side, exactly like open_clip's Resize(size) for square inputs.
        target = height if height == width else None
        if target is None:
            scale = max(height / pixels.shape[1], width / pixels.shape[2])
            resized = F.resize(pixels, [round(pixels.shape[1] * scale), round(pixels.shape[2] * scale)],
                               interpolation=interpolation, antialias=True)
        else:
            resized = F.resize(pixels, [target], interpolation=interpolation, antialias=True)
        return F.center_crop(resized, [height, width])
    scale = min(height / pixels.shape[1], width / pixels.shape[2])  # longest: fit inside, then pad
    resized = F.resize(pixels, [max(1, round(pixels.shape[1] * scale)), max(1, round(pixels.shape[2] * scale))],
                       interpolation=interpolation, antialias=True)
    pad_top, pad_left = (height - resized.shape[1]) // 2, (width - resized.shape[2]) // 2
    return F.pad(resized, [pad_left, pad_top, width - resized.shape[2] - pad_left,
                           height - resized.shape[1] - pad_top], fill=pre.fill_color)


def normalise_batch(batch: torch.Tensor, pre: CropPreprocess, dtype: torch.dtype) -> torch.Tensor:
    """batch: (B, 3, H, W) uint8 → (B, 3, H, W) `dtype`, scaled to [0, 1] and normalised by mean/std."""
    mean = torch.tensor(pre.mean, device=batch.device).view(1, 3, 1, 1)
    std = torch.tensor(pre.std, device=batch.device).view(1, 3, 1, 1)
    return ((batch.float() / 255.0 - mean) / std).to(dtype)
