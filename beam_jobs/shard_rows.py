"""Assemble one shard's table columns and stats from its plan, the per-image outcomes and the embeddings."""
from __future__ import annotations

from collections import Counter

import numpy as np

from pipelines.regions import RegionPlan
from pipelines.sharding import ShardTask

STAGE = "extract_features"
WHOLE_IMAGE_KEY = -1  # region key of the whole-image crop when it is not also a stored region


class FailureRows:
    """Columns of the `failures` table, appended row by row."""

    def __init__(self):
        self.columns: dict[str, list] = {k: [] for k in ("image_id", "region_id", "file_name", "stage", "kind",
                                                          "message")}

    def add(self, image_id: int | None, file_name: str | None, kind: str, message: str,
            region_id: int | None = None) -> None:
        for key, value in (("image_id", image_id), ("region_id", region_id), ("file_name", file_name),
                           ("stage", STAGE), ("kind", kind), ("message", message)):
            self.columns[key].append(value)

    def kinds(self) -> Counter:
        return Counter(self.columns["kind"])


def _bad_box_failures(plan: RegionPlan, failures: FailureRows) -> None:
    image = plan.image
    for bad in plan.bad_boxes:
        what = "annotation" if bad.source == "gt" else "proposal row"
        reason = ("its category id is not among the file's categories" if bad.kind == "unknown_category"
                  else f"box {list(bad.box)} does not fit an image of {image.width}x{image.height}")
        failures.add(image.image_id, image.file_name, bad.kind,
                     f"{what} {bad.index} of image {image.image_id}: {reason} ({bad.kind}); skipped")


def _new_columns(names: tuple[str, ...]) -> dict[str, list]:
    return {name: [] for name in names}


def shard_tables(task: ShardTask, outcomes: list, embeddings: list, dim: int, crop_mode: str
                 ) -> tuple[dict, dict]:
    """→ ({"images", "regions", "failures"} columns with (N, D) embedding arrays, stats dict)."""
    by_image = {outcome.image_id: outcome for outcome in outcomes}
    vectors = {(image_id, region_id): vector for image_id, region_id, vector, _ in embeddings}
    images = _new_columns(("image_id", "file_name", "width", "height", "sha256"))
    regions = _new_columns(("image_id", "region_id", "box", "source", "category_id", "proposal_score",
                            "max_iou_base", "crop_mode", "crop_box", "names"))
    image_vectors, region_vectors = [], []
    failures = FailureRows()
    for orphan in task.orphans:
        failures.add(orphan.image_id, None, "unknown_image_id",
                     f"{orphan.count} proposals name image id {orphan.image_id}, which the annotation file does "
                     f"not list; they were not used")
    for plan in task.plans:
        image = plan.image
        outcome = by_image[image.image_id]
        _bad_box_failures(plan, failures)
        if outcome.failure_kind:
            failures.add(image.image_id, image.file_name, outcome.failure_kind, outcome.failure_message)
            continue
        if not plan.regions:  # decoded fine (its images row stays) but nothing to store in regions
            failures.add(image.image_id, image.file_name, "no_region",
                         f"image {image.image_id} ({image.file_name}) has no usable region: no base GT box, no "
                         f"proposal left after filtering, and regions.include_image is off")
        whole = next((r.region_id for r in plan.regions if r.source == "image"), WHOLE_IMAGE_KEY)
        for key, value in (("image_id", image.image_id), ("file_name", image.file_name), ("width", image.width),
                           ("height", image.height), ("sha256", outcome.sha256)):
            images[key].append(value)
        image_vectors.append(vectors[(image.image_id, whole)])
        for region, window in zip(plan.regions, outcome.windows):
            for key, value in (("image_id", image.image_id), ("region_id", region.region_id), ("box", region.box),
                               ("source", region.source), ("category_id", region.category_id),
                               ("proposal_score", region.proposal_score), ("max_iou_base", region.max_iou_base),
                               ("crop_mode", "tight" if region.source == "image" else crop_mode),
                               ("crop_box", window), ("names", list(region.names) if region.names else None)):
                regions[key].append(value)
            region_vectors.append(vectors[(image.image_id, region.region_id)])
    images["embedding"] = np.asarray(image_vectors, dtype=np.float16).reshape(-1, dim)
    regions["embedding"] = np.asarray(region_vectors, dtype=np.float16).reshape(-1, dim)
    stats = _stats(task, outcomes, embeddings, images, regions, failures)
    return {"images": images, "regions": regions, "failures": failures.columns}, stats


def _stats(task: ShardTask, outcomes: list, embeddings: list, images: dict, regions: dict,
           failures: FailureRows) -> dict:
    skipped: Counter = Counter()
    for plan in task.plans:
        skipped.update(plan.skipped)
    seconds = {"decode": sum(o.decode_seconds for o in outcomes), "crop": sum(o.crop_seconds for o in outcomes),
               "model": sum(s for *_, s in embeddings)}
    busy = sum(seconds.values())
    return {
        "shard": task.shard, "fingerprint": task.fingerprint,
        "input_images": len(task.plans), "images": len(images["image_id"]), "regions": len(regions["image_id"]),
        "regions_by_source": dict(sorted(Counter(regions["source"]).items())),
        "crops": len(embeddings), "failures": len(failures.columns["kind"]),
        "failures_by_kind": dict(sorted(failures.kinds().items())), "skipped": dict(sorted(skipped.items())),
        "seconds": {k: round(v, 4) for k, v in seconds.items()},
        "crops_per_second": round(len(embeddings) / busy, 2) if busy > 0 else 0.0,
    }
