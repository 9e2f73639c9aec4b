"""Boxes on nothing: what a proposal network fires on a scene besides its objects, and what each box frames.

Real captioners learn from web captions of every kind of picture, empty ones included, so they can say that a crop
shows no object. Ours learn it from three kinds of box drawn on each training scene (BackgroundCropConfig):
- anywhere: random boxes, sides 0.1-0.5 of the image's short side, like the false positives of the simulated
  proposals (shapesov/proposals.py, `_background_boxes`);
- part: a box over a small part of one shape (0.3-0.65 of its width and of its height), which a proposal network
  fires on too;
- loose: a box jittered widely around a shape, like a poorly placed proposal.
A box frames an object when its IoU with that object's box is at least FRAMES_IOU, the rule `featurestore labels`
judges pseudo boxes by; then it is an object crop of that object, whatever its kind. Any other box frames nothing;
when a shape still fills a good share of it, its caption says so ("part of a red shape"), without naming the shape.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pipelines.boxes import box_area, pairwise_iou
from shapesov.teachers.config import BackgroundCropConfig

FRAMES_IOU = 0.5  # featurestore/commands/label_quality.py COVER_IOU: a pseudo box "is" an object at IoU >= 0.5
# A box that frames nothing but is at least this much covered by one shape's box shows part of that shape.
PART_SHARE = 0.2
# Random boxes: sides as a share of the image's short side (shapesov/proposals.py `_background_boxes`).
ANYWHERE_SIDES = (0.1, 0.5)
# Part boxes: sides as a share of the shape's own sides; at most 0.65 x 0.65 = 0.42 of its box, so IoU < 0.5.
PART_SIDES = (0.3, 0.65)
MIN_SIDE = 4.0  # pixels, the simulated proposals' min_box_side: smaller boxes are not proposed


@dataclass(frozen=True)
class BackgroundBox:
    """A box on a scene and what it frames: `framed` (index of the object it frames) or, framing nothing, `part`
    (index of the object it shows a good share of, or None)."""

    kind: str  # "anywhere" | "part" | "loose"
    box: tuple[float, float, float, float]  # xyxy pixels, inside the image
    framed: int | None
    part: int | None


def _anywhere(rng: np.random.Generator, width: int, height: int, count: int) -> np.ndarray:
    sides = rng.uniform(*ANYWHERE_SIDES, size=(count, 2)) * min(width, height)
    x0 = rng.uniform(0, width - sides[:, 0])
    y0 = rng.uniform(0, height - sides[:, 1])
    return np.stack([x0, y0, x0 + sides[:, 0], y0 + sides[:, 1]], axis=1)


def _parts(rng: np.random.Generator, objects: np.ndarray, count: int) -> np.ndarray:
    boxes = []
    for x0, y0, x1, y1 in objects:
        for _ in range(count):
            w, h = (x1 - x0) * rng.uniform(*PART_SIDES), (y1 - y0) * rng.uniform(*PART_SIDES)
            left, top = rng.uniform(x0, x1 - w), rng.uniform(y0, y1 - h)
            boxes.append([left, top, left + w, top + h])
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


def _loose(rng: np.random.Generator, objects: np.ndarray, count: int, jitter: float) -> np.ndarray:
    boxes = []
    for x0, y0, x1, y1 in objects:
        w, h = x1 - x0, y1 - y0
        for _ in range(count):
            cx, cy = (x0 + x1) / 2 + rng.normal(0, jitter) * w, (y0 + y1) / 2 + rng.normal(0, jitter) * h
            new_w, new_h = w * math.exp(rng.normal(0, jitter)), h * math.exp(rng.normal(0, jitter))
            boxes.append([cx - new_w / 2, cy - new_h / 2, cx + new_w / 2, cy + new_h / 2])
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


def what_boxes_frame(boxes: np.ndarray, objects: np.ndarray) -> tuple[list[int | None], list[int | None]]:
    """boxes: (N, 4), objects: (G, 4) xyxy → per box the object it frames (IoU >= FRAMES_IOU, the best one) and,
    where it frames none, the object whose box covers at least PART_SHARE of it (the most covering one)."""
    if not len(objects):
        return [None] * len(boxes), [None] * len(boxes)
    iou = pairwise_iou(boxes, objects)
    top_left = np.maximum(boxes[:, None, :2], objects[None, :, :2])
    bottom_right = np.minimum(boxes[:, None, 2:], objects[None, :, 2:])
    covered = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2) / np.maximum(box_area(boxes)[:, None], 1e-9)
    framed, part = [], []
    for row in range(len(boxes)):
        best = int(np.argmax(iou[row]))
        most = int(np.argmax(covered[row]))
        framed.append(best if iou[row, best] >= FRAMES_IOU else None)
        part.append(most if framed[-1] is None and covered[row, most] >= PART_SHARE else None)
    return framed, part


def sample_background_boxes(rng: np.random.Generator, objects: np.ndarray, width: int, height: int,
                            cfg: BackgroundCropConfig) -> list[BackgroundBox]:
    """The boxes on nothing of one scene. objects: (G, 4) xyxy boxes of its shapes. Boxes are clipped to the image;
    those with a side under MIN_SIDE pixels are dropped, as a proposal network's minimum size drops them."""
    objects = np.asarray(objects, dtype=np.float64).reshape(-1, 4)
    kinds = {"anywhere": _anywhere(rng, width, height, cfg.anywhere_per_scene),
             "part": _parts(rng, objects, cfg.part_per_object),
             "loose": _loose(rng, objects, cfg.loose_per_object, cfg.loose_jitter)}
    found = []
    for kind, boxes in kinds.items():
        boxes = np.clip(boxes, 0, [width, height, width, height])
        boxes = boxes[np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) >= MIN_SIDE]
        framed, part = what_boxes_frame(boxes, objects)
        found += [BackgroundBox(kind, tuple(float(v) for v in box), f, p) for box, f, p in zip(boxes, framed, part)]
    return found
