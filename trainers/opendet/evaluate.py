"""Open-Det evaluation on a COCO-format set: AP50 via name mapping and how often the generated name is right."""
from __future__ import annotations

import dataclasses
from collections import Counter

import torch
from torchvision.ops import box_iou

from trainers.config import DetectionEvalConfig
from trainers.data.image_tensors import load_image_tensor
from trainers.evaluation.lvis import evaluate_lvis
from trainers.evaluation.ov_coco import evaluate_ov_coco, load_coco_ground_truth, to_coco_results
from trainers.opendet.config import OpenDetInferenceConfig
from trainers.opendet.inference import (
    NameEncoder,
    NamedBoxes,
    best_beam_categories,
    cached,
    detect_named_boxes,
    name_detections,
)
from trainers.opendet.model import OpenDetModel
from trainers.vocabulary import ClassVocabulary

# COCO's object size buckets by annotation area (pycocotools COCOeval Params.areaRng: 32², 96²; a boundary area falls
# in the smaller bucket here).
SIZE_BUCKETS = (("small", 32.0**2), ("medium", 96.0**2), ("large", float("inf")))


def size_bucket(area: float) -> str:
    return next(name for name, upper in SIZE_BUCKETS if area <= upper)


class NameTally:
    """Per category: ground-truth boxes found by a query (IoU ≥ threshold), how many of those queries' generated
    names (best beam) map (top-1, same text encoder) to the right category, and the most common generated names.

    Where the evaluation joins every beam into one text (the released rule, `inference.join_beams`), that text's
    top-1 is counted too (`joined_right`): it is what the AP mapping sees, and with 3 beams over a small vocabulary
    the other beams are other names, which can pull it towards another category.

    Given the boxes' annotation areas, found and right are also counted per COCO size bucket and split."""

    def __init__(self, vocabulary: ClassVocabulary, iou_threshold: float):
        self.vocabulary = vocabulary
        self.iou_threshold = iou_threshold
        self.found, self.right, self.joined_right = Counter(), Counter(), Counter()
        self.tallies_joined = False  # set by the first add() given joined beams
        self.found_by_size, self.right_by_size = Counter(), Counter()  # keys (bucket, "base" | "novel")
        self.is_novel = dict(zip(vocabulary.category_ids, vocabulary.is_novel.tolist()))
        self.names: dict[int, Counter] = {c: Counter() for c in vocabulary.category_ids}

    def add(self, named: NamedBoxes, gt_boxes: torch.Tensor, gt_categories: list[int], top1: list[int | None],
            joined_top1: list[int | None] | None = None, gt_areas: list[float] | None = None) -> None:
        """gt_boxes: (G, 4) xyxy pixels; top1: per named box, the category id its generated name maps to (None: empty
        name); joined_top1: the same for its joined beams, where the evaluation joins them (None: not tallied);
        gt_areas: the G annotation areas (None: no size buckets)."""
        self.tallies_joined |= joined_top1 is not None
        if not len(gt_boxes) or not named.names:
            return
        overlaps = box_iou(gt_boxes, named.boxes.detach().cpu().float())
        best_iou, best = overlaps.max(dim=1)
        for index, (category, iou, row) in enumerate(zip(gt_categories, best_iou.tolist(), best.tolist())):
            if iou < self.iou_threshold:
                continue
            self.found[category] += 1
            self.right[category] += int(top1[row] == category)
            if gt_areas is not None:
                key = (size_bucket(gt_areas[index]), "novel" if self.is_novel[category] else "base")
                self.found_by_size[key] += 1
                self.right_by_size[key] += int(top1[row] == category)
            if joined_top1 is not None:
                self.joined_right[category] += int(joined_top1[row] == category)
            self.names[category][named.names[row]] += 1

    def table(self) -> list[dict]:
        rows = []
        for category, name, novel in zip(self.vocabulary.category_ids, self.vocabulary.names,
                                          self.vocabulary.is_novel.tolist()):
            found = self.found[category]
            row = {"category": name, "split": "novel" if novel else "base", "found": found,
                   "right": self.right[category], "right_rate": self.right[category] / found if found else None,
                   "top_names": [n for n, _ in self.names[category].most_common(3)]}
            if self.tallies_joined:
                row.update(joined_right=self.joined_right[category],
                           joined_right_rate=self.joined_right[category] / found if found else None)
            rows.append(row)
        return rows

    def size_table(self) -> list[dict]:
        """Per COCO size bucket and split that has found boxes: found, right (generated name) and the rate."""
        return [{"size": size, "split": split, "found": self.found_by_size[size, split],
                 "right": self.right_by_size[size, split],
                 "right_rate": self.right_by_size[size, split] / self.found_by_size[size, split]}
                for size, _ in SIZE_BUCKETS for split in ("base", "novel") if self.found_by_size[size, split]]

    def rate(self, novel: bool, joined: bool = False) -> float | None:
        """The share of found boxes of one split named right: by their generated name, or (joined) by their joined
        beams; None when no box was found (or joined beams were not tallied)."""
        if joined and not self.tallies_joined:
            return None
        rows = [r for r in self.table() if (r["split"] == "novel") == novel]
        found = sum(r["found"] for r in rows)
        return sum(r["joined_right" if joined else "right"] for r in rows) / found if found else None


def evaluate_opendet(model: OpenDetModel, vocabulary: ClassVocabulary, config: DetectionEvalConfig,
                     inference: OpenDetInferenceConfig, name_encoder: NameEncoder, categories: torch.Tensor,
                     device: torch.device) -> tuple[dict, dict[str, list[dict]]]:
    """(metrics, {"name_table": per-category rows, "name_size_table": per size bucket and split rows}).

    Metrics: AP50 all / base / novel (or LVIS AP) through name mapping, and
    `name_right_base` / `name_right_novel`, the share of found GT boxes whose generated name (best beam) maps to
    their class, and `joined_beams_right_base` / `_novel` the same for the joined beams the AP mapping embeds (None
    when beams are not joined); `name_right_by_size`, the generated-name rate per COCO size bucket and split;
    `other_mappings`: {mapping: its AP metrics} for each of `inference.other_mappings`, from the same names.

    categories: (C, D) float, L2-normalised, `vocabulary`'s names embedded in `name_encoder`'s space."""
    ground_truth = load_coco_ground_truth(config.annotations)
    image_ids = sorted(ground_truth.getImgIds())[: config.max_images or None]
    encoder = cached(name_encoder)
    others = {name: dataclasses.replace(inference, mapping=name) for name in inference.other_mappings
              if name != inference.mapping}
    tally, results = NameTally(vocabulary, inference.right_name_iou), []

    def category_ids(indices: torch.Tensor) -> list[int | None]:
        return [vocabulary.category_ids[i] if i >= 0 else None for i in indices.tolist()]

    other_results: dict[str, list[dict]] = {name: [] for name in others}
    model.eval()
    for start in range(0, len(image_ids), config.batch_size):
        ids = image_ids[start:start + config.batch_size]
        images = [load_image_tensor(config.image_root, ground_truth.imgs[i]["file_name"], i, "eval.image_root")
                  .to(device) for i in ids]
        named_boxes = detect_named_boxes(model, images, inference)
        detections = [name_detections(named, encoder, categories, inference) for named in named_boxes]
        results += to_coco_results(detections, ids, vocabulary.category_ids)
        for name, other in others.items():
            other_results[name] += to_coco_results([name_detections(named, encoder, categories, other)
                                                    for named in named_boxes], ids, vocabulary.category_ids)
        for image_id, named, detection in zip(ids, named_boxes, detections):
            annotations = ground_truth.loadAnns(ground_truth.getAnnIds(imgIds=image_id, iscrowd=False))
            gt_boxes = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in annotations)])
            name_top1 = best_beam_categories(named, encoder, categories, inference.name_prefix)
            joined_top1 = category_ids(detection["top1"]) if inference.join_beams and named.beams else None
            tally.add(named, gt_boxes.reshape(-1, 4), [a["category_id"] for a in annotations],
                      category_ids(name_top1), joined_top1, [annotation_area(a) for a in annotations])
    metrics = average_precision(ground_truth, results, vocabulary, config)
    size_table = tally.size_table()
    metrics.update(name_right_base=tally.rate(novel=False), name_right_novel=tally.rate(novel=True),
                   joined_beams_right_base=tally.rate(novel=False, joined=True),
                   joined_beams_right_novel=tally.rate(novel=True, joined=True),
                   name_right_by_size=size_rates(size_table))
    if others:
        metrics["other_mappings"] = {name: average_precision(ground_truth, other_results[name], vocabulary, config)
                                     for name in others}
    return metrics, {"name_table": tally.table(), "name_size_table": size_table}


def size_rates(size_table: list[dict]) -> dict[str, dict[str, float]]:
    """{bucket: {split: generated-name rate}} for the metrics line (`name_right_by_size.small.base 72.0`)."""
    rates: dict[str, dict[str, float]] = {}
    for row in size_table:
        rates.setdefault(row["size"], {})[row["split"]] = row["right_rate"]
    return rates


def annotation_area(annotation: dict) -> float:
    """COCO's `area` (what COCOeval buckets by), or the box's w·h where a file leaves it out."""
    if "area" in annotation:
        return float(annotation["area"])
    return float(annotation["bbox"][2] * annotation["bbox"][3])


def average_precision(ground_truth, results: list[dict], vocabulary: ClassVocabulary, config: DetectionEvalConfig) -> dict:
    """AP50 all / base / novel (OV-COCO protocol) or LVIS AP of COCO-format results."""
    if config.protocol == "lvis":
        return evaluate_lvis(config.annotations, results)
    novel = vocabulary.is_novel.tolist()
    return evaluate_ov_coco(ground_truth, results, [c for c, n in zip(vocabulary.category_ids, novel) if not n],
                            [c for c, n in zip(vocabulary.category_ids, novel) if n])


def format_name_table(rows: list[dict]) -> str:
    """The per-category table as Markdown (with the joined beams' rate where it was tallied)."""
    joined = any("joined_right_rate" in row for row in rows)
    lines = ["| category | split | GT boxes found | generated name right | "
             + ("joined beams right | " if joined else "") + "most common names |",
             "| --- | --- | --- | --- | " + ("--- | " if joined else "") + "--- |"]
    for row in rows:
        cells = [row["category"], row["split"], str(row["found"]), percent_cell(row["right_rate"])]
        if joined:
            cells.append(percent_cell(row.get("joined_right_rate")))
        cells.append(", ".join(repr(n) for n in row["top_names"]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_size_table(rows: list[dict]) -> str:
    """`NameTally.size_table()` as Markdown."""
    lines = ["| object size (COCO) | split | GT boxes found | generated name right |", "| --- | --- | --- | --- |"]
    lines += [f"| {row['size']} | {row['split']} | {row['found']} | {percent_cell(row['right_rate'])} |"
              for row in rows]
    return "\n".join(lines)


def percent_cell(rate: float | None) -> str:
    return "n/a" if rate is None else f"{100 * rate:.1f}%"
