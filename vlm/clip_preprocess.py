"""open_clip's inference preprocessing, on tensors: resize each crop once, normalise whole batches.

open_clip's transform is PIL resize (bicubic, uint8 out) → centre crop → to float → normalise. We resize
the uint8 crop tensor with antialiasing (torchvision matches PIL's filter to about one grey level) and
centre-crop in the worker, so crops travel as compact uint8 (3, S, S); the float conversion and
normalisation happen per batch next to the model. tests/pipelines/test_clip_model.py checks the result
against open_clip's own transform.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

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


@dataclass(frozen=True)
class ResizeGeometry:
    """Where open_clip's transform puts a crop of (h, w) pixels: it is resized to (height, width), and the model input
    is the (size) window of that starting at (top, left); a negative start is padding with fill_color."""

    height: int
    width: int
    top: int
    left: int


def _window_start(resized: int, size: int) -> int:
    """torchvision CenterCrop: start int(round((resized - size) / 2)); smaller inputs are padded (size - resized) // 2
    before (open_clip's CenterCropOrPad pads the same way)."""
    return int(round((resized - size) / 2.0)) if resized >= size else -((size - resized) // 2)


def resize_geometry(h: int, w: int, pre: CropPreprocess) -> ResizeGeometry:
    """The resized size and the model-input window of an (h, w) crop, as open_clip's inference transform has them."""
    height, width = pre.size
    if pre.resize_mode == "squash":
        return ResizeGeometry(height, width, 0, 0)
    if pre.resize_mode == "shortest":
        if height == width:
            # open_clip uses torchvision's Resize(size) here: the shorter side becomes `size`, the longer
            # int(size * long / short), truncated (torchvision's _compute_resized_output_size).
            if w <= h:
                new_h, new_w = int(height * h / w), height
            else:
                new_h, new_w = height, int(height * w / h)
        else:
            # ResizeKeepRatio(size) with longest=0: the ratio of the shorter side, rounded sizes.
            scale = max(height / h, width / w)
            new_h, new_w = round(h * scale), round(w * scale)
        return ResizeGeometry(new_h, new_w, _window_start(new_h, height), _window_start(new_w, width))
    scale = min(height / h, width / w)  # longest: fit inside (ResizeKeepRatio, longest=1), then pad
    new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    return ResizeGeometry(new_h, new_w, _window_start(new_h, height), _window_start(new_w, width))


def place_window(resized: torch.Tensor, geometry: ResizeGeometry, pre: CropPreprocess) -> torch.Tensor:
    """resized: (C, height, width) → (C, H, W): the model-input window, padded with fill_color where it leaves the
    resized crop."""
    height, width = pre.size
    y0, x0 = max(geometry.top, 0), max(geometry.left, 0)
    y1, x1 = min(geometry.top + height, geometry.height), min(geometry.left + width, geometry.width)
    window = resized[:, y0:y1, x0:x1]
    pad_top, pad_left = y0 - geometry.top, x0 - geometry.left
    pad_bottom, pad_right = height - pad_top - (y1 - y0), width - pad_left - (x1 - x0)
    if pad_top or pad_left or pad_bottom or pad_right:
        window = F.pad(window, [pad_left, pad_top, pad_right, pad_bottom], fill=pre.fill_color)
    return window


def resize_crop(crop: np.ndarray | torch.Tensor, pre: CropPreprocess) -> torch.Tensor:
    """crop: (h, w, 3) uint8 array or (3, h, w) uint8 tensor → (3, H, W) uint8 at the model's input size, as
    open_clip's transform resizes (torchvision's antialiased uint8 resize, one call per crop)."""
    # torchvision's uint8 resize kernel is fastest on contiguous channels-last (h, w, 3) pixels: a 447-px window of a
    # 640x480 image to 224 px took 0.17 ms so against 0.30 ms channels-first (one thread); one copy makes them so.
    if isinstance(crop, np.ndarray):
        pixels = torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1)
    else:
        pixels = crop.permute(1, 2, 0).contiguous().permute(2, 0, 1)
    geometry = resize_geometry(int(pixels.shape[1]), int(pixels.shape[2]), pre)
    resized = F.resize(pixels, [geometry.height, geometry.width], interpolation=INTERPOLATIONS[pre.interpolation],
                       antialias=True)
    return place_window(resized, geometry, pre)


def stack_crops(crops: Sequence[torch.Tensor]) -> torch.Tensor:
    """(3, H, W) uint8 CPU crops of any strides → one (B, 3, H, W) uint8 view of a contiguous (B, H, W, 3) batch.

    resize_crop's crops are windows of channels-last images: copied as (H, W, 3), each row is one run of bytes.
    torch.stack into (B, 3, H, W) copies them byte by byte across the channel stride in OpenMP regions, which on a
    shared 2-core CPU took 3% of the extract job's time (bench/where_time_goes.py: 30 to 800 ms for 64 crops, as the
    other thread got the core or not); numpy's single-threaded copy of the rows takes about 1 ms. normalise_batch
    makes the channel-first copy, once, in float.
    """
    if not crops:
        raise ValueError("no crops to stack")
    return torch.from_numpy(np.stack([crop.permute(1, 2, 0).numpy() for crop in crops])).permute(0, 3, 1, 2)


def normalise_batch(batch: torch.Tensor, pre: CropPreprocess, dtype: torch.dtype) -> torch.Tensor:
    """batch: (B, 3, H, W) uint8 of any memory layout → contiguous (B, 3, H, W) `dtype`, scaled to [0, 1] and
    normalised by mean/std: one converting copy, then (x - 255·mean) · 1/(255·std) in place."""
    mean = torch.tensor(pre.mean, device=batch.device).view(1, 3, 1, 1)
    std = torch.tensor(pre.std, device=batch.device).view(1, 3, 1, 1)
    pixels = torch.empty(batch.shape, dtype=torch.float32, device=batch.device)
    pixels.copy_(batch)
    return pixels.sub_(mean * 255.0).mul_(1.0 / (std * 255.0)).to(dtype)
