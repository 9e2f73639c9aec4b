"""Box arithmetic on numpy arrays of xyxy boxes in image pixels."""
from __future__ import annotations

import numpy as np


def xywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) x, y, w, h → (N, 4) x0, y0, x1, y1 (float64)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)


def box_area(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) xyxy → (N,) area; inverted boxes have area 0."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)


def pairwise_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a: (N, 4), b: (M, 4) xyxy → (N, M) IoU in [0, 1]; an empty side gives an empty matrix."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def clip_boxes(boxes: np.ndarray, width: float, height: float) -> np.ndarray:
    """(N, 4) xyxy clipped to the image [0, width] x [0, height]."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.clip(boxes, 0, [width, height, width, height])


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, max_keep: int | None = None) -> np.ndarray:
    """Greedy class-agnostic NMS. boxes (N, 4) xyxy, scores (N,) → kept indices, highest score first.

    Stops after `max_keep` survivors: with top-K planning only the first K are ever needed, which keeps
    planning linear in K rather than quadratic in the number of proposals.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    suppressed = np.zeros(len(boxes), dtype=bool)
    keep: list[int] = []
    for position, index in enumerate(order):
        if suppressed[index]:
            continue
        keep.append(int(index))
        if max_keep is not None and len(keep) >= max_keep:
            break
        rest = order[position + 1:]
        overlaps = pairwise_iou(boxes[index:index + 1], boxes[rest])[0]
        suppressed[rest[overlaps > iou_threshold]] = True
    return np.asarray(keep, dtype=np.int64)


def box_problem(box: np.ndarray, width: float, height: float, tolerance: float) -> str | None:
    """Why an xyxy box cannot be used, or None: `nan_box`, `negative_box`, `inverted_box`, `out_of_image`.

    Coordinates up to `tolerance` pixels outside the image are rounding noise and are clipped later.
    """
    box = np.asarray(box, dtype=np.float64)
    if not np.all(np.isfinite(box)):
        return "nan_box"
    if np.any(box < -tolerance):
        return "negative_box"
    if box[2] < box[0] or box[3] < box[1]:
        return "inverted_box"
    if box[2] > width + tolerance or box[3] > height + tolerance:
        return "out_of_image"
    return None
