"""Assemble one extract-features shard's tables and stats from its plan, the per-image outcomes and the embeddings."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from featurestore.failures import Failure, failure_columns, failures_by_kind
from featurestore.regions import Regions
from featurestore.stages import EXTRACT_FEATURES
from pipelines.coco import UnknownImageRows
from pipelines.crops import is_whole_image
from pipelines.extract_config import CropSection
from pipelines.regions import PlannedRegion, RegionPlan
from pipelines.sharding import ShardTask

WHOLE_IMAGE_KEY = -1  # region key of the whole-image crop when it is not also a stored region


@dataclass(frozen=True)
class ImageEmbeddings:
    """Every crop of one image as one element (extract-features' device path sends images, not crops, to the
    shard's commit); `crop_rows` expands it into the per-crop rows `shard_tables` reads."""

    image_id: int
    region_keys: tuple[int, ...]  # per crop: its region id, or WHOLE_IMAGE_KEY
    embeddings: np.ndarray  # (R, D) float16, unit length
    norms: np.ndarray  # (R,) float32 raw encode_image lengths
    model_seconds: float  # the image's share of model time
    model_dtype: dict | None = None  # the worker's vlm.dtype_probe.DtypeChoice record


def crop_rows(items) -> list[tuple]:
    """The shard's grouped embeddings (per-crop rows of the host path, or ImageEmbeddings of the device path) as
    (image_id, region_id, (D,) float16, raw norm, model seconds, the worker's dtype record or None) per crop."""
    rows = []
    for item in items:
        if isinstance(item, ImageEmbeddings):
            each = item.model_seconds / max(len(item.region_keys), 1)
            rows += [(item.image_id, key, vector, float(norm), each, item.model_dtype)
                     for key, vector, norm in zip(item.region_keys, item.embeddings, item.norms)]
        else:
            rows.append(item)
    return rows


def _failure(image_id: int | None, file_name: str | None, kind: str, message: str) -> Failure:
    return Failure(EXTRACT_FEATURES, kind, message, image_id=image_id, file_name=file_name)


def _orphan_failure(orphan: UnknownImageRows) -> Failure:
    """Annotations or proposals naming an image id the annotation file does not list: one row per id and input."""
    if orphan.source == "annotations":
        listed = ", ".join(str(i) for i in orphan.ids[:10]) + (", ..." if len(orphan.ids) > 10 else "")
        what = f"{orphan.count} annotation(s) (id {listed})"
    else:
        what = f"{orphan.count} proposals"
    return _failure(orphan.image_id, None, "unknown_image_id", f"{what} name image id {orphan.image_id}, which the "
                    f"annotation file does not list; they were not used")


def _bad_box_failures(plan: RegionPlan) -> list[Failure]:
    image = plan.image
    failures = []
    for bad in plan.bad_boxes:
        what = "annotation" if bad.source == "gt" else "proposal row"
        reason = ("its category id is not among the file's categories" if bad.kind == "unknown_category"
                  else f"box {list(bad.box)} does not fit an image of {image.width}x{image.height}")
        failures.append(_failure(image.image_id, image.file_name, bad.kind,
                                 f"{what} {bad.index} of image {image.image_id}: {reason} ({bad.kind}); skipped"))
    return failures


def _stored_regions(kept: list[tuple[int, PlannedRegion, tuple]], vectors: list[tuple[np.ndarray, float]], dim: int,
                    crop_mode: str) -> Regions:
    """kept: (image id, planned region, crop window) per stored region; vectors: its ((D,) float16 unit embedding,
    raw norm)."""
    return Regions(
        image_id=np.asarray([image_id for image_id, _, _ in kept], dtype=np.int64),
        region_id=np.asarray([region.region_id for _, region, _ in kept], dtype=np.int32),
        box=np.asarray([region.box for _, region, _ in kept], dtype=np.float32).reshape(-1, 4),
        source=np.asarray([region.source for _, region, _ in kept], dtype=str),
        category_id=[region.category_id for _, region, _ in kept],
        proposal_score=[region.proposal_score for _, region, _ in kept],
        max_iou_base=[region.max_iou_base for _, region, _ in kept],
        # The whole image is always cut as itself (see DecodeAndCrop), whatever the configured mode.
        crop_mode=np.asarray(["tight" if region.source == "image" else crop_mode for _, region, _ in kept],
                             dtype=str),
        crop_box=np.asarray([window for _, _, window in kept], dtype=np.float32).reshape(-1, 4),
        names=[list(region.names) if region.names else None for _, region, _ in kept],
        embedding=np.asarray([vector for vector, _ in vectors], dtype=np.float16).reshape(-1, dim),
        embedding_norm=np.asarray([norm for _, norm in vectors], dtype=np.float32))


def shard_tables(task: ShardTask, outcomes: list, embeddings: list, dim: int, crop: CropSection
                 ) -> tuple[dict, dict]:
    """embeddings: crop_rows' rows → ({"images", "regions", "failures"} tables or columns with (N, D) embedding
    arrays, stats dict)."""
    by_image = {outcome.image_id: outcome for outcome in outcomes}
    vectors = {(image_id, region_id): (vector, norm) for image_id, region_id, vector, norm, *_ in embeddings}
    images = {name: [] for name in ("image_id", "file_name", "width", "height", "sha256")}
    image_vectors, kept, region_vectors = [], [], []
    failures = [_orphan_failure(orphan) for orphan in task.orphans]
    for plan in task.plans:
        image = plan.image
        outcome = by_image[image.image_id]
        failures += _bad_box_failures(plan)
        if outcome.failure_kind:
            failures.append(_failure(image.image_id, image.file_name, outcome.failure_kind, outcome.failure_message))
            continue
        if not plan.regions:  # decoded fine (its images row stays) but nothing to store in regions
            failures.append(_failure(image.image_id, image.file_name, "no_region",
                                     f"image {image.image_id} ({image.file_name}) has no usable region: no base GT "
                                     f"box, no proposal left after filtering, and regions.include_image is off"))
        whole = next((r.region_id for r in plan.regions if r.source == "image"), WHOLE_IMAGE_KEY)
        for key, value in (("image_id", image.image_id), ("file_name", image.file_name), ("width", image.width),
                           ("height", image.height), ("sha256", outcome.sha256)):
            images[key].append(value)
        image_vectors.append(vectors[(image.image_id, whole)])
        for region, window in zip(plan.regions, outcome.windows):
            kept.append((image.image_id, region, window))
            region_vectors.append(vectors[(image.image_id, region.region_id)])
    images["embedding"] = np.asarray([vector for vector, _ in image_vectors], dtype=np.float16).reshape(-1, dim)
    images["embedding_norm"] = np.asarray([norm for _, norm in image_vectors], dtype=np.float32)
    regions = _stored_regions(kept, region_vectors, dim, crop.mode)
    stats = _stats(task, outcomes, embeddings, len(images["image_id"]), regions, failures)
    stats.update(crop_window_counts(kept, {plan.image.image_id: plan.image for plan in task.plans}, crop))
    return {"images": images, "regions": regions.to_arrow(dim), "failures": failure_columns(failures)}, stats


def crop_window_counts(kept: list[tuple[int, PlannedRegion, tuple]], images: dict, crop: CropSection) -> dict:
    """Per region source (gt, proposal), the crops whose window is the whole image and those cut at its border: a
    crop that is the whole image gives the region the image's own embedding, whatever the box holds."""
    whole: Counter = Counter()
    clipped: Counter = Counter()
    for image_id, region, window in kept:
        if region.source == "image":
            continue
        image = images[image_id]
        whole[region.source] += is_whole_image(window, image.width, image.height)
        clipped[region.source] += crop.clipped(region.box, region.source, image.width, image.height)
    return {"whole_image_crops_by_source": dict(sorted(whole.items())),
            "clipped_crops_by_source": dict(sorted(clipped.items()))}


def _stats(task: ShardTask, outcomes: list, embeddings: list, image_count: int, regions: Regions,
           failures: list[Failure]) -> dict:
    skipped: Counter = Counter()
    for plan in task.plans:
        skipped.update(plan.skipped)
    seconds = {"decode": sum(o.decode_seconds for o in outcomes), "crop": sum(o.crop_seconds for o in outcomes),
               "model": sum(row[4] for row in embeddings)}
    busy = sum(seconds.values())
    model_dtype = next((row[5] for row in embeddings if row[5] is not None), None)
    return {
        "shard": task.shard, "fingerprint": task.fingerprint,
        "input_images": len(task.plans), "images": image_count, "regions": len(regions),
        "regions_by_source": dict(sorted(Counter(regions.source.tolist()).items())),
        "crops": len(embeddings), "failures": len(failures),
        "failures_by_kind": failures_by_kind(failures), "skipped": dict(sorted(skipped.items())),
        "seconds": {k: round(v, 4) for k, v in seconds.items()},
        "crops_per_second": round(len(embeddings) / busy, 2) if busy > 0 else 0.0,
        **({"model_dtype": model_dtype} if model_dtype is not None else {}),
    }
