"""Deterministic input shards and the fingerprints of each stage's shards.

Images are sorted by image id and cut into runs of `shard_size` (`cut_by_image_id`, the one cut every stage over
images makes): shard k of every table holds exactly the images of input shard k. A shard's fingerprint covers
everything its rows depend on, so a rerun recomputes exactly the shards that changed:
- proposals (`proposal_shard_fingerprint`): the images (id, file name, size), the stage's content config, the
  proposal network's checkpoint sha256 and the schema version;
- extract-features (`extract_shard_fingerprint`): the images, their planned regions (which already reflect
  annotations, proposals and thresholds), the stage's content config, the CLIP weights and the schema version;
- pseudo-labels (`pseudo_label_shard_fingerprint`): the extract-features fingerprint of the regions shard it
  reads and the digest of its regions file, its own content config, the CLIP and captioner weights and the
  schema version.
"""
from __future__ import annotations

import bisect
import hashlib
import json
from dataclasses import dataclass
from typing import Callable, Sequence, TypeVar

from pipelines.coco import ImageRecord, UnknownImageRows
from pipelines.regions import RegionPlan
from schemas.tables import SCHEMA_VERSION

Item = TypeVar("Item")


@dataclass(frozen=True)
class ShardTask:
    """One unit of work: the region plans of a shard's images (sorted by id) and its fingerprint."""

    shard: int
    fingerprint: str
    plans: tuple[RegionPlan, ...]
    orphans: tuple[UnknownImageRows, ...] = ()  # inputs naming unknown image ids, filed with this shard

    @property
    def image_ids(self) -> list[int]:
        return [plan.image.image_id for plan in self.plans]


@dataclass(frozen=True)
class ImageShardTask:
    """One unit of work of a stage that reads only the images (proposals): a shard's images, sorted by id."""

    shard: int
    fingerprint: str
    images: tuple[ImageRecord, ...]


def cut_by_image_id(items: Sequence[Item], shard_size: int, image_id: Callable[[Item], int]) -> list[list[Item]]:
    """`items` (one per image) sorted by image id and cut into runs of `shard_size`: the input shards."""
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size} (config key shard_size)")
    ordered = sorted(items, key=image_id)
    return [ordered[i:i + shard_size] for i in range(0, len(ordered), shard_size)]


def cut_shards(plans: list[RegionPlan], shard_size: int) -> list[list[RegionPlan]]:
    return cut_by_image_id(plans, shard_size, lambda plan: plan.image.image_id)


def _plan_record(plan: RegionPlan) -> list:
    image = plan.image
    regions = [[r.region_id, [round(v, 4) for v in r.box], r.source, r.category_id, r.proposal_score,
                round(r.max_iou_base, 6), list(r.names) if r.names is not None else None] for r in plan.regions]
    bad = [[b.source, b.index, b.kind] for b in plan.bad_boxes]
    return [image.image_id, image.file_name, image.width, image.height, regions, bad]


def _orphan_record(orphan: UnknownImageRows) -> list:
    # Proposal orphans keep the form fingerprints always had, so stores written before annotations could be orphans
    # are not recomputed.
    if orphan.source == "proposals":
        return [orphan.image_id, orphan.count]
    return [orphan.image_id, orphan.count, orphan.source, list(orphan.ids)]


def extract_shard_fingerprint(plans: list[RegionPlan], orphans: list[UnknownImageRows], content_hash: str,
                              model_sha256: str, schema_version: int = SCHEMA_VERSION) -> str:
    """sha256 over the shard's inputs, the content config hash, the weights hash and the schema version."""
    payload = {"images": [_plan_record(p) for p in plans], "orphans": [_orphan_record(o) for o in orphans],
               "config": content_hash, "model": model_sha256, "schema_version": schema_version}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def build_shard_tasks(plans: list[RegionPlan], orphans: list[UnknownImageRows], shard_size: int,
                      content_hash: str, model_sha256: str) -> list[ShardTask]:
    """Every shard of the dataset; an orphan (an input naming an unknown image id) goes to the shard whose id
    range it would sort into."""
    shards = cut_shards(plans, shard_size)
    first_ids = [shard[0].image.image_id for shard in shards]
    orphans_by_shard: dict[int, list[UnknownImageRows]] = {}
    for orphan in orphans:
        index = max(bisect.bisect_right(first_ids, orphan.image_id) - 1, 0)
        orphans_by_shard.setdefault(index, []).append(orphan)
    tasks = []
    for index, shard in enumerate(shards):
        shard_orphans = orphans_by_shard.get(index, [])
        tasks.append(ShardTask(index, extract_shard_fingerprint(shard, shard_orphans, content_hash, model_sha256),
                               tuple(shard), tuple(shard_orphans)))
    return tasks


def pseudo_label_shard_fingerprint(regions_fingerprint: str, regions_sha256: str, content_hash: str,
                                   clip_sha256: str, captioner_sha256: str,
                                   schema_version: int = SCHEMA_VERSION) -> str:
    """sha256 over the regions shard's own fingerprint and the sha256 of its committed regions file, the content
    config hash, both models' weights hashes and the schema version.

    The file's digest is there because an extract-features shard can be recomputed with the same fingerprint:
    `--retry-failed` rereads images the user fixed, whose bytes no plan covers; its new regions must reach the
    pseudo labels too."""
    payload = {"regions": regions_fingerprint, "regions_file": regions_sha256, "config": content_hash,
               "clip": clip_sha256, "captioner": captioner_sha256, "schema_version": schema_version}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def proposal_shard_fingerprint(images: Sequence[ImageRecord], content_hash: str, checkpoint_sha256: str,
                               schema_version: int = SCHEMA_VERSION) -> str:
    """sha256 over the shard's images (id, file name, size), the content config hash, the proposal network's
    checkpoint sha256 and the schema version."""
    payload = {"images": [[i.image_id, i.file_name, i.width, i.height] for i in images], "config": content_hash,
               "proposer": checkpoint_sha256, "schema_version": schema_version}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def build_image_shard_tasks(images: Sequence[ImageRecord], shard_size: int, content_hash: str,
                            checkpoint_sha256: str) -> list[ImageShardTask]:
    """Every shard of the images, cut as extract-features cuts its region plans (the same images give the same
    shards)."""
    return [ImageShardTask(index, proposal_shard_fingerprint(shard, content_hash, checkpoint_sha256), tuple(shard))
            for index, shard in enumerate(cut_by_image_id(images, shard_size, lambda image: image.image_id))]
