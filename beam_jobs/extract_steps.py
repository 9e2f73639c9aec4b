"""The DoFns of extract-features: decode and crop each image once, then commit each shard."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from beam_jobs.shard_rows import WHOLE_IMAGE_KEY, shard_tables
from featurestore.stages import EXTRACT_FEATURES
from featurestore.writer import ShardWriter
from pipelines.crops import crop_window, cut
from pipelines.sharding import ShardTask
from vlm.clip_preprocess import CropPreprocess, resize_crop
from vlm.images import ImageReadError, PathEscapeError, load_image, resolve_image_path

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


class DecodeAndCrop(beam.DoFn):
    """ShardTask → ((shard, image_id, region_id), (3, S, S) uint8 crop) for every planned region and the whole
    image, plus one (shard, ImageOutcome) per image on the `outcomes` output.

    Each image is read and decoded once; all its crops are views of that one array, resized to the model's
    input size here so only compact uint8 tensors travel to the model.
    """

    def __init__(self, image_root: str, crop_mode: str, context_scale: float, preprocess: CropPreprocess):
        self._image_root = image_root
        self._crop_mode = crop_mode
        self._context_scale = context_scale
        self._preprocess = preprocess

    def process(self, task: ShardTask):
        for plan in task.plans:
            image = plan.image
            started = time.perf_counter()
            try:
                decoded = load_image(resolve_image_path(self._image_root, image.file_name), open_with_beam)
            except (ImageReadError, PathEscapeError) as error:
                kind = error.kind if isinstance(error, ImageReadError) else "path_escape"
                yield beam.pvalue.TaggedOutput(OUTCOMES, (task.shard, ImageOutcome(image.image_id, None, (), kind,
                                                                                  str(error))))
                continue
            decoded_at = time.perf_counter()
            if (decoded.width, decoded.height) != (image.width, image.height):
                message = (f"{image.file_name} decodes to {decoded.width}x{decoded.height} but the annotations say "
                           f"{image.width}x{image.height}; its boxes would not fit the pixels")
                yield beam.pvalue.TaggedOutput(OUTCOMES, (task.shard, ImageOutcome(
                    image.image_id, decoded.sha256, (), "size_mismatch", message, decoded_at - started)))
                continue
            windows = []
            # Timed around the cuts only: a fused runner runs downstream steps (RunInference) inside each yield,
            # and timing across yields counted model time as crop time (bench/extract.py: crop 74 s, model 81 s).
            crop_seconds = 0.0
            for region in plan.regions:
                # The whole image is always cut as itself: widening it is impossible and shrinking it is not asked.
                mode = "tight" if region.source == "image" else self._crop_mode
                cut_started = time.perf_counter()
                window = crop_window(region.box, mode, image.width, image.height, self._context_scale)
                windows.append(window)
                crop = resize_crop(cut(decoded.pixels, window), self._preprocess)
                crop_seconds += time.perf_counter() - cut_started
                yield (task.shard, image.image_id, region.region_id), crop
            if not any(region.source == "image" for region in plan.regions):
                cut_started = time.perf_counter()
                crop = resize_crop(cut(decoded.pixels, (0, 0, image.width, image.height)), self._preprocess)
                crop_seconds += time.perf_counter() - cut_started
                yield (task.shard, image.image_id, WHOLE_IMAGE_KEY), crop
            yield beam.pvalue.TaggedOutput(OUTCOMES, (task.shard, ImageOutcome(
                image.image_id, decoded.sha256, tuple(windows), None, None, decoded_at - started, crop_seconds)))


def key_embedding_by_shard(keyed_result):
    """((shard, image_id, region_id), PredictionResult) → (shard, (image_id, region_id, (D,) float16, raw norm,
    seconds))."""
    (shard, image_id, region_id), result = keyed_result
    embedding, norm, seconds = result.inference
    return shard, (image_id, region_id, embedding, norm, seconds)


class CommitShard(beam.DoFn):
    """(shard, {"task": [ShardTask], "outcomes": [ImageOutcome],
                "embeddings": [(image_id, region_id, emb, norm, s)]})
    → the shard's stats dict, after its tables, WebDataset tar and stats are committed atomically."""

    def __init__(self, store: str, dim: int, crop_mode: str, total_shards: int):
        self._store = store
        self._dim = dim
        self._crop_mode = crop_mode
        self._total_shards = total_shards

    def setup(self):
        self._writer = ShardWriter(self._store, EXTRACT_FEATURES, self._dim)
        self._commits = 0

    def process(self, element):
        shard, grouped = element
        (task,) = grouped["task"]
        started = time.perf_counter()
        tables, stats = shard_tables(task, list(grouped["outcomes"]), list(grouped["embeddings"]), self._dim,
                                     self._crop_mode)
        stats["seconds"]["write"] = round(time.perf_counter() - started, 4)  # row assembly; file writes follow
        self._writer.commit(shard, tables, task.fingerprint, stats=stats)
        self._commits += 1
        logging.info("committed shard %05d (%d of %d): %d images, %d regions, %d failures, %.1f crops/s, "
                     "commit %.2fs", shard, self._commits, self._total_shards, stats["images"], stats["regions"],
                     stats["failures"], stats["crops_per_second"], time.perf_counter() - started)
        yield stats
