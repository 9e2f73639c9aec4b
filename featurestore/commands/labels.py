"""`labels STORE`: the pseudo-label vocabulary — counts, merged near-duplicates, base-class synonyms, and
pseudo-label accuracy on novel classes where their ground truth exists (evaluation only)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from featurestore.commands.render import add_store_argument, emit, text_table
from featurestore.commands.label_report import (NovelGroundTruth, base_synonyms, label_counts, merge_near_duplicates,
                                       pseudo_label_accuracy, vocab_rows)
from featurestore.reader import StoreReader
from featurestore.stages import EXTRACT_FEATURES

# ShapesOV writes the novel-class train boxes it withheld next to the training annotations (evaluation only).
HELD_OUT_FILE = "train_novel_heldout.json"


def add_arguments(parser) -> None:
    add_store_argument(parser)
    parser.add_argument("--eval-gt", default=None,
                        help="COCO/LVIS JSON with novel-class boxes for accuracy (default: the ShapesOV held-out "
                             f"file {HELD_OUT_FILE} next to the store's annotations, when present)")
    parser.add_argument("--top", type=int, default=20, help="labels listed (default 20)")
    parser.add_argument("--merge-threshold", type=float, default=0.9,
                        help="text-embedding cosine at which two labels are near-duplicates (default 0.9)")
    parser.add_argument("--synonym-threshold", type=float, default=0.9,
                        help="cosine to a base class at which a label counts as its synonym (default 0.9)")


def default_ground_truth(reader: StoreReader) -> Path | None:
    extract = reader.manifest.stages.get(EXTRACT_FEATURES)
    annotations = extract.setting("dataset.annotations") if extract else None
    candidate = Path(annotations).parent / HELD_OUT_FILE if annotations else None
    return candidate if candidate is not None and candidate.is_file() else None


def read_novel_truth(path: Path, novel_ids: set[int]) -> NovelGroundTruth:
    """Novel boxes of a COCO file: classes the store's vocab calls novel, or every class when it names none."""
    from pipelines.boxes import xywh_to_xyxy
    from pipelines.coco import read_coco

    dataset = read_coco(str(path))
    names = dataset.category_names()
    keep = novel_ids or set(names)
    boxes, classes = {}, {}
    for image_id, annotations in dataset.annotations.items():
        chosen = [a for a in annotations if a.category_id in keep and not a.iscrowd]
        if chosen:
            boxes[image_id] = xywh_to_xyxy(np.array([a.bbox_xywh for a in chosen], dtype=np.float64))
            classes[image_id] = [names[a.category_id] for a in chosen]
    return NovelGroundTruth(boxes, classes, str(path))


def build_report(reader: StoreReader, args) -> dict:
    counts = label_counts(reader)
    label_rows, label_embeddings = vocab_rows(reader, "label")
    names = [row["name"] for row in label_rows]
    class_rows, class_embeddings = vocab_rows(reader, "class")
    base = [i for i, row in enumerate(class_rows) if row["split"] == "base"]
    synonyms = base_synonyms(names, label_embeddings, [class_rows[i]["name"] for i in base], class_embeddings[base],
                             args.synonym_threshold)
    report = {"pseudo_boxes": sum(counts.values()), "unique_labels": len(counts),
              "top_labels": [{"label": n, "boxes": c} for n, c in counts.most_common(args.top)],
              "near_duplicate_groups": merge_near_duplicates(names, label_embeddings, counts, args.merge_threshold),
              "base_synonym_labels": len(synonyms), "base_synonym_boxes": sum(counts[n] for n in synonyms),
              "base_synonyms": dict(sorted(synonyms.items()))}
    ground_truth = Path(args.eval_gt) if args.eval_gt else default_ground_truth(reader)
    if ground_truth is not None:
        if not ground_truth.is_file():
            raise FileNotFoundError(f"ground-truth file not found: {ground_truth} (flag --eval-gt)")
        novel_ids = {row["category_id"] for row in class_rows if row["split"] == "novel"}
        report["novel_accuracy"] = pseudo_label_accuracy(reader, read_novel_truth(ground_truth, novel_ids))
    return report


def print_report(report: dict) -> None:
    print(f"{report['pseudo_boxes']} labelled pseudo boxes, {report['unique_labels']} unique labels")
    print(text_table(["label", "boxes"], [[r["label"], r["boxes"]] for r in report["top_labels"]]))
    groups = report["near_duplicate_groups"]
    print(f"\n{len(groups)} near-duplicate groups" + (":" if groups else ""))
    for group in groups:
        print(f"  {group['label']} ({group['boxes']} boxes): {', '.join(group['members'])}")
    print(f"\n{report['base_synonym_labels']} labels ({report['base_synonym_boxes']} boxes) name or are synonyms of "
          f"base classes")
    accuracy = report.get("novel_accuracy")
    if accuracy:
        value = "n/a" if accuracy["accuracy"] is None else f"{accuracy['accuracy']:.1%}"
        print(f"\npseudo-label accuracy on novel classes: {value} ({accuracy['correct']} of "
              f"{accuracy['matched_boxes']} pseudo boxes with IoU >= {accuracy['iou_threshold']} to a novel GT box; "
              f"{accuracy['ground_truth']})")
        print(text_table(["class", "matched", "correct", "accuracy"],
                         [[n, c["matched"], c["correct"], f"{c['accuracy']:.1%}"]
                          for n, c in accuracy["per_class"].items()]))


def run(args) -> int:
    reader = StoreReader(args.store)
    if not reader.shards("pseudo_labels"):
        raise KeyError(f"{args.store} has no committed pseudo_labels shard; run make pseudo-labels first")
    report = build_report(reader, args)
    if args.json:
        emit(report)
    else:
        print_report(report)
    return 0
