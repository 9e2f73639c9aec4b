"""One ShapesOV scene: a textured background with 1-4 shapes that may overlap, and their exact annotations."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from shapesov.classes import COLOUR_NAMES, SHAPE_NAMES
from shapesov.config import SceneConfig
from shapesov.render import (PlacedShape, background_kind, paint_shape, shape_alpha, textured_background,
                             to_uint8_image)


@dataclass(frozen=True)
class SceneObject:
    """An annotated shape: COCO-style box (x, y, w, h in pixels), visible area and the polygon outline."""

    shape: str
    colour: str
    bbox: tuple[float, float, float, float]
    area: float
    polygon: tuple[float, ...]  # x0, y0, x1, y1, ... as in COCO `segmentation`


@dataclass(frozen=True)
class Scene:
    image: Image.Image
    objects: tuple[SceneObject, ...]
    background: str  # the texture behind the objects, one of render.BACKGROUND_KINDS

    @property
    def width(self) -> int:
        return self.image.width

    @property
    def height(self) -> int:
        return self.image.height


def _sample_placement(rng: np.random.Generator, cfg: SceneConfig, height: int, width: int) -> PlacedShape:
    short_side = min(height, width)
    radius = rng.uniform(cfg.min_radius_fraction, cfg.max_radius_fraction) * short_side
    margin = radius * (1.0 + cfg.max_aspect_stretch) + 1.0
    return PlacedShape(
        shape=SHAPE_NAMES[rng.integers(len(SHAPE_NAMES))],
        colour=COLOUR_NAMES[rng.integers(len(COLOUR_NAMES))],
        centre_x=rng.uniform(margin, width - margin),
        centre_y=rng.uniform(margin, height - margin),
        radius=radius,
        angle_deg=rng.uniform(-cfg.max_angle_deg, cfg.max_angle_deg),
        aspect=1.0 + rng.uniform(-cfg.max_aspect_stretch, cfg.max_aspect_stretch),
    )


def _keeps_everyone_visible(owner: np.ndarray, full_areas: list[int], new_mask: np.ndarray, min_fraction: float) -> bool:
    """Would painting `new_mask` on top leave every earlier object at least `min_fraction` visible?"""
    for index, full_area in enumerate(full_areas):
        still_visible = np.count_nonzero((owner == index) & ~new_mask)
        if still_visible < min_fraction * full_area:
            return False
    return True


def _box_of(polygon: np.ndarray, height: int, width: int) -> tuple[float, float, float, float]:
    x0, y0 = np.clip(polygon.min(axis=0), 0, [width, height])
    x1, y1 = np.clip(polygon.max(axis=0), 0, [width, height])
    return (round(float(x0), 2), round(float(y0), 2), round(float(x1 - x0), 2), round(float(y1 - y0), 2))


def sample_scene(rng: np.random.Generator, cfg: SceneConfig) -> Scene:
    """Draw one scene; every random choice comes from `rng`."""
    width, height = (int(v) for v in rng.integers(cfg.min_side, cfg.max_side + 1, size=2))
    background = background_kind(rng)
    canvas = textured_background(rng, height, width, background)
    n_objects = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    owner = np.full((height, width), -1, dtype=np.int16)  # index of the topmost object at each pixel
    placed: list[tuple[PlacedShape, np.ndarray]] = []
    full_areas: list[int] = []
    for _ in range(n_objects):
        for _ in range(cfg.placement_tries):
            candidate = _sample_placement(rng, cfg, height, width)
            alpha = shape_alpha(candidate, height, width)
            mask = alpha >= 0.5
            if _keeps_everyone_visible(owner, full_areas, mask, cfg.min_visible_fraction):
                owner[mask] = len(placed)
                placed.append((candidate, alpha))
                full_areas.append(int(np.count_nonzero(mask)))
                break
    objects = []
    for index, (shape, alpha) in enumerate(placed):
        paint_shape(rng, canvas, shape, alpha)
        polygon = shape.polygon()
        objects.append(SceneObject(
            shape=shape.shape,
            colour=shape.colour,
            bbox=_box_of(polygon, height, width),
            area=float(np.count_nonzero(owner == index)),
            polygon=tuple(round(float(v), 2) for v in polygon.reshape(-1)),
        ))
    return Scene(image=to_uint8_image(canvas), objects=tuple(objects), background=background)
