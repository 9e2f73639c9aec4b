"""Open-Det evaluation on a COCO-format set: AP50 via name mapping and how often the generated name is right."""
from __future__ import annotations

import dataclasses
from collections import Counter

import torch
from torchvision.ops import box_iou

from trainers.config import EvalConfig
from trainers.data.image_tensors import load_image_tensor
from trainers.evaluation.lvis import evaluate_lvis
from trainers.evaluation.ov_coco import evaluate_ov_coco, load_coco_ground_truth, to_coco_results
from trainers.opendet.config import OpenDetInferenceConfig
from trainers.opendet.inference import NameEncoder, NamedBoxes, cached, detect_named_boxes, name_detections
from trainers.opendet.model import OpenDetModel
from trainers.vocabulary import ClassVocabulary


class NameTally:
    """Per category: ground-truth boxes found by a query (IoU ≥ threshold), and how many of those queries' names
    map (top-1, same text encoder) to the right category; the most common generated names."""

    def __init__(self, vocabulary: ClassVocabulary, iou_threshold: float):
        self.vocabulary = vocabulary
        self.iou_threshold = iou_threshold
        self.found, self.right = Counter(), Counter()
        self.names: dict[int, Counter] = {c: Counter() for c in vocabulary.category_ids}

    def add(self, named: NamedBoxes, gt_boxes: torch.Tensor, gt_categories: list[int], top1: list[int | None]
            ) -> None:
        """gt_boxes: (G, 4) xyxy pixels; top1: per named box, the category id its name maps to (None: empty name)."""
        if not len(gt_boxes) or not named.names:
            return
        overlaps = box_iou(gt_boxes, named.boxes.detach().cpu().float())
        best_iou, best = overlaps.max(dim=1)
        for category, iou, row in zip(gt_categories, best_iou.tolist(), best.tolist()):
            if iou < self.iou_threshold:
                continue
            self.found[category] += 1
            self.right[category] += int(top1[row] == category)
            self.names[category][named.names[row]] += 1

    def table(self) -> list[dict]:
        rows = []
        for category, name, novel in zip(self.vocabulary.category_ids, self.vocabulary.names,
                                          self.vocabulary.is_novel.tolist()):
            found = self.found[category]
            rows.append({"category": name, "split": "novel" if novel else "base", "found": found,
                         "right": self.right[category], "right_rate": self.right[category] / found if found else None,
                         "top_names": [n for n, _ in self.names[category].most_common(3)]})
        return rows

    def rate(self, novel: bool) -> float | None:
        rows = [r for r in self.table() if (r["split"] == "novel") == novel]
        found = sum(r["found"] for r in rows)
        return sum(r["right"] for r in rows) / found if found else None


def evaluate_opendet(model: OpenDetModel, vocabulary: ClassVocabulary, config: EvalConfig,
                     inference: OpenDetInferenceConfig, name_encoder: NameEncoder, categories: torch.Tensor,
                     device: torch.device) -> tuple[dict, list[dict]]:
    """(metrics, per-category name table). Metrics: AP50 all / base / novel (or LVIS AP) through name mapping, and
    `name_right_base` / `name_right_novel`, the share of found GT boxes whose generated name maps to their class;
    `other_mappings`: {mapping: its AP metrics} for each of `inference.other_mappings`, from the same names.

    categories: (C, D) float, L2-normalised, `vocabulary`'s names embedded in `name_encoder`'s space."""
    ground_truth = load_coco_ground_truth(config.annotations)
    image_ids = sorted(ground_truth.getImgIds())[: config.max_images or None]
    encoder = cached(name_encoder)
    others = {name: dataclasses.replace(inference, mapping=name) for name in inference.other_mappings
              if name != inference.mapping}
    tally, results = NameTally(vocabulary, inference.right_name_iou), []
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
            top1 = [vocabulary.category_ids[i] if i >= 0 else None for i in detection["top1"].tolist()]
            tally.add(named, gt_boxes.reshape(-1, 4), [a["category_id"] for a in annotations], top1)
    metrics = average_precision(ground_truth, results, vocabulary, config)
    metrics.update(name_right_base=tally.rate(novel=False), name_right_novel=tally.rate(novel=True))
    if others:
        metrics["other_mappings"] = {name: average_precision(ground_truth, other_results[name], vocabulary, config)
                                     for name in others}
    return metrics, tally.table()


def average_precision(ground_truth, results: list[dict], vocabulary: ClassVocabulary, config: EvalConfig) -> dict:
    """AP50 all / base / novel (OV-COCO protocol) or LVIS AP of COCO-format results."""
    if config.protocol == "lvis":
        return evaluate_lvis(config.annotations, results)
    novel = vocabulary.is_novel.tolist()
    return evaluate_ov_coco(ground_truth, results, [c for c, n in zip(vocabulary.category_ids, novel) if not n],
                            [c for c, n in zip(vocabulary.category_ids, novel) if n])


def format_name_table(rows: list[dict]) -> str:
    """The per-category table as Markdown."""
    lines = ["| category | split | GT boxes found | generated name right | most common names |",
             "| --- | --- | --- | --- | --- |"]
    for row in rows:
        rate = "n/a" if row["right_rate"] is None else f"{100 * row['right_rate']:.1f}%"
        lines.append(f"| {row['category']} | {row['split']} | {row['found']} | {rate} | "
                     f"{', '.join(repr(n) for n in row['top_names'])} |")
    return "\n".join(lines)
