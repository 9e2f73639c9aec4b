"""The DoFns of extract-features' device path (runtime.crop_on: device): one element per image, not per crop.

ReadImages reads each file's bytes on the host and plans its crop windows; RunInference with DeviceClipHandler
decodes, cuts, resizes and encodes on the device; ToShardRows turns each image's result into the same ImageOutcome
the host path makes and one ImageEmbeddings element. CommitShard (extract_steps) is shared by both paths.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import apache_beam as beam
import numpy as np

from beam_jobs.extract_steps import (OUTCOMES, ImageOutcome, crop_windows, open_with_beam, planned_windows,
                                    unreadable)
from beam_jobs.shard_rows import ImageEmbeddings
from pipelines.extract_config import CropSection
from pipelines.sharding import ShardTask
from vlm.device_decode import EncodedImage
from vlm.images import (DEFAULT_MAX_IMAGE_PIXELS, ImageReadError, PathEscapeError, SizeCheck, read_bytes,
                        resolve_image_path)
from vlm.region_encoder import RegionRequest


@dataclass(frozen=True)
class ImageKey:
    """What travels beside a RegionRequest through RunInference: where its rows go and what the host learnt."""

    shard: int
    image_id: int
    sha256: str
    region_keys: tuple[int, ...]  # per window of the request: region id, or WHOLE_IMAGE_KEY
    windows: tuple[tuple[int, int, int, int], ...]  # ImageOutcome.windows: those of the planned regions
    read_seconds: float


class ReadImages(beam.DoFn):
    """ShardTask → (ImageKey, RegionRequest) per image whose file can be read, and (shard, ImageOutcome) on the
    `outcomes` output for each that cannot (missing, unreadable, bad_path, path_escape: the host path's kinds and
    messages). Each request carries the size check its header must pass before the device decodes it."""

    def __init__(self, image_root: str, crop: CropSection, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS):
        self._image_root = image_root
        self._crop = crop
        self._max_pixels = max_pixels

    def process(self, task: ShardTask):
        for plan in task.plans:
            image = plan.image
            started = time.perf_counter()
            try:
                path = resolve_image_path(self._image_root, image.file_name)
                data = read_bytes(path, open_with_beam)
            except (ImageReadError, PathEscapeError) as error:
                yield beam.pvalue.TaggedOutput(OUTCOMES, (task.shard, unreadable(image.image_id, error)))
                continue
            keyed = crop_windows(plan, self._crop)
            digest = hashlib.sha256(data).hexdigest()
            key = ImageKey(task.shard, image.image_id, digest, tuple(k for k, _ in keyed), planned_windows(keyed),
                           time.perf_counter() - started)
            check = SizeCheck((image.width, image.height), self._max_pixels, image.file_name)
            yield key, RegionRequest(EncodedImage(data, path, check), image.file_name, (image.width, image.height),
                                     np.asarray([window for _, window in keyed], dtype=np.int64).reshape(-1, 4))


class ToShardRows(beam.DoFn):
    """(ImageKey, PredictionResult(RegionRequest, RegionResult)) → (shard, ImageOutcome) on `outcomes`, and
    (shard, ImageEmbeddings) when the image was decoded (truncated, not_an_image, size_mismatch... otherwise)."""

    def process(self, element):
        key, prediction = element
        result = prediction.inference
        decode_seconds = key.read_seconds + result.decode_seconds
        if result.error is not None:
            yield beam.pvalue.TaggedOutput(OUTCOMES, (key.shard, ImageOutcome(
                key.image_id, key.sha256, (), result.error.kind, str(result.error), decode_seconds)))
            return
        yield beam.pvalue.TaggedOutput(OUTCOMES, (key.shard, ImageOutcome(
            key.image_id, key.sha256, key.windows, None, None, decode_seconds, result.crop_seconds)))
        yield key.shard, ImageEmbeddings(key.image_id, key.region_keys, result.embeddings, result.norms,
                                         result.model_seconds, result.model_dtype)
