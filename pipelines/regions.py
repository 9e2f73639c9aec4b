"""Which boxes of an image get a CLIP embedding: base GT, novel-free proposals and the whole image.

Pure functions of the annotations and proposals (no pixels), so planning is cheap, testable and part of
the shard fingerprint. Every box that is not planned is accounted for: bad boxes become dead letters,
normal filtering (crowd, overlap with base GT, NMS, top-K…) is counted per reason.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from pipelines.boxes import box_problem, clip_boxes, nms, pairwise_iou, xywh_to_xyxy
from pipelines.coco import Annotation, ImageRecord
from pipelines.extract_config import RegionsSection


@dataclass(frozen=True)
class PlannedRegion:
    region_id: int
    box: tuple[float, float, float, float]  # xyxy, image pixels, clipped to the image
    source: str  # "gt" | "proposal" | "image"
    category_id: int | None = None
    proposal_score: float | None = None
    max_iou_base: float = 0.0
    names: tuple[str, ...] | None = None  # alternative object names of a GT box; None = unnamed


@dataclass(frozen=True)
class BadBox:
    """A box that cannot be used (a dead letter): which input it came from and why."""

    source: str  # "gt" | "proposal"
    index: int  # annotation id for gt, row in the image's proposal list for proposals
    kind: str  # nan_box | negative_box | inverted_box | out_of_image | degenerate_box | unknown_category
    box: tuple[float, ...]


@dataclass(frozen=True)
class RegionPlan:
    image: ImageRecord
    regions: tuple[PlannedRegion, ...]
    bad_boxes: tuple[BadBox, ...] = ()
    skipped: dict[str, int] = field(default_factory=dict)  # normal filtering, counted by reason


def _gt_regions(annotations: tuple[Annotation, ...], image: ImageRecord, params: RegionsSection,
                bad: list[BadBox], skipped: Counter) -> list[tuple[np.ndarray, Annotation]]:
    """Usable GT boxes (clipped xyxy, their annotation) in annotation order.

    Like mmdet's COCO loader (whose order HD-OVD's features follow), crowd boxes (counted) and boxes under one
    pixel wide or high (dead letters: degenerate_box) are skipped.
    """
    kept = []
    for annotation in annotations:
        box = xywh_to_xyxy(np.asarray(annotation.bbox_xywh))[0]
        problem = box_problem(box, image.width, image.height, params.box_tolerance)
        if problem:
            bad.append(BadBox("gt", annotation.annotation_id, problem, tuple(float(v) for v in box)))
            continue
        if annotation.iscrowd:
            skipped["gt_crowd"] += 1
            continue
        clipped = clip_boxes(box, image.width, image.height)[0]
        if clipped[2] - clipped[0] < 1 or clipped[3] - clipped[1] < 1:
            bad.append(BadBox("gt", annotation.annotation_id, "degenerate_box", tuple(float(v) for v in box)))
            continue
        kept.append((clipped, annotation))
    return kept


def _proposal_candidates(proposals: np.ndarray, base_boxes: np.ndarray, image: ImageRecord, params: RegionsSection,
                         bad: list[BadBox], skipped: Counter) -> list[tuple[np.ndarray, float, float]]:
    """Proposals that survive validation, size, score, base-overlap, NMS and top-K: (box, score, max IoU), best
    first."""
    proposals = np.asarray(proposals, dtype=np.float64).reshape(-1, 5)
    valid = []
    for index, row in enumerate(proposals):
        problem = box_problem(row[:4], image.width, image.height, params.box_tolerance)
        if problem or not np.isfinite(row[4]):
            bad.append(BadBox("proposal", index, problem or "nan_score", tuple(float(v) for v in row)))
        else:
            valid.append(index)
    boxes = clip_boxes(proposals[valid, :4], image.width, image.height)
    scores = proposals[valid, 4]
    sides = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    big = sides >= params.min_proposal_side
    skipped["proposal_too_small"] += int((~big).sum())
    boxes, scores = boxes[big], scores[big]
    confident = scores >= params.min_proposal_score
    skipped["proposal_low_score"] += int((~confident).sum())
    boxes, scores = boxes[confident], scores[confident]
    max_iou = pairwise_iou(boxes, base_boxes).max(axis=1) if len(base_boxes) else np.zeros(len(boxes))
    novel_free = max_iou <= params.max_iou_base
    skipped["proposal_overlaps_base"] += int((~novel_free).sum())
    boxes, scores, max_iou = boxes[novel_free], scores[novel_free], max_iou[novel_free]
    # NMS stops at K survivors (linear in K), so NMS and top-K removals are counted together.
    keep = nms(boxes, scores, params.nms_iou, max_keep=params.top_k)
    skipped["proposal_nms_or_top_k"] += len(boxes) - len(keep)
    return [(boxes[i], float(scores[i]), float(max_iou[i])) for i in keep]


def plan_regions(image: ImageRecord, annotations: tuple[Annotation, ...], proposals: np.ndarray,
                 base_ids: frozenset[int], params: RegionsSection = RegionsSection(),
                 names: Mapping[int, tuple[str, ...]] | None = None) -> RegionPlan:
    """Regions of one image, ids 0.. in order: GT (annotation order), proposals (score order), whole image.

    annotations: the image's annotations that survived the OV split (base only in the strict setting).
    proposals: (N, 5) x0, y0, x1, y1, score in pixels. base_ids: categories whose GT boxes proposals must avoid.
    names: annotation id → alternative object names of its GT region (pipelines.object_names); others unnamed.
    """
    bad: list[BadBox] = []
    skipped: Counter = Counter()
    gt = _gt_regions(annotations, image, params, bad, skipped)
    base_boxes = np.asarray([box for box, annotation in gt if annotation.category_id in base_ids]).reshape(-1, 4)
    names = names or {}
    planned: list[PlannedRegion] = []

    def add(box: np.ndarray, source: str, category: int | None = None, score: float | None = None,
            object_names: tuple[str, ...] | None = None) -> None:
        iou = float(pairwise_iou(box[None], base_boxes).max()) if len(base_boxes) else 0.0
        planned.append(PlannedRegion(len(planned), tuple(float(v) for v in box), source, category, score, iou,
                                     object_names))

    for box, annotation in gt:
        add(box, "gt", category=annotation.category_id, object_names=names.get(annotation.annotation_id))
    for box, score, _ in _proposal_candidates(proposals, base_boxes, image, params, bad, skipped):
        add(box, "proposal", score=score)
    if params.include_image:
        add(np.asarray([0.0, 0.0, image.width, image.height]), "image")
    return RegionPlan(image, tuple(planned), tuple(bad), {k: v for k, v in sorted(skipped.items()) if v})
