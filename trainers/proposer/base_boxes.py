"""The proposal network's training data: the base boxes of one COCO / LVIS annotation file, checked against the OV
split so that no novel box can reach training.

A file with an annotation of a novel category is refused (OV-COCO's "strict" setting, HD-OVD: "no novel class
information or annotations are leaked"); its `categories` list may name novel classes, as COCO files of one
dataset share one category list. Left out, and counted: crowd regions, boxes empty after clipping to their image,
annotations of categories in neither side of the split or unknown to the file, annotations of unknown images,
and images without a base box (mmdet's CocoDataset filter_empty_gt, as OLN trains).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from pipelines.coco import AnnotationError, CocoDataset, ImageRecord, read_coco
from pipelines.ov_split import OvSplit, load_split


class NovelAnnotationError(AnnotationError):
    """An annotation file meant for training the proposal network holds boxes of novel categories."""


@dataclass(frozen=True)
class BaseBoxImage:
    record: ImageRecord
    boxes: np.ndarray  # (G, 4) float32 xyxy in image pixels, inside the image, positive width and height


@dataclass(frozen=True)
class BaseBoxes:
    images: tuple[BaseBoxImage, ...]  # in the annotation file's order
    source: str
    left_out: dict[str, int] = field(default_factory=dict)  # reason → count (annotations, or images)

    def summary(self) -> str:
        boxes = sum(len(image.boxes) for image in self.images)
        dropped = ", ".join(f"{count} {reason}" for reason, count in sorted(self.left_out.items()) if count)
        return f"{len(self.images)} images, {boxes} base boxes from {self.source}" + (f"; left out: {dropped}"
                                                                                    if dropped else "")


def _refuse_novel(dataset: CocoDataset, split: OvSplit, config_key: str) -> None:
    novel = Counter(a.category_id for annotations in dataset.annotations.values() for a in annotations
                    if a.category_id in split.novel_ids)
    if novel:
        names = dataset.category_names()
        listed = ", ".join(f"{names[c]!r} (id {c}): {n}" for c, n in sorted(novel.items()))
        raise NovelAnnotationError(
            f"{dataset.source} ({config_key}) has {sum(novel.values())} boxes of novel categories of the split "
            f"{split.source}: {listed}. The proposal network trains on base boxes only; give the base-class file")


def _image_boxes(annotations, width: int, height: int, left_out: Counter) -> np.ndarray:
    boxes = []
    for annotation in annotations:
        if annotation.iscrowd:
            left_out["crowd annotations"] += 1
            continue
        x, y, w, h = annotation.bbox_xywh
        box = np.clip([x, y, x + w, y + h], 0, [width, height, width, height])
        if box[2] <= box[0] or box[3] <= box[1]:
            left_out["empty boxes"] += 1
            continue
        boxes.append(box)
    return np.asarray(boxes, dtype=np.float32).reshape(-1, 4)


def read_base_boxes(annotations: str, split_spec: str, config_key: str = "proposer.data.annotations") -> BaseBoxes:
    """The base boxes of `annotations` per image, under the split `split_spec` (pipelines.ov_split.load_split)."""
    dataset = read_coco(annotations)
    split = load_split(split_spec, dataset)
    _refuse_novel(dataset, split, config_key)
    left_out: Counter = Counter()
    left_out["annotations of unknown categories"] = sum(len(a) for a in dataset.unknown_category.values())
    left_out["annotations of unknown images"] = sum(len(a) for a in dataset.unknown_image.values())
    images = []
    for record in dataset.images:
        annotations_of_image = dataset.annotations.get(record.image_id, ())
        base = [a for a in annotations_of_image if a.category_id in split.base_ids]
        left_out["annotations of categories in neither side of the split"] += len(annotations_of_image) - len(base)
        boxes = _image_boxes(base, record.width, record.height, left_out)
        if len(boxes) == 0:
            left_out["images without a base box"] += 1
            continue
        images.append(BaseBoxImage(record, boxes))
    if not images:
        raise AnnotationError(f"{annotations} ({config_key}) has no image with a base box to train on")
    return BaseBoxes(tuple(images), annotations, dict(left_out))
