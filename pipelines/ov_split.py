"""Open-vocabulary splits: which categories are base (boxes used) and which are novel (never boxed).

Three sources: the OV-COCO split built in, OV-LVIS by frequency (rare = novel), or a JSON file
`{"base": [names], "novel": [names]}`. The strict setting drops novel annotations when they are read,
so they cannot reach any table.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from pipelines.coco import AnnotationError, CocoDataset, OpenFn, open_local, read_json

# OV-COCO (Bansal et al. 2018, used by OVR-CNN, ViLD, HD-OVD): 48 base and 17 novel of COCO's 80 classes;
# the other 15 classes take part in neither training nor evaluation.
OV_COCO_BASE = (
    "person", "bicycle", "car", "motorcycle", "train", "truck", "boat", "bench", "bird", "horse", "sheep", "bear",
    "zebra", "giraffe", "backpack", "handbag", "suitcase", "frisbee", "skis", "kite", "surfboard", "bottle", "fork",
    "spoon", "bowl", "banana", "apple", "sandwich", "orange", "broccoli", "carrot", "pizza", "donut", "chair", "bed",
    "toilet", "tv", "laptop", "mouse", "remote", "microwave", "oven", "toaster", "refrigerator", "book", "clock",
    "vase", "toothbrush",
)
OV_COCO_NOVEL = (
    "airplane", "bus", "cat", "dog", "cow", "elephant", "umbrella", "tie", "snowboard", "skateboard", "cup", "knife",
    "cake", "couch", "keyboard", "sink", "scissors",
)
BUILT_IN = ("ov-coco", "lvis-frequency")


@dataclass(frozen=True)
class OvSplit:
    """Category ids of each side; categories in neither are unused (dropped like OV-COCO's 15)."""

    base_ids: frozenset[int]
    novel_ids: frozenset[int]
    source: str

    def split_of(self, category_id: int) -> str | None:
        if category_id in self.base_ids:
            return "base"
        if category_id in self.novel_ids:
            return "novel"
        return None


def _ids_by_name(dataset: CocoDataset, names: list[str], where: str) -> frozenset[int]:
    by_name = {c.name: c.category_id for c in dataset.categories}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise AnnotationError(f"{where}: class names {missing} are not categories of {dataset.source}")
    return frozenset(by_name[n] for n in names)


def ov_coco_split(dataset: CocoDataset) -> OvSplit:
    return OvSplit(_ids_by_name(dataset, list(OV_COCO_BASE), "ov-coco split"),
                   _ids_by_name(dataset, list(OV_COCO_NOVEL), "ov-coco split"), "ov-coco")


def lvis_frequency_split(dataset: CocoDataset) -> OvSplit:
    """OV-LVIS (ViLD): rare categories are novel, common and frequent ones base."""
    if any(c.frequency is None for c in dataset.categories):
        raise AnnotationError(f"split 'lvis-frequency' needs a 'frequency' on every category of {dataset.source}")
    base = frozenset(c.category_id for c in dataset.categories if c.frequency in ("c", "f"))
    novel = frozenset(c.category_id for c in dataset.categories if c.frequency == "r")
    return OvSplit(base, novel, "lvis-frequency")


def split_from_file(path: str, dataset: CocoDataset, open_fn: OpenFn = open_local) -> OvSplit:
    data = read_json(path, open_fn, "split file", key="dataset.split")
    if not isinstance(data, dict) or not isinstance(data.get("base"), list) or not isinstance(data.get("novel"), list):
        raise AnnotationError(f"split file {path} must hold {{\"base\": [names], \"novel\": [names]}}")
    base = _ids_by_name(dataset, data["base"], f"split file {path}")
    novel = _ids_by_name(dataset, data["novel"], f"split file {path}")
    if base & novel:
        raise AnnotationError(f"split file {path}: classes {sorted(base & novel)} are both base and novel")
    return OvSplit(base, novel, path)


def load_split(spec: str, dataset: CocoDataset, open_fn: OpenFn = open_local) -> OvSplit:
    """`ov-coco`, `lvis-frequency`, or the path of a split file (config key dataset.split)."""
    if spec == "ov-coco":
        return ov_coco_split(dataset)
    if spec == "lvis-frequency":
        return lvis_frequency_split(dataset)
    return split_from_file(spec, dataset, open_fn)


def keep_annotations(dataset: CocoDataset, split: OvSplit, strict: bool) -> CocoDataset:
    """Only base annotations (strict) or base and novel ones; unused categories are always dropped."""
    wanted = split.base_ids if strict else split.base_ids | split.novel_ids
    kept = {}
    for image_id, image_annotations in dataset.annotations.items():
        survivors = tuple(a for a in image_annotations if a.category_id in wanted)
        if survivors:
            kept[image_id] = survivors
    return dataclasses.replace(dataset, annotations=kept)
