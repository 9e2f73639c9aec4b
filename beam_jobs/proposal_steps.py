"""The DoFns of the proposals job: decode each image once, then assemble and commit each shard's proposals."""
from __future__ import annotations

import logging
import time

import apache_beam as beam
import numpy as np
import pyarrow as pa

from beam_jobs.extract_steps import OUTCOMES, ImageOutcome, read_image
from featurestore.failures import Failure, failure_columns, failures_by_kind
from featurestore.stages import PROPOSALS
from featurestore.writer import ShardWriter
from pipelines.sharding import ImageShardTask
from vlm.images import DEFAULT_MAX_IMAGE_PIXELS


class DecodeImages(beam.DoFn):
    """ImageShardTask → ((shard, image_id), (H, W, 3) uint8 pixels) per usable image, plus one (shard, ImageOutcome)
    per image on the `outcomes` output (its sha256, or why it cannot be used: extract_steps.read_image)."""

    def __init__(self, image_root: str, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS):
        self._image_root = image_root
        self._max_pixels = max_pixels

    def process(self, task: ImageShardTask):
        for image in task.images:
            pixels, outcome = read_image(self._image_root, image, self._max_pixels)
            if pixels is not None:
                yield (task.shard, image.image_id), pixels
            yield beam.pvalue.TaggedOutput(OUTCOMES, (task.shard, outcome))


def key_proposals_by_shard(keyed_result):
    """((shard, image_id), PredictionResult) → (shard, (image_id, (K, 5) float32 proposals, model seconds))."""
    (shard, image_id), result = keyed_result
    proposals, seconds = result.inference
    return shard, (image_id, proposals, seconds)


def proposal_shard_tables(task: ImageShardTask, outcomes: list[ImageOutcome], found: list[tuple]) -> tuple[dict, dict]:
    """outcomes: one per image of the task; found: (image_id, (K, 5) float32 best first, model seconds) per decoded
    image → ({"proposals", "failures"} columns, stats). Rows follow image id, then rank."""
    by_image = {outcome.image_id: outcome for outcome in outcomes}
    proposals = {image_id: array for image_id, array, _ in found}
    rows = {"image_id": [], "rank": [], "box": [], "score": []}
    failures = []
    for image in task.images:
        outcome = by_image[image.image_id]
        if outcome.failure_kind:
            failures.append(Failure(PROPOSALS, outcome.failure_kind, outcome.failure_message,
                                    image_id=image.image_id, file_name=image.file_name))
            continue
        array = proposals[image.image_id]
        rows["image_id"] += [image.image_id] * len(array)
        rows["rank"] += list(range(len(array)))
        rows["box"].append(array[:, :4])
        rows["score"].append(array[:, 4])
    boxes = np.concatenate(rows["box"]).astype(np.float32) if rows["box"] else np.zeros((0, 4), np.float32)
    rows["box"] = pa.FixedSizeListArray.from_arrays(pa.array(boxes.reshape(-1), type=pa.float32()), 4)
    rows["score"] = np.concatenate(rows["score"]).astype(np.float32) if rows["score"] else np.zeros(0, np.float32)
    seconds = {"decode": sum(o.decode_seconds for o in outcomes), "model": sum(s for *_, s in found)}
    busy = sum(seconds.values())
    stats = {"shard": task.shard, "fingerprint": task.fingerprint,
             "image_ids": [image.image_id for image in task.images],  # the input shard, for readers of the stage
             "input_images": len(task.images), "images": len(found), "proposals": len(rows["image_id"]),
             "failures": len(failures), "failures_by_kind": failures_by_kind(failures),
             "seconds": {step: round(value, 4) for step, value in seconds.items()},
             "images_per_second": round(len(found) / busy, 2) if busy > 0 else 0.0}
    return {"proposals": rows, "failures": failure_columns(failures)}, stats


class CommitProposalShard(beam.DoFn):
    """(shard, {"task": [ImageShardTask], "outcomes": [ImageOutcome], "proposals": [(image_id, (K, 5), s)]})
    → the shard's stats dict, after its proposals and failures tables and stats are committed atomically."""

    def __init__(self, store: str, total_shards: int):
        self._store = store
        self._total_shards = total_shards

    def setup(self):
        self._writer = ShardWriter(self._store, PROPOSALS, None)
        self._commits = 0

    def process(self, element):
        shard, grouped = element
        (task,) = grouped["task"]
        started = time.perf_counter()
        tables, stats = proposal_shard_tables(task, list(grouped["outcomes"]), list(grouped["proposals"]))
        stats["seconds"]["write"] = round(time.perf_counter() - started, 4)  # row assembly; file writes follow
        self._writer.commit(shard, tables, task.fingerprint, stats=stats)
        self._commits += 1
        logging.info("committed proposals shard %05d (%d of %d): %d images, %d proposals, %d failures, "
                     "%.1f images/s, commit %.2fs", shard, self._commits, self._total_shards, stats["images"],
                     stats["proposals"], stats["failures"], stats["images_per_second"],
                     time.perf_counter() - started)
        yield stats
