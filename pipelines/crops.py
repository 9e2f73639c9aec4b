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


def square_side(box, width: int, height: int, max_area: float | None = None) -> float:
    """The side of the square window around `box`: OADP's sqrt(8 * box area) (oadp/oake/objects.py,
    Dataset._expand, ExpandMode.ADAPTIVE with scale_ratio 8), at least the box's longer side so thin boxes are never
    cut; with `max_area`, at most the side of a square covering that share of the image (but never less than the
    box's longer side)."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    side = max(math.sqrt(8.0 * max(w * h, 0.0)), w, h)
    if max_area is not None:
        side = max(min(side, math.sqrt(max_area * width * height)), w, h)
    return side


def square_window(box, width: int, height: int, max_area: float | None = None) -> tuple[int, int, int, int]:
    """A square of side `square_side` centred on the box, shifted to stay inside the image, cut to the image where
    it is larger than the image.

    OADP's own crop keeps the full square and pads it beyond the image (and then masks the attention outside the
    box); cut to the image instead, every box larger than about an eighth of the image gets the whole image as its
    window, whatever it holds. `max_area` (config key crop.square_max_area) caps the square so a large object keeps
    a window of its own.
    """
    x0, y0, x1, y1 = box
    side = square_side(box, width, height, max_area)
    side_x, side_y = min(side, width), min(side, height)
    left = _shift_inside((x0 + x1) / 2 - side_x / 2, side_x, width)
    top = _shift_inside((y0 + y1) / 2 - side_y / 2, side_y, height)
    return _integer_window(left, top, left + side_x, top + side_y, width, height)


def context_window(box, width: int, height: int, scale: float) -> tuple[int, int, int, int]:
    """The box scaled by `scale` about its centre (context around the object), clipped to the image."""
    return _integer_window(*_scaled(box, scale), width, height)


def _scaled(box, scale: float) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = box
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    half_w, half_h = (x1 - x0) * scale / 2, (y1 - y0) * scale / 2
    return cx - half_w, cy - half_h, cx + half_w, cy + half_h


def crop_window(box, mode: CropMode, width: int, height: int, context_scale: float = 1.5,
                square_max_area: float | None = None) -> tuple[int, int, int, int]:
    if mode == "tight":
        return tight_window(box, width, height)
    if mode == "square":
        return square_window(box, width, height, square_max_area)
    if mode == "context":
        return context_window(box, width, height, context_scale)
    raise ValueError(f"unknown crop mode {mode!r} (config key crop.mode); modes are {list(CROP_MODES)}")


def clipped_at_border(box, mode: CropMode, width: int, height: int, context_scale: float = 1.5,
                      square_max_area: float | None = None) -> bool:
    """Whether the window `mode` asks for around `box` does not fit in the image, so the crop was cut at its border
    (a square that fits is shifted inside, not cut). Half a pixel of slack: windows are whole pixels."""
    if mode == "square":
        side = square_side(box, width, height, square_max_area)
        return side > width + 0.5 or side > height + 0.5
    x0, y0, x1, y1 = _scaled(box, context_scale) if mode == "context" else box
    return x0 < -0.5 or y0 < -0.5 or x1 > width + 0.5 or y1 > height + 0.5


def is_whole_image(window, width: int, height: int) -> bool:
    """Whether a crop window is the whole image."""
    return tuple(int(round(v)) for v in window) == (0, 0, width, height)


def cut(image: np.ndarray, window: tuple[int, int, int, int]) -> np.ndarray:
    """image: (H, W, 3) uint8 → (h, w, 3) uint8 view of the window (no copy)."""
    left, top, right, bottom = window
    return image[top:bottom, left:right]
