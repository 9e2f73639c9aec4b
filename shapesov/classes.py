"""The ShapesOV vocabulary: 8 shape classes, 6 colours and the open-vocabulary split.

Every shape is a polygon in unit coordinates (centred on the origin, y pointing down, extent about [-1, 1]), so the
renderer, the segmentation written to COCO and the teachers' training renders all come from one definition.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ShapeClass:
    """One category: COCO id, name, and whether its boxes are withheld from detector training."""

    category_id: int
    name: str
    novel: bool


# 6 base / 2 novel. Star and heart are novel because their silhouettes are unlike every base shape (a concave star,
# a curved heart), so "finds novel shapes" cannot be explained by confusing them with a base class.
SHAPE_CLASSES: tuple[ShapeClass, ...] = (
    ShapeClass(1, "circle", False),
    ShapeClass(2, "square", False),
    ShapeClass(3, "triangle", False),
    ShapeClass(4, "star", True),
    ShapeClass(5, "crescent", False),
    ShapeClass(6, "cross", False),
    ShapeClass(7, "heart", True),
    ShapeClass(8, "diamond", False),
)
SHAPE_NAMES: tuple[str, ...] = tuple(c.name for c in SHAPE_CLASSES)
BASE_NAMES: tuple[str, ...] = tuple(c.name for c in SHAPE_CLASSES if not c.novel)
NOVEL_NAMES: tuple[str, ...] = tuple(c.name for c in SHAPE_CLASSES if c.novel)
CATEGORY_ID_BY_NAME: dict[str, int] = {c.name: c.category_id for c in SHAPE_CLASSES}

# Saturated colours far from the muted backgrounds (render.py keeps backgrounds at low saturation).
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (35, 165, 60),
    "blue": (35, 75, 215),
    "yellow": (235, 205, 30),
    "purple": (135, 55, 185),
    "orange": (245, 135, 25),
}
COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)


def _regular_polygon(n_vertices: int, radius: float, start_deg: float) -> np.ndarray:
    angles = np.deg2rad(start_deg + 360.0 * np.arange(n_vertices) / n_vertices)
    return np.stack([radius * np.cos(angles), radius * np.sin(angles)], axis=1)


def _star(points: int = 5, inner_ratio: float = 0.45) -> np.ndarray:
    outer = _regular_polygon(points, 1.0, -90.0)
    inner = _regular_polygon(points, inner_ratio, -90.0 + 180.0 / points)
    star = np.empty((2 * points, 2))
    star[0::2], star[1::2] = outer, inner
    return star


def _cross(half_width: float = 0.32) -> np.ndarray:
    a, w = 1.0, half_width
    return np.array([[-w, -a], [w, -a], [w, -w], [a, -w], [a, w], [w, w],
                     [w, a], [-w, a], [-w, w], [-a, w], [-a, -w], [-w, -w]])


def _crescent(n_points: int = 32, offset: float = 0.45, inner_radius: float = 0.8) -> np.ndarray:
    """A unit disc minus a disc of `inner_radius` shifted right by `offset`: a "C" opening to the right."""
    # Where the two circles cross: x = (1 + d^2 - r^2) / 2d on both.
    x = (1.0 + offset ** 2 - inner_radius ** 2) / (2.0 * offset)
    y = math.sqrt(1.0 - x ** 2)
    outer_start = math.atan2(y, x)
    inner_start = math.atan2(y, x - offset)
    outer = np.linspace(outer_start, 2.0 * math.pi - outer_start, n_points)
    inner = np.linspace(2.0 * math.pi - inner_start, inner_start, n_points)
    outer_pts = np.stack([np.cos(outer), np.sin(outer)], axis=1)
    inner_pts = np.stack([offset + inner_radius * np.cos(inner), inner_radius * np.sin(inner)], axis=1)
    return _fit_unit_box(np.concatenate([outer_pts, inner_pts]))


def _heart(n_points: int = 64) -> np.ndarray:
    # The classic parametric heart curve (x = 16 sin^3 t, y = 13 cos t - 5 cos 2t - 2 cos 3t - cos 4t), y flipped
    # so the point faces down, then scaled to the unit box.
    t = np.linspace(0.0, 2.0 * math.pi, n_points, endpoint=False)
    x = 16.0 * np.sin(t) ** 3
    y = -(13.0 * np.cos(t) - 5.0 * np.cos(2 * t) - 2.0 * np.cos(3 * t) - np.cos(4 * t))
    pts = np.stack([x, y], axis=1)
    return _fit_unit_box(pts)


def _fit_unit_box(pts: np.ndarray) -> np.ndarray:
    centre = (pts.max(axis=0) + pts.min(axis=0)) / 2.0
    half_extent = (pts.max(axis=0) - pts.min(axis=0)).max() / 2.0
    return (pts - centre) / half_extent


_UNIT_POLYGONS: dict[str, np.ndarray] = {
    "circle": _regular_polygon(48, 1.0, 0.0),
    "square": _regular_polygon(4, 1.0, 45.0) / math.sqrt(2.0) * 1.7,
    "triangle": _fit_unit_box(_regular_polygon(3, 1.0, -90.0)),
    "star": _fit_unit_box(_star()),
    # A crescent rather than a hexagon: at 32 x 32 pixels a hexagon is barely distinguishable from a circle.
    "crescent": _crescent(),
    "cross": _cross(),
    "heart": _heart(),
    # A rhombus taller than wide, so that a slightly rotated square never looks like a diamond.
    "diamond": np.array([[0.0, -1.0], [0.62, 0.0], [0.0, 1.0], [-0.62, 0.0]]),
}


def unit_polygon(shape_name: str) -> np.ndarray:
    """Vertices of a shape in unit coordinates.

    Returns: (V, 2) float64 array of (x, y), centred on the origin, y down, extent at most [-1, 1].
    """
    return _UNIT_POLYGONS[shape_name].copy()
