"""Proposal quality as the field measures it: class-agnostic average recall (AR) with pycocotools.

COCOeval with `useCats=0` pools every ground-truth box of an image regardless of its class and matches the image's
top-scoring proposals against them; AR@k is the recall at k proposals per image averaged over the IoU thresholds
0.50:0.05:0.95 (COCO's AR, as OLN reports it, Kim et al. 2022, Sec. 4), R50@k the recall at IoU 0.5 alone.
Ground truth of each side (base, novel) is read from its own file and restricted to that side's category ids, so a
held-out novel file is read here only, by the evaluation, and never by anything that trains.
"""
from __future__ import annotations

import contextlib
import copy
import io
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from pipelines.coco import AnnotationError, ImageRecord, OpenFn, open_local, read_coco, read_json
from pipelines.ov_split import load_split

MAX_DETS = (5, 10, 100)  # AR@5 / AR@10 / AR@100: the budgets; HD-OVD keeps the top 5 proposals per image
AREA_ALL = 0  # COCOeval.params.areaRngLbl[0] == "all"
IOU_50 = 0  # COCOeval.params.iouThrs[0] == 0.5


def load_ground_truth(path: str, category_ids: Sequence[int] | None = None,
                      open_fn: OpenFn = open_local) -> dict:
    """The COCO instances file `path` with only the annotations of `category_ids` (all when None).

    Annotations without an `area` get their box area (COCOeval reads `area` for its area ranges)."""
    data = read_json(path, open_fn)
    if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
        raise AnnotationError(f"{path} is not a COCO instances file (needs 'images' and 'annotations')")
    wanted = None if category_ids is None else {int(c) for c in category_ids}
    annotations = []
    for record in data["annotations"]:
        if wanted is not None and int(record["category_id"]) not in wanted:
            continue
        record = dict(record)
        if "area" not in record:
            record["area"] = float(record["bbox"][2]) * float(record["bbox"][3])
        annotations.append(record)
    return {"images": data["images"], "annotations": annotations, "categories": data.get("categories", []),
            "source": path}


def _coco_index(ground_truth: dict) -> COCO:
    coco = COCO()
    coco.dataset = copy.copy(ground_truth)
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress lines
        coco.createIndex()
    return coco


def _results(proposals: Mapping[int, np.ndarray], image_ids: set[int], top: int) -> list[dict]:
    """COCO results of the top `top` proposals (by score) of each image in `image_ids`; any category id will do,
    since class-agnostic evaluation ignores it."""
    rows = []
    for image_id, array in proposals.items():
        if int(image_id) not in image_ids or len(array) == 0:
            continue
        array = np.asarray(array, dtype=np.float64).reshape(-1, 5)
        order = np.argsort(-array[:, 4], kind="stable")[:top]
        for x0, y0, x1, y1, score in array[order].tolist():
            rows.append({"image_id": int(image_id), "category_id": 1, "bbox": [x0, y0, x1 - x0, y1 - y0],
                         "score": score})
    return rows


def average_recall(ground_truth: dict, proposals: Mapping[int, np.ndarray], max_dets: Sequence[int] = MAX_DETS,
                   image_ids: Sequence[int] | None = None) -> dict[str, float | int | None]:
    """Class-agnostic recall of `proposals` against `ground_truth` (a COCO dict, e.g. from load_ground_truth).

    proposals: image_id → (N, 5) rows x0, y0, x1, y1, score in image pixels (any order; the top max_dets[-1] by
    score count). image_ids: the images evaluated (default: every image of the ground truth); an image without
    proposals keeps its ground truth, unfound. Returns {"AR@k", "R50@k" for each k, "num_gt"}: fractions in [0, 1],
    None where there is no ground truth to find.
    """
    coco = _coco_index(ground_truth)
    evaluated = sorted(coco.getImgIds() if image_ids is None else {int(i) for i in image_ids})
    unknown = set(evaluated) - set(coco.getImgIds())
    if unknown:
        raise AnnotationError(f"images {sorted(unknown)[:5]} are not in {ground_truth.get('source', 'the ground truth')}")
    num_gt = sum(1 for a in coco.loadAnns(coco.getAnnIds(imgIds=evaluated)) if not a.get("iscrowd", 0))
    empty = {f"{name}@{k}": None for name in ("AR", "R50") for k in max_dets}
    if num_gt == 0:
        return {**empty, "num_gt": 0}
    rows = _results(proposals, set(evaluated), max(max_dets))
    if not rows:  # nothing proposed (COCO.loadRes cannot take an empty list): nothing found
        return {**{key: 0.0 for key in empty}, "num_gt": num_gt}
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator = COCOeval(coco, coco.loadRes(rows), iouType="bbox")
        evaluator.params.imgIds = evaluated
        evaluator.params.useCats = 0
        evaluator.params.maxDets = sorted(int(k) for k in max_dets)
        evaluator.evaluate()
        evaluator.accumulate()
    recall = evaluator.eval["recall"][:, 0, AREA_ALL, :]  # (IoU thresholds, maxDets)
    metrics: dict[str, float | int | None] = {}
    for column, k in enumerate(evaluator.params.maxDets):
        metrics[f"AR@{k}"] = float(recall[:, column].mean())
        metrics[f"R50@{k}"] = float(recall[IOU_50, column])
    metrics["num_gt"] = num_gt
    return metrics


@dataclass(frozen=True)
class RecallGroundTruth:
    """The ground truth of each side ("base", and "novel" when a held-out file is given) and the images it is
    evaluated on: the images of the base file (the first `max_images` when > 0), and of those, the ones the
    held-out file lists too."""

    sides: dict[str, dict]  # side → COCO dict restricted to that side's categories
    image_ids: dict[str, list[int]]  # side → evaluated images
    images: tuple[ImageRecord, ...]  # the evaluated images of the base file (what a network must run over)

    @classmethod
    def load(cls, base_annotations: str, novel_annotations: str | None, split: str, max_images: int = 0,
             open_fn: OpenFn = open_local) -> "RecallGroundTruth":
        """split: `ov-coco`, `lvis-frequency` or a split file (pipelines.ov_split.load_split), resolved by class
        name in each file."""
        dataset = read_coco(base_annotations, open_fn)
        records = dataset.images[: max_images or None]
        images = [record.image_id for record in records]
        sides = {"base": load_ground_truth(base_annotations, sorted(load_split(split, dataset, open_fn).base_ids),
                                           open_fn)}
        image_ids = {"base": images}
        if novel_annotations:
            novel = read_coco(novel_annotations, open_fn)
            sides["novel"] = load_ground_truth(novel_annotations,
                                               sorted(load_split(split, novel, open_fn).novel_ids), open_fn)
            listed = set(novel.image_ids())
            image_ids["novel"] = [i for i in images if i in listed]
        return cls(sides, image_ids, records)

    def score(self, proposals: Mapping[int, np.ndarray], max_dets: Sequence[int] = MAX_DETS
              ) -> dict[str, dict[str, float | int | None]]:
        """side → average_recall of `proposals` (image_id → (N, 5) x0, y0, x1, y1, score)."""
        return {side: average_recall(truth, proposals, max_dets, self.image_ids[side])
                for side, truth in self.sides.items()}


def format_recall_table(rows: Mapping[str, Mapping[str, Mapping[str, float | None]]],
                        max_dets: Sequence[int] = MAX_DETS) -> str:
    """A plain-text table: one line per (proposal source, ground-truth side), percentages.

    rows: source name → side ("base", "novel") → metrics of average_recall."""
    keys = [f"AR@{k}" for k in max_dets] + [f"R50@{k}" for k in max_dets]
    name_width = max([len("proposals")] + [len(name) for name in rows])
    lines = [f"{'proposals':<{name_width}}  {'GT':<5}  " + "  ".join(f"{key:>7}" for key in keys) + "  num_gt"]
    for name, sides in rows.items():
        for side, metrics in sides.items():
            cells = ["n/a" if metrics.get(key) is None else f"{100 * metrics[key]:.1f}" for key in keys]
            lines.append(f"{name:<{name_width}}  {side:<5}  " + "  ".join(f"{cell:>7}" for cell in cells)
                         + f"  {metrics.get('num_gt', 0)}")
    return "\n".join(lines)
