"""Driver-side input reading for extract-features: annotations → OV split → proposals and names → region plans.

Planning needs no pixels, so it runs once before the pipeline: it is cheap (NMS stops at top-K), it lets
each shard's fingerprint cover exactly the boxes that will be embedded, and raw proposal lists (often
hundreds per image) never travel through the pipeline.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from pipelines.boxes import xywh_to_xyxy
from pipelines.coco import CocoDataset, OpenFn, UnknownImageRows, open_local, read_coco
from pipelines.extract_config import DatasetSection, ExtractFeaturesConfig
from pipelines.object_names import AnnotationNames, name_annotations, read_object_names
from pipelines.ov_split import OvSplit, keep_annotations, load_split
from pipelines.proposals import STORE_PROPOSALS, ProposalSet, proposal_set, read_proposals
from pipelines.regions import BadBox, RegionPlan, plan_regions


@dataclass
class PlannedDataset:
    dataset: CocoDataset  # after the OV split (novel annotations gone in the strict setting)
    split: OvSplit
    plans: list[RegionPlan]  # one per image, sorted by image id
    orphans: list[UnknownImageRows]  # annotations and proposals naming image ids the file does not list
    names_unmatched: int = 0  # names-file lines naming no kept annotation (novel, or unknown to the annotations)

    def object_names(self) -> list[str]:
        """Every distinct name alternative of the planned GT regions, sorted: the vocab rows of kind "name"."""
        return sorted({name for plan in self.plans for region in plan.regions for name in region.names or ()})


def plan_dataset(config: ExtractFeaturesConfig, open_fn: OpenFn = open_local,
                 stored_proposals: Mapping[int, np.ndarray] | None = None) -> PlannedDataset:
    """stored_proposals: with dataset.proposals = "store", the store's proposals stage (image_id → (N, 5) float32
    x0, y0, x1, y1, score), which the caller reads (this layer reads no store)."""
    section = config.dataset
    dataset = read_coco(section.annotations, open_fn, key="dataset.annotations")
    split = load_split(section.split, dataset, open_fn)
    # Strict setting: novel boxes are dropped here, before proposals or regions ever see them.
    dataset = keep_annotations(dataset, split, section.strict)
    proposals = _proposals(section, dataset, open_fn, stored_proposals)
    names = _annotation_names(section, dataset, open_fn)
    images = sorted(dataset.images, key=lambda image: image.image_id)
    if section.max_images:
        images = images[:section.max_images]
    empty = np.zeros((0, 5), dtype=np.float32)
    plans = [_with_unknown_categories(plan_regions(image, dataset.annotations.get(image.image_id, ()),
                                                   proposals.for_image(image.image_id) if section.proposals else empty,
                                                   split.base_ids, config.regions, names.by_annotation), dataset)
             for image in images]
    orphans = dataset.dangling_annotations() + list(proposals.unknown)
    return PlannedDataset(dataset, split, plans, orphans, names.unmatched_lines)


def _proposals(section: DatasetSection, dataset: CocoDataset, open_fn: OpenFn,
               stored: Mapping[int, np.ndarray] | None) -> ProposalSet:
    if section.proposals != STORE_PROPOSALS:
        return read_proposals(section.proposals, dataset, open_fn) if section.proposals else ProposalSet()
    if stored is None:
        raise ValueError("dataset.proposals is 'store': the caller passes the store's proposals as stored_proposals")
    return proposal_set(stored, dataset, "the store's proposals stage")


def _annotation_names(section: DatasetSection, dataset: CocoDataset, open_fn: OpenFn) -> AnnotationNames:
    """Names of the kept annotations (the names file read after the OV split, so novel boxes get none)."""
    if not section.object_name_mode:
        return AnnotationNames({})
    entries = read_object_names(section.names, open_fn) if section.names else None
    return name_annotations(dataset, entries, section.names or "", by_category=section.object_names)


def _with_unknown_categories(plan: RegionPlan, dataset: CocoDataset) -> RegionPlan:
    """Annotations naming a category the file does not define become dead letters of their image."""
    rejected = dataset.unknown_category.get(plan.image.image_id, ())
    if not rejected:
        return plan
    bad = tuple(BadBox("gt", a.annotation_id, "unknown_category", tuple(xywh_to_xyxy(np.asarray(a.bbox_xywh))[0]))
                for a in rejected)
    return dataclasses.replace(plan, bad_boxes=plan.bad_boxes + bad)
