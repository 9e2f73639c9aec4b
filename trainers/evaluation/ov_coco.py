"""Open-vocabulary COCO evaluation: box AP50 over all, base and novel classes with pycocotools (OV-COCO protocol).

OV-COCO reports AP at IoU 0.5 over the 65 evaluation classes, and separately over the 48 base and 17 novel ones;
each subset is a COCOeval run restricted to those category ids (`params.catIds`), with all images.
"""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Iterable, Sequence

from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch import Tensor

AP50_INDEX = 1  # COCOeval.stats[1]: AP at IoU 0.50, all areas, maxDets 100


def load_coco_ground_truth(source: str | Path | dict) -> COCO:
    """A pycocotools COCO index from a COCO-format JSON file or an already loaded dict.

    COCOeval reads every ground-truth object's `area` (its size ranges) and `iscrowd`; COCO's own files carry both,
    a hand-written file often neither. A missing `area` becomes the box's w·h (what pycocotools' `loadRes` gives
    results) and a missing `iscrowd` 0, instead of a KeyError from inside the evaluation."""
    if not isinstance(source, dict):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"ground-truth annotations not found: {path}")
        source = json.loads(path.read_text())
    for annotation in source.get("annotations", []):
        if "area" not in annotation and len(annotation.get("bbox", ())) == 4:
            annotation["area"] = float(annotation["bbox"][2]) * float(annotation["bbox"][3])
        annotation.setdefault("iscrowd", 0)
    coco = COCO()
    coco.dataset = source
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress lines
        coco.createIndex()
    return coco


def to_coco_results(detections: Iterable[dict[str, Tensor]], image_ids: Sequence[int],
                    category_ids: Sequence[int]) -> list[dict]:
    """Detections (per image: boxes (K, 4) xyxy pixels, scores (K,), labels (K,) class index) → COCO results
    `[{image_id, category_id, bbox: [x, y, w, h], score}]`; class index c means category_ids[c]."""
    results = []
    for image_id, detection in zip(image_ids, detections, strict=True):
        boxes = detection["boxes"].detach().cpu().tolist()
        scores = detection["scores"].detach().cpu().tolist()
        labels = detection["labels"].detach().cpu().tolist()
        for (x1, y1, x2, y2), score, label in zip(boxes, scores, labels):
            results.append({"image_id": int(image_id), "category_id": int(category_ids[label]),
                            "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(score)})
    return results


def coco_ap50(ground_truth: COCO, results: list[dict], category_ids: Sequence[int]) -> float | None:
    """Box AP50 over `category_ids`; None when those categories have no ground truth (AP undefined)."""
    category_ids = sorted(int(c) for c in category_ids)
    if not ground_truth.getAnnIds(catIds=category_ids):
        return None
    subset = [r for r in results if r["category_id"] in set(category_ids)]
    if not subset:
        return 0.0  # ground truth exists and nothing was detected (COCO.loadRes cannot take an empty list)
    with contextlib.redirect_stdout(io.StringIO()):
        detections = ground_truth.loadRes(subset)
        evaluator = COCOeval(ground_truth, detections, iouType="bbox")
        evaluator.params.catIds = category_ids
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return float(evaluator.stats[AP50_INDEX])


def evaluate_ov_coco(ground_truth: COCO, results: list[dict], base_category_ids: Sequence[int],
                     novel_category_ids: Sequence[int]) -> dict[str, float | None]:
    """{"AP50_all", "AP50_base", "AP50_novel"} as fractions in [0, 1] (None where a subset has no ground truth)."""
    overlap = set(base_category_ids) & set(novel_category_ids)
    if overlap:
        raise ValueError(f"categories {sorted(overlap)} are both base and novel")
    return {
        "AP50_all": coco_ap50(ground_truth, results, list(base_category_ids) + list(novel_category_ids)),
        "AP50_base": coco_ap50(ground_truth, results, base_category_ids),
        "AP50_novel": coco_ap50(ground_truth, results, novel_category_ids),
    }


def format_metrics(metrics: dict, prefix: str = "") -> str:
    """One line, percentages as the paper prints them: `AP50_all 52.9  AP50_base 55.7  AP50_novel 45.2`; a nested
    dict prints its entries with its key as a prefix (`other_mappings.softmax.AP50_all 61.0`)."""
    return "  ".join(format_metrics(value, f"{prefix}{name}.") if isinstance(value, dict)
                     else f"{prefix}{name} {'n/a' if value is None else f'{100 * value:.1f}'}"
                     for name, value in metrics.items())


def save_metrics(metrics: dict, path: str | Path) -> Path:
    """Write the metrics as JSON (fractions, None for undefined) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return path
