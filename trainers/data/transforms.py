"""Resize and horizontal flip that move every box of a sample with its image."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def resize_longest_side(image: torch.Tensor, boxes: dict[str, torch.Tensor], size: int
                        ) -> tuple[torch.Tensor, dict[str, torch.Tensor], float]:
    """image: (3, H, W) float; boxes: name → (N, 4) xyxy in pixels. Longest side becomes `size`."""
    height, width = image.shape[-2:]
    scale = size / max(height, width)
    if scale != 1.0:
        new_hw = (max(1, round(height * scale)), max(1, round(width * scale)))
        image = F.interpolate(image[None], size=new_hw, mode="bilinear", align_corners=False,
                              antialias=scale < 1)[0]
        boxes = {name: b * scale for name, b in boxes.items()}
    return image, boxes, scale


def horizontal_flip(image: torch.Tensor, boxes: dict[str, torch.Tensor]
                    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Mirror the image and every box set: x1' = W − x2, x2' = W − x1."""
    width = image.shape[-1]
    flipped = {}
    for name, b in boxes.items():
        b = b.clone()
        b[:, [0, 2]] = width - b[:, [2, 0]]
        flipped[name] = b
    return image.flip(-1), flipped
