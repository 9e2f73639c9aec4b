"""Pixels of ShapesOV: textured backgrounds and anti-aliased, shaded shapes.

All randomness comes from the `np.random.Generator` passed in, so a scene is a pure function of its seed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from shapesov.classes import COLOURS, unit_polygon

# Shapes are rasterised at 4x and box-filtered down: smooth edges like a photographed object, not aliased stairs.
SUPERSAMPLING = 4
BACKGROUND_KINDS = ("noise", "stripes", "checker", "gradient", "dots")


@dataclass(frozen=True)
class PlacedShape:
    """A shape instance in image pixels: what to draw and where."""

    shape: str
    colour: str
    centre_x: float
    centre_y: float
    radius: float  # half of the larger side of the shape's box, pixels
    angle_deg: float
    aspect: float  # x scale relative to y, mild stretch

    def polygon(self) -> np.ndarray:
        """(V, 2) float64 vertices in image pixel coordinates (x, y)."""
        pts = unit_polygon(self.shape) * np.array([self.aspect, 1.0])
        theta = math.radians(self.angle_deg)
        rotation = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
        return pts @ rotation.T * self.radius + np.array([self.centre_x, self.centre_y])


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cell: int) -> np.ndarray:
    """(H, W) float32 in [0, 1]: value noise, a coarse random grid bilinearly upsampled."""
    grid = rng.random((height // cell + 2, width // cell + 2)).astype(np.float32)
    coarse = Image.fromarray((grid * 255).astype(np.uint8))
    fine = coarse.resize(((width // cell + 2) * cell, (height // cell + 2) * cell), Image.BILINEAR)
    return np.asarray(fine, dtype=np.float32)[:height, :width] / 255.0


def background_kind(rng: np.random.Generator) -> str:
    """The texture of a scene's background, one of BACKGROUND_KINDS (the first draw of a scene's background)."""
    return BACKGROUND_KINDS[rng.integers(len(BACKGROUND_KINDS))]


def textured_background(rng: np.random.Generator, height: int, width: int, kind: str) -> np.ndarray:
    """A muted textured background of `kind` (background_kind).

    Returns: (H, W, 3) float32 RGB in [0, 255]. Low saturation keeps every shape colour readable on it.
    """
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    if kind == "noise":
        pattern = _smooth_noise(rng, height, width, int(rng.integers(6, 24)))
    elif kind == "stripes":
        period, angle = rng.uniform(8, 28), rng.uniform(0, math.pi)
        pattern = 0.5 + 0.5 * np.sin(2 * math.pi * (xx * math.cos(angle) + yy * math.sin(angle)) / period)
    elif kind == "checker":
        cell = int(rng.integers(8, 24))
        pattern = ((xx // cell + yy // cell) % 2).astype(np.float32)
    elif kind == "gradient":
        angle = rng.uniform(0, 2 * math.pi)
        ramp = xx * math.cos(angle) + yy * math.sin(angle)
        pattern = (ramp - ramp.min()) / max(float(ramp.max() - ramp.min()), 1.0)
    else:  # dots
        period = rng.uniform(10, 24)
        pattern = ((np.sin(2 * math.pi * xx / period) * np.sin(2 * math.pi * yy / period)) > 0.6).astype(np.float32)
    grey = rng.uniform(70, 200)
    tint = rng.uniform(-25, 25, size=3).astype(np.float32)
    contrast = rng.uniform(15, 45)
    rgb = grey + tint + contrast * (pattern[..., None] - 0.5)
    # Sensor-like grain so that no region is perfectly flat.
    grain = 4.0 * rng.standard_normal(size=(height, width, 1), dtype=np.float32)
    return np.clip(rgb.astype(np.float32) + grain, 0, 255)


def _pixel_window(placed: PlacedShape, height: int, width: int) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) integer pixel window that contains the whole shape, clipped to the image."""
    polygon = placed.polygon()
    x0, y0 = np.maximum(np.floor(polygon.min(axis=0)).astype(int), 0)
    x1, y1 = np.minimum(np.ceil(polygon.max(axis=0)).astype(int) + 1, [width, height])
    return int(x0), int(y0), int(x1), int(y1)


def shape_alpha(placed: PlacedShape, height: int, width: int) -> np.ndarray:
    """Coverage of the shape at every pixel.

    Returns: (H, W) float32 in [0, 1], anti-aliased by supersampling.
    """
    s = SUPERSAMPLING
    polygon = placed.polygon()
    # Rasterise only the shape's own window: a small fraction of the work of the whole canvas.
    x0, y0, x1, y1 = _pixel_window(placed, height, width)
    alpha = np.zeros((height, width), dtype=np.float32)
    if x1 <= x0 or y1 <= y0:
        return alpha
    patch = Image.new("L", ((x1 - x0) * s, (y1 - y0) * s), 0)
    vertices = [(float(x - x0) * s, float(y - y0) * s) for x, y in polygon]
    ImageDraw.Draw(patch).polygon(vertices, fill=255)
    alpha[y0:y1, x0:x1] = np.asarray(patch.reduce(s), dtype=np.float32) / 255.0
    return alpha


def paint_shape(rng: np.random.Generator, image: np.ndarray, placed: PlacedShape, alpha: np.ndarray) -> None:
    """Composite one shape onto `image` in place.

    image: (H, W, 3) float32 RGB in [0, 255]; alpha: (H, W) float32 coverage from `shape_alpha`.
    """
    base = np.array(COLOURS[placed.colour], dtype=np.float32) + rng.uniform(-12, 12, size=3).astype(np.float32)
    shade_strength = rng.uniform(0.05, 0.2)
    x0, y0, x1, y1 = _pixel_window(placed, *alpha.shape)
    yy = np.arange(y0, y1, dtype=np.float32)[:, None]
    # Light from the top: a vertical brightness ramp across the shape, so shapes are not flat stickers.
    shade = 1.0 + shade_strength * (placed.centre_y - yy) / max(placed.radius, 1.0)
    colour = np.clip(base[None, None, :] * shade[..., None], 0, 255)
    a = alpha[y0:y1, x0:x1, None]
    window = image[y0:y1, x0:x1]
    window *= 1.0 - a
    window += a * colour


def to_uint8_image(image: np.ndarray) -> Image.Image:
    """(H, W, 3) float32 in [0, 255] -> PIL RGB image."""
    return Image.fromarray(np.clip(np.rint(image), 0, 255).astype(np.uint8))
