"""Class-agnostic proposals per image, from COCO-results JSON, an mmdet-style pickle or a store's proposals stage.

COCO-results JSON: `[{"image_id", "bbox": [x, y, w, h], "score"}, ...]` in any order.
mmdet-style pickle (what HD-OVD reads): a list with one (N, 4|5) array per image, in the order of the
annotation file's `images` list; column 5, when present, is the score.
A store's proposals stage is read by featurestore.proposals (this layer reads no store); `proposal_set` files its
arrays like a file's.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from pipelines.boxes import xywh_to_xyxy
from pipelines.coco import AnnotationError, CocoDataset, OpenFn, UnknownImageRows, open_local, read_json
from pipelines.safe_pickle import load_data_pickle

# The `dataset.proposals` value of extract-features that reads the proposals stage of its own store, not a file.
STORE_PROPOSALS = "store"


@dataclass
class ProposalSet:
    """image_id → (N, 5) float32 rows x0, y0, x1, y1, score (pixels), as given (not yet validated)."""

    by_image: dict[int, np.ndarray] = field(default_factory=dict)
    unknown: list[UnknownImageRows] = field(default_factory=list)  # proposals naming unknown image ids
    source: str = ""

    def for_image(self, image_id: int) -> np.ndarray:
        return self.by_image.get(image_id, np.zeros((0, 5), dtype=np.float32))


def proposal_set(by_image: Mapping[int, np.ndarray], dataset: CocoDataset, source: str) -> ProposalSet:
    """image_id → (N, 5) float32 x0, y0, x1, y1, score (xyxy pixels) as a ProposalSet of `dataset`: the ids it
    does not list become `unknown` rows, as a file's do."""
    known = set(dataset.image_ids())
    result = ProposalSet(source=source)
    for image_id, array in by_image.items():
        if image_id in known:
            result.by_image[image_id] = np.asarray(array, dtype=np.float32).reshape(-1, 5)
        else:
            result.unknown.append(UnknownImageRows(image_id, len(array), "proposals"))
    result.unknown.sort(key=lambda u: u.image_id)
    return result


def _from_results_json(rows: object, dataset: CocoDataset, path: str) -> ProposalSet:
    if not isinstance(rows, list):
        raise AnnotationError(f"proposals {path}: expected a COCO-results list of {{image_id, bbox, score}}")
    grouped: dict[int, list[list[float]]] = {}
    for position, row in enumerate(rows):
        try:
            image_id = int(row["image_id"])
            x, y, w, h = (float(v) for v in row["bbox"])
            score = float(row.get("score", 1.0))
        except (KeyError, TypeError, ValueError) as error:
            raise AnnotationError(f"proposals {path}: entry {position} is malformed ({error})") from error
        grouped.setdefault(image_id, []).append([x, y, w, h, score])
    xyxy = {}
    for image_id, values in grouped.items():
        array = np.asarray(values, dtype=np.float64)
        xyxy[image_id] = np.concatenate([xywh_to_xyxy(array[:, :4]), array[:, 4:]], 1).astype(np.float32)
    return proposal_set(xyxy, dataset, path)


def _as_proposal_array(item: object, position: int, image_id: int, path: str) -> np.ndarray:
    array = np.asarray(item)
    if array.size == 0:
        return np.zeros((0, 5), dtype=np.float32)
    if array.ndim != 2 or array.shape[1] not in (4, 5) or not np.issubdtype(array.dtype, np.number):
        raise AnnotationError(f"proposals {path}: entry {position} (image id {image_id}) must be an (N, 4) or "
                              f"(N, 5) numeric array, got shape {array.shape} dtype {array.dtype}")
    if array.shape[1] == 4:  # no scores: keep the given order by giving decreasing pseudo-scores
        array = np.concatenate([array, np.linspace(1, 0, len(array), endpoint=False)[:, None]], axis=1)
    return array.astype(np.float32)


def _from_pickle_list(items: object, dataset: CocoDataset, path: str) -> ProposalSet:
    if not isinstance(items, (list, tuple)):
        raise AnnotationError(f"proposals {path}: expected a list with one array per image, got {type(items)}")
    if len(items) != len(dataset.images):
        raise AnnotationError(f"proposals {path} has {len(items)} entries but {dataset.source} has "
                              f"{len(dataset.images)} images; the pickle must list every image in dataset order")
    result = ProposalSet(source=path)
    for position, (image, item) in enumerate(zip(dataset.images, items)):
        result.by_image[image.image_id] = _as_proposal_array(item, position, image.image_id, path)
    return result


def read_proposals(path: str, dataset: CocoDataset, open_fn: OpenFn = open_local) -> ProposalSet:
    """Proposals for the images of `dataset` (config key dataset.proposals); `.pkl`/`.pickle` → pickle list."""
    if path.endswith((".pkl", ".pickle")):
        try:
            with open_fn(path) as handle:
                data = handle.read()
        except FileNotFoundError as error:
            raise FileNotFoundError(f"proposals file not found: {path} (config key dataset.proposals)") from error
        return _from_pickle_list(load_data_pickle(data, path), dataset, path)
    return _from_results_json(read_json(path, open_fn, "proposals file", key="dataset.proposals"), dataset, path)
