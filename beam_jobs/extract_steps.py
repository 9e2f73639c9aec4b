"""The DoFns of extract-features: decode and crop each image once, then commit each shard."""
from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from beam_jobs.shard_rows import WHOLE_IMAGE_KEY, crop_rows, shard_tables
from featurestore.stages import EXTRACT_FEATURES
from featurestore.writer import ShardWriter
from pipelines.coco import ImageRecord
from pipelines.crops import cut
from pipelines.extract_config import CropSection
from pipelines.regions import RegionPlan
from pipelines.sharding import ShardTask
from vlm.clip_preprocess import CropPreprocess, resize_crop
from vlm.images import (DEFAULT_MAX_IMAGE_PIXELS, ImageReadError, PathEscapeError, SizeCheck, load_image,
                        resolve_image_path, size_mismatch)

OUTCOMES = "outcomes"


def open_with_beam(path: str):
    """Any path Beam's FileSystems can read (local, gs://, s3://, ...), as raw bytes."""
    return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)


@dataclass(frozen=True)
class ImageOutcome:
    """What decoding and cropping one image produced (everything but the embeddings)."""

    image_id: int
    sha256: str | None = None
    windows: tuple[tuple[int, int, int, int], ...] = ()  # crop window per planned region, xyxy integer pixels
    failure_kind: str | None = None
    failure_message: str | None = None
    decode_seconds: float = 0.0
    crop_seconds: float = 0.0


def unreadable(image_id: int, error: ImageReadError | PathEscapeError) -> ImageOutcome:
    """The outcome of an image whose file cannot be read or decoded (missing, bad_path, too_large, truncated,
    path_escape, ...)."""
    kind = error.kind if isinstance(error, ImageReadError) else "path_escape"
    return ImageOutcome(image_id, None, (), kind, str(error))


def read_image(image_root: str, image: ImageRecord, max_pixels: int) -> tuple[np.ndarray | None, ImageOutcome]:
    """Read and decode one image once, its header's size checked against the annotation's and the pixel limit first
    (vlm.images.SizeCheck: a bomb is refused before it is decoded) → ((H, W, 3) uint8 RGB pixels, or None when the
    image cannot be used; its outcome: sha256 and decode seconds, or the failure)."""
    started = time.perf_counter()
    check = SizeCheck((image.width, image.height), max_pixels, image.file_name)
    try:
        decoded = load_image(resolve_image_path(image_root, image.file_name), open_with_beam, check)
    except (ImageReadError, PathEscapeError) as error:
        return None, unreadable(image.image_id, error)
    seconds = time.perf_counter() - started
    if (decoded.width, decoded.height) != (image.width, image.height):
        error = size_mismatch(image.file_name, (decoded.width, decoded.height), (image.width, image.height))
        return None, ImageOutcome(image.image_id, decoded.sha256, (), error.kind, str(error), seconds)
    return decoded.pixels, ImageOutcome(image.image_id, decoded.sha256, decode_seconds=seconds)


def crop_windows(plan: RegionPlan, crop: CropSection) -> list[tuple[int, tuple[int, ...]]]:
    """(region key, crop window xyxy) of every planned region in plan order, then the whole image under
    WHOLE_IMAGE_KEY when no planned region is the whole image (the `images` table embeds it either way)."""
    image = plan.image
    # The whole image is always cut as itself: widening it is impossible and shrinking it is not asked.
    keyed = [(region.region_id, crop.window(region.box, region.source, image.width, image.height))
             for region in plan.regions]
    if not any(region.source == "image" for region in plan.regions):
        keyed.append((WHOLE_IMAGE_KEY, (0, 0, image.width, image.height)))
    return keyed


def planned_windows(keyed_windows: list[tuple[int, tuple[int, ...]]]) -> tuple[tuple[int, ...], ...]:
    """The windows of the planned regions (ImageOutcome.windows), without the extra whole-image crop."""
    return tuple(window for key, window in keyed_windows if key != WHOLE_IMAGE_KEY)


class DecodeAndCrop(beam.DoFn):
    """ShardTask → ((shard, image_id, region_id), (3, S, S) uint8 crop) for every planned region and the whole
    image, plus one (shard, ImageOutcome) per image on the `outcomes` output.

    Each image is read and decoded once; all its crops are views of that one array, resized to the model's
    input size here so only compact uint8 tensors travel to the model. Its header's size is checked against the
    annotation's and the pixel limit first (vlm.images.SizeCheck): a bomb is refused before it is decoded.
    """

    def __init__(self, image_root: str, crop: CropSection, preprocess: CropPreprocess,
                 max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS):
        self._image_root = image_root
        self._crop = crop
        self._preprocess = preprocess
        self._max_pixels = max_pixels

    def process(self, task: ShardTask):
        for plan in task.plans:
            pixels, outcome = read_image(self._image_root, plan.image, self._max_pixels)
            if pixels is None:
                yield beam.pvalue.TaggedOutput(OUTCOMES, (task.shard, outcome))
                continue
            keyed_windows = crop_windows(plan, self._crop)
            # Timed around the cuts only: a fused runner runs downstream steps (RunInference) inside each yield,
            # and timing across yields counted model time as crop time (bench/extract.py: crop 74 s, model 81 s).
            crop_seconds = 0.0
            for key, window in keyed_windows:
                cut_started = time.perf_counter()
                crop = resize_crop(cut(pixels, window), self._preprocess)
                crop_seconds += time.perf_counter() - cut_started
                yield (task.shard, plan.image.image_id, key), crop
            yield beam.pvalue.TaggedOutput(OUTCOMES, (task.shard, dataclasses.replace(
                outcome, windows=planned_windows(keyed_windows), crop_seconds=crop_seconds)))


def key_embedding_by_shard(keyed_result):
    """((shard, image_id, region_id), PredictionResult) → (shard, (image_id, region_id, (D,) float16, raw norm,
    seconds, the worker's dtype record))."""
    (shard, image_id, region_id), result = keyed_result
    embedding, norm, seconds, model_dtype = result.inference
    return shard, (image_id, region_id, embedding, norm, seconds, model_dtype)


class CommitShard(beam.DoFn):
    """(shard, {"task": [ShardTask], "outcomes": [ImageOutcome],
                "embeddings": [(image_id, region_id, emb, norm, s)] or [ImageEmbeddings]})
    → the shard's stats dict, after its tables, WebDataset tar and stats are committed atomically."""

    def __init__(self, store: str, dim: int, crop: CropSection, total_shards: int):
        self._store = store
        self._dim = dim
        self._crop = crop
        self._total_shards = total_shards

    def setup(self):
        self._writer = ShardWriter(self._store, EXTRACT_FEATURES, self._dim)
        self._commits = 0

    def process(self, element):
        shard, grouped = element
        (task,) = grouped["task"]
        started = time.perf_counter()
        tables, stats = shard_tables(task, list(grouped["outcomes"]), crop_rows(grouped["embeddings"]), self._dim,
                                     self._crop)
        stats["seconds"]["write"] = round(time.perf_counter() - started, 4)  # row assembly; file writes follow
        self._writer.commit(shard, tables, task.fingerprint, stats=stats)
        self._commits += 1
        logging.info("committed shard %05d (%d of %d): %d images, %d regions, %d failures, %.1f crops/s, "
                     "commit %.2fs", shard, self._commits, self._total_shards, stats["images"], stats["regions"],
                     stats["failures"], stats["crops_per_second"], time.perf_counter() - started)
        yield stats
