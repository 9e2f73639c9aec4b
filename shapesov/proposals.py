"""Class-agnostic proposals that behave like a trained region proposal network.

A real RPN finds most objects (novel ones too, since objectness is class-agnostic), several times each with jittered
boxes, misses a few, fires on some background, and scores good boxes higher than bad ones. We simulate exactly that,
from the full annotations (base and novel), and write the two formats the pipeline reads.
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np

from shapesov.config import ProposalConfig

# Pickle protocol 4: numpy arrays pickle in-band through `numpy._core.multiarray._reconstruct`, which a restricted
# unpickler can allow by name (protocol 5 may use out-of-band buffers).
PICKLE_PROTOCOL = 4


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU. a: (N, 4), b: (M, 4) float xyxy -> (N, M) float."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), dtype=np.float64)
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def _jittered_boxes(rng: np.random.Generator, gt_xyxy: np.ndarray, cfg: ProposalConfig) -> np.ndarray:
    boxes = []
    for x0, y0, x1, y1 in gt_xyxy:
        if rng.random() >= cfg.recall:
            continue  # a miss
        w, h = x1 - x0, y1 - y0
        for _ in range(int(rng.integers(cfg.min_boxes_per_object, cfg.max_boxes_per_object + 1))):
            cx = (x0 + x1) / 2 + rng.normal(0, cfg.jitter) * w
            cy = (y0 + y1) / 2 + rng.normal(0, cfg.jitter) * h
            new_w = w * np.exp(rng.normal(0, cfg.jitter))
            new_h = h * np.exp(rng.normal(0, cfg.jitter))
            boxes.append([cx - new_w / 2, cy - new_h / 2, cx + new_w / 2, cy + new_h / 2])
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


def _background_boxes(rng: np.random.Generator, width: int, height: int, cfg: ProposalConfig) -> np.ndarray:
    count = int(rng.integers(cfg.min_false_positives, cfg.max_false_positives + 1))
    short_side = min(width, height)
    sides = rng.uniform(0.1, 0.5, size=(count, 2)) * short_side
    x0 = rng.uniform(0, width - sides[:, 0])
    y0 = rng.uniform(0, height - sides[:, 1])
    return np.stack([x0, y0, x0 + sides[:, 0], y0 + sides[:, 1]], axis=1)


def simulate_proposals(rng: np.random.Generator, gt_xyxy: np.ndarray, width: int, height: int,
                       cfg: ProposalConfig) -> np.ndarray:
    """Proposals for one image.

    gt_xyxy: (G, 4) float boxes of *all* objects (base and novel), pixels.
    Returns: (N, 5) float32 rows x1, y1, x2, y2, score, sorted by score (highest first), boxes inside the image.
    """
    boxes = np.concatenate([_jittered_boxes(rng, gt_xyxy, cfg), _background_boxes(rng, width, height, cfg)])
    boxes = np.clip(boxes, 0, [width, height, width, height])
    keep = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) >= cfg.min_box_side
    boxes = boxes[keep]
    best_iou = box_iou(boxes, gt_xyxy).max(axis=1) if len(gt_xyxy) else np.zeros(len(boxes))
    # Objectness tracks localisation quality, with noise: a good box usually, not always, outranks a poor one.
    scores = np.clip(0.05 + 0.9 * best_iou + rng.normal(0, cfg.score_noise, size=len(boxes)), 0.01, 0.99)
    order = np.argsort(-scores, kind="stable")
    return np.concatenate([boxes[order], scores[order, None]], axis=1).astype(np.float32)


def write_proposals_json(path: Path, image_ids: list[int], proposals: list[np.ndarray]) -> None:
    """COCO-results JSON: [{"image_id", "bbox": [x, y, w, h], "score"}] over all images."""
    rows = []
    for image_id, props in zip(image_ids, proposals):
        for x0, y0, x1, y1, score in props.tolist():
            rows.append({"image_id": image_id, "bbox": [round(x0, 2), round(y0, 2), round(x1 - x0, 2),
                                                        round(y1 - y0, 2)], "score": round(score, 4)})
    path.write_text(json.dumps(rows))


def write_proposals_pickle(path: Path, proposals: list[np.ndarray]) -> None:
    """mmdet-style list, one (N, 5) float32 array per image in the dataset's image order."""
    with path.open("wb") as handle:
        pickle.dump([np.ascontiguousarray(p, dtype=np.float32) for p in proposals], handle, protocol=PICKLE_PROTOCOL)
