"""How good the pseudo boxes and their labels are, measured against ground truth that training never saw.

Precision is the share of pseudo boxes that cover *any* object (base or novel) at IoU >= 0.5, so it needs the full
ground truth of the training images: the annotations the store read (in the strict setting the job dropped their
novel boxes, or the file never had them) plus the novel boxes held out of training (ShapesOV writes them to
`train_novel_heldout.json`). Held-out boxes alone would count every pseudo box on a base object as "on nothing".

Each pseudo box is matched to the ground-truth box it overlaps most; it *covers* that object when their IoU is at least
0.5, and its label is *correct* when it names that object's class (featurestore.label_names.names_class). Boxes of
images that no ground-truth file lists are not judged. Crowd annotations are left out: a box on a crowd region is
neither an object nor nothing, as in COCO's evaluation.

Precision and accuracy are of the *labelled* pseudo boxes, the ones the trainers learn from; a box whose caption
named no object (a null label, weight 0) is counted apart ("no object"), with how many of those cover an object all
the same. How well the stored score tells boxes on objects from boxes on nothing is its ROC AUC over the labelled
boxes (the chance that a covering box scores above one on nothing, ties counting half): the trainers weight each
pseudo box by that score. Beside it, the AUC of the weight the trainers give every judged box, 0 for "no object".
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from featurestore.label_names import names_class
from featurestore.reader import StoreReader
from featurestore.stages import EXTRACT_FEATURES
from pipelines.boxes import pairwise_iou, xywh_to_xyxy
from pipelines.coco import read_coco
from pipelines.roc_auc import roc_auc

COVER_IOU = 0.5  # the bar: a pseudo box "is" an object when IoU >= 0.5 with its GT box
# ShapesOV writes the novel-class train boxes it withheld next to the training annotations (evaluation only).
HELD_OUT_FILE = "train_novel_heldout.json"


@dataclass(frozen=True)
class GroundTruth:
    """Every non-crowd GT box of the judged images, from one or more COCO files, with its class and split."""

    boxes: dict[int, np.ndarray]  # image_id → (G, 4) float64 xyxy
    classes: dict[int, list[str]]  # image_id → class name per box
    novel: dict[int, np.ndarray]  # image_id → (G,) bool, the box's class is novel
    image_ids: frozenset[int]  # images listed by at least one file: the ones whose pseudo boxes are judged
    sources: tuple[tuple[str, str], ...]  # (role, path) per file read: "base" (training annotations) / "held-out"

    @property
    def has_base(self) -> bool:
        return any(role == "base" for role, _ in self.sources)

    def best_match(self, image_id: int, boxes: np.ndarray) -> tuple[np.ndarray, list[str | None], np.ndarray]:
        """boxes: (N, 4) xyxy of one image → (N,) best IoU, the class of that best GT box (None without GT
        boxes) and (N,) bool whether that class is novel."""
        gt = self.boxes.get(image_id)
        if gt is None or not len(gt) or not len(boxes):
            return np.zeros(len(boxes)), [None] * len(boxes), np.zeros(len(boxes), dtype=bool)
        ious = pairwise_iou(boxes, gt)
        best = np.argmax(ious, axis=1)
        return ious[np.arange(len(boxes)), best], [self.classes[image_id][j] for j in best], self.novel[image_id][best]


def read_ground_truth(files: list[tuple[str, Path]], novel_ids: set[int]) -> GroundTruth:
    """GT boxes of COCO/LVIS `files`, given as (role, path); a class is novel when its id is in `novel_ids`.
    A box listed by two files (a held-out file that repeats the training file's novel boxes) counts once."""
    boxes: dict[int, list] = {}
    seen: set[tuple] = set()
    image_ids: set[int] = set()
    for _, path in files:
        dataset = read_coco(str(path))
        names = dataset.category_names()
        image_ids.update(dataset.image_ids())
        for image_id, image_annotations in dataset.annotations.items():
            for annotation in image_annotations:
                key = (image_id, annotation.category_id, annotation.bbox_xywh)
                if annotation.iscrowd or key in seen:
                    continue
                seen.add(key)
                boxes.setdefault(image_id, []).append((annotation.bbox_xywh, names[annotation.category_id],
                                                       annotation.category_id in novel_ids))
    return GroundTruth(
        boxes={i: xywh_to_xyxy(np.array([b for b, _, _ in rows])) for i, rows in boxes.items()},
        classes={i: [c for _, c, _ in rows] for i, rows in boxes.items()},
        novel={i: np.array([n for _, _, n in rows], dtype=bool) for i, rows in boxes.items()},
        image_ids=frozenset(image_ids), sources=tuple((role, str(path)) for role, path in files))


def add_ground_truth_arguments(parser) -> None:
    parser.add_argument("--heldout-gt", "--eval-gt", dest="heldout_gt", default=None,
                        help="COCO/LVIS JSON of the novel boxes held out of training, for pseudo-box precision and "
                             f"label accuracy (default: the ShapesOV file {HELD_OUT_FILE} beside the store's training "
                             "annotations, when present; --eval-gt is the old name)")
    parser.add_argument("--base-gt", default=None,
                        help="COCO/LVIS JSON of the training boxes (default: the annotations extract-features read, "
                             "as its manifest records them); with --heldout-gt the full ground truth")


def default_files(reader: StoreReader) -> tuple[Path | None, Path | None]:
    """(the training annotations extract-features read, the ShapesOV held-out file beside them), each None when
    the manifest does not name it or the file is not there."""
    extract = reader.manifest.stages.get(EXTRACT_FEATURES)
    annotations = extract.setting("dataset.annotations") if extract else None
    if not annotations:
        return None, None
    base = Path(annotations)
    held_out = base.parent / HELD_OUT_FILE
    return (base if base.is_file() else None), (held_out if held_out.is_file() else None)


def ground_truth_files(reader: StoreReader, base_gt: str | None, heldout_gt: str | None
                       ) -> list[tuple[str, Path]]:
    """The (role, path) files to judge against: the flags where given (a missing file is an error naming the flag),
    else the store's training annotations and the held-out file beside them. Empty when no held-out GT is found:
    without novel boxes there is nothing to measure that training did not already see."""
    default_base, default_held_out = default_files(reader)
    for path, flag in ((base_gt, "--base-gt"), (heldout_gt, "--heldout-gt")):
        if path is not None and not Path(path).is_file():
            raise FileNotFoundError(f"ground-truth file not found: {path} (flag {flag}"
                                    f"{', alias --eval-gt' if flag == '--heldout-gt' else ''})")
    held_out = Path(heldout_gt) if heldout_gt else default_held_out
    if held_out is None:
        return []
    base = Path(base_gt) if base_gt else default_base
    files = [("base", base)] if base is not None and base.resolve() != held_out.resolve() else []
    return files + [("held-out", held_out)]


def novel_class_ids(reader: StoreReader) -> set[int]:
    """Category ids the store's vocab calls novel."""
    vocab = reader.read_table("vocab", ["kind", "category_id", "split"]).to_pylist()
    return {row["category_id"] for row in vocab if row["kind"] == "class" and row["split"] == "novel"}


def pseudo_box_rows(reader: StoreReader, shard: int, min_proposal_score: float = 0.0
                    ) -> tuple[list[dict], np.ndarray]:
    """The pseudo boxes of one shard (pseudo_labels rows: image_id, region_id, label, score; label None where the
    caption named no object) and their (N, 4) xyxy boxes from the regions table. With min_proposal_score > 0 only
    the boxes whose proposal scored at least that, as Open-Det's `opendet.loss.pseudo_min_proposal_score` keeps
    them (a box without a proposal score is left out)."""
    regions = reader.read_shard("regions", shard, ["image_id", "region_id", "box", "proposal_score"]).to_pylist()
    region_of = {(r["image_id"], r["region_id"]): r for r in regions}
    rows = reader.read_shard("pseudo_labels", shard, ["image_id", "region_id", "label", "score"]).to_pylist()
    if min_proposal_score > 0:
        scores = [region_of[(row["image_id"], row["region_id"])]["proposal_score"] for row in rows]
        rows = [row for row, score in zip(rows, scores) if score is not None and score >= min_proposal_score]
    boxes = [region_of[(r["image_id"], r["region_id"])]["box"] for r in rows]
    return rows, np.array(boxes, dtype=np.float64).reshape(-1, 4)


@dataclass(frozen=True)
class Judgement:
    """One pseudo box against the GT of its image."""

    row: dict  # image_id, region_id, label (None: the caption named no object), score
    judged: bool  # its image is listed by a GT file
    iou: float  # with the GT box it overlaps most (0 without GT boxes)
    covers: str | None  # the class of that GT box when iou >= COVER_IOU, else None
    novel: bool  # that class is novel


def judge_pseudo_boxes(reader: StoreReader, truth: GroundTruth, iou: float = COVER_IOU,
                       min_proposal_score: float = 0.0) -> Iterator[Judgement]:
    """Every pseudo box of the store (those whose proposal scored min_proposal_score or more), shard by shard, with
    its best GT match."""
    for shard in reader.shards("pseudo_labels"):
        rows, boxes = pseudo_box_rows(reader, shard, min_proposal_score)
        by_image: dict[int, list[int]] = {}
        for i, row in enumerate(rows):
            by_image.setdefault(row["image_id"], []).append(i)
        for image_id, index in by_image.items():
            if image_id not in truth.image_ids:
                yield from (Judgement(rows[i], False, 0.0, None, False) for i in index)
                continue
            best_iou, classes, novel = truth.best_match(image_id, boxes[index])
            for i, value, name, is_novel in zip(index, best_iou, classes, novel):
                covered = bool(value >= iou)
                yield Judgement(rows[i], True, float(value), name if covered else None, bool(is_novel and covered))


class QualityTally:
    """Adds up judgements into precision, accuracy per class, the labels of boxes on nothing, the boxes whose caption
    named no object, and how well the score separates boxes on objects from boxes on nothing."""

    def __init__(self, truth: GroundTruth, iou: float = COVER_IOU):
        self.truth, self.iou = truth, iou
        self.total = self.judged = self.no_object = self.no_object_judged = 0  # judged: labelled boxes only
        self.covering: Counter = Counter()  # class → labelled boxes covering an object of it
        self.correct: Counter = Counter()  # class → of those, labelled with it
        self.no_object_covering: Counter = Counter()  # class → boxes covering an object of it that name no object
        self.novel: dict[str, bool] = {}
        self.judged_by_label: Counter = Counter()
        self.on_nothing: Counter = Counter()  # label → judged boxes covering nothing
        self.scores: dict[str, list[float]] = {"covering": [], "on_nothing": []}  # labelled boxes: the score
        self.weights: dict[str, list[float]] = {"covering": [], "on_nothing": []}  # judged boxes: 0 for no object

    def add(self, judgement: Judgement) -> None:
        self.total += 1
        label = judgement.row["label"]
        self.no_object += label is None
        if not judgement.judged:
            return
        side = "on_nothing" if judgement.covers is None else "covering"
        self.weights[side].append(judgement.row["score"] if label is not None else 0.0)
        if judgement.covers is not None:
            self.novel[judgement.covers] = judgement.novel
        if label is None:
            self.no_object_judged += 1
            if judgement.covers is not None:
                self.no_object_covering[judgement.covers] += 1
            return
        self.judged += 1
        self.judged_by_label[label] += 1
        self.scores[side].append(judgement.row["score"])
        if judgement.covers is None:
            self.on_nothing[label] += 1
            return
        self.covering[judgement.covers] += 1
        self.correct[judgement.covers] += names_class(label, judgement.covers)

    def result(self, top: int = 20) -> dict:
        """precision = covering / judged and accuracy = correct / covering, over labelled boxes. Without the base
        GT, precision, the boxes on nothing and the AUCs are None: the held-out file alone cannot tell a box on a base
        object from one on nothing."""
        covered, correct, full = sum(self.covering.values()), sum(self.correct.values()), self.truth.has_base
        nothing = self.judged - covered
        missed = sum(self.no_object_covering.values())
        classes = sorted(set(self.covering) | set(self.no_object_covering))
        return {
            "ground_truth": [{"role": role, "path": path} for role, path in self.truth.sources],
            "iou_threshold": self.iou, "pseudo_boxes": self.total, "judged_boxes": self.judged,
            "covering_boxes": covered, "precision": covered / self.judged if self.judged and full else None,
            "correct": correct, "accuracy": correct / covered if covered else None,
            "per_class": {n: {"split": "novel" if self.novel[n] else "base", "covering": self.covering[n],
                              "correct": self.correct[n],
                              "accuracy": self.correct[n] / self.covering[n] if self.covering[n] else None,
                              "no_object": self.no_object_covering[n]} for n in classes},
            "no_object": self.no_object,
            "no_object_judged": self.no_object_judged,
            "no_object_covering": missed,
            "mean_score_covering": float(np.mean(self.scores["covering"])) if covered else None,
            "mean_score_on_nothing": float(np.mean(self.scores["on_nothing"])) if nothing and full else None,
            "score_auc": roc_auc(self.scores["covering"], self.scores["on_nothing"]) if full else None,
            "weight_auc": roc_auc(self.weights["covering"], self.weights["on_nothing"]) if full else None,
            "boxes_on_nothing": nothing if full else None,
            "labels_on_nothing": [{"label": label, "boxes": count, "of_label": self.judged_by_label[label],
                                   "share_of_label": count / self.judged_by_label[label]}
                                  for label, count in self.on_nothing.most_common(top)] if full else None,
        }


def pseudo_box_quality(reader: StoreReader, truth: GroundTruth, top: int = 20, iou: float = COVER_IOU,
                       min_proposal_score: float = 0.0) -> dict:
    """QualityTally over every pseudo box of the store (min_proposal_score: see pseudo_box_rows)."""
    tally = QualityTally(truth, iou)
    for judgement in judge_pseudo_boxes(reader, truth, iou, min_proposal_score):
        tally.add(judgement)
    return {**tally.result(top), "min_proposal_score": min_proposal_score}
