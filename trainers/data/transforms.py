"""Resize, flips and transposition that move every box of a sample with its image."""
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


def _mirror(image: torch.Tensor, boxes: dict[str, torch.Tensor], dim: int
            ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Mirror along image axis `dim` (-1: x, -2: y) and every box set with it: lo' = size − hi, hi' = size − lo."""
    size = image.shape[dim]
    low, high = (0, 2) if dim == -1 else (1, 3)
    flipped = {}
    for name, b in boxes.items():
        b = b.clone()
        b[:, [low, high]] = size - b[:, [high, low]]
        flipped[name] = b
    return image.flip(dim), flipped


def horizontal_flip(image: torch.Tensor, boxes: dict[str, torch.Tensor]
                    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Mirror the image and every box set left to right: x1' = W − x2, x2' = W − x1."""
    return _mirror(image, boxes, -1)


def vertical_flip(image: torch.Tensor, boxes: dict[str, torch.Tensor]
                  ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Mirror top to bottom: y1' = H − y2, y2' = H − y1."""
    return _mirror(image, boxes, -2)


def transpose(image: torch.Tensor, boxes: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Swap the axes (a mirror about the main diagonal): (3, H, W) → (3, W, H), x1, y1, x2, y2 → y1, x1, y2, x2.
    With the two flips it reaches all eight rotations and mirrors of the image."""
    return image.transpose(-1, -2), {name: b[:, [1, 0, 3, 2]] for name, b in boxes.items()}
