"""Crop windows around a box and the crops themselves, cut from one decoded image array.

A window is an integer pixel rectangle [x0, x1) x [y0, y1) inside the image: the pixels actually cut,
which is what `crop_box` records.
"""
from __future__ import annotations

import math

import numpy as np

from schemas.tables import CROP_MODES, CropMode


def _integer_window(x0: float, y0: float, x1: float, y1: float, width: int, height: int) -> tuple[int, int, int, int]:
    """Smallest integer window covering the float box, inside the image and at least one pixel wide and high."""
    left = min(max(int(math.floor(x0)), 0), width - 1)
    top = min(max(int(math.floor(y0)), 0), height - 1)
    right = max(min(int(math.ceil(x1)), width), left + 1)
    bottom = max(min(int(math.ceil(y1)), height), top + 1)
    return left, top, right, bottom


def _shift_inside(start: float, size: float, limit: int) -> float:
    """Start of an interval of `size` moved (not shrunk) to lie inside [0, limit]."""
    return min(max(start, 0.0), limit - size)


def tight_window(box, width: int, height: int) -> tuple[int, int, int, int]:
    return _integer_window(*box, width, height)


def square_window(box, width: int, height: int) -> tuple[int, int, int, int]:
    """OADP-style square: side sqrt(8 * box area) centred on the box, shifted to stay inside the image.

    The side is at least the box's longer side so thin boxes are never cut, and at most the image side.
    """
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    side = max(math.sqrt(8.0 * max(w * h, 0.0)), w, h)
    side_x, side_y = min(side, width), min(side, height)
    left = _shift_inside((x0 + x1) / 2 - side_x / 2, side_x, width)
    top = _shift_inside((y0 + y1) / 2 - side_y / 2, side_y, height)
    return _integer_window(left, top, left + side_x, top + side_y, width, height)


def context_window(box, width: int, height: int, scale: float) -> tuple[int, int, int, int]:
    """The box scaled by `scale` about its centre (context around the object), clipped to the image."""
    x0, y0, x1, y1 = box
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    half_w, half_h = (x1 - x0) * scale / 2, (y1 - y0) * scale / 2
    return _integer_window(cx - half_w, cy - half_h, cx + half_w, cy + half_h, width, height)


def crop_window(box, mode: CropMode, width: int, height: int, context_scale: float = 1.5) -> tuple[int, int, int, int]:
    if mode == "tight":
        return tight_window(box, width, height)
    if mode == "square":
        return square_window(box, width, height)
    if mode == "context":
        return context_window(box, width, height, context_scale)
    raise ValueError(f"unknown crop mode {mode!r} (config key crop.mode); modes are {list(CROP_MODES)}")


def cut(image: np.ndarray, window: tuple[int, int, int, int]) -> np.ndarray:
    """image: (H, W, 3) uint8 → (h, w, 3) uint8 view of the window (no copy)."""
    left, top, right, bottom = window
    return image[top:bottom, left:right]
