"""The DoFns of pseudo-labels: read each shard's pseudo boxes, pick labels from captions, commit each shard."""
from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass
from typing import Callable

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from featurestore.arrow import embeddings_to_numpy
from featurestore.failures import Failure, failure_columns, failures_by_kind
from featurestore.reader import StoreReader
from featurestore.regions import Regions
from featurestore.stages import PSEUDO_LABELS
from featurestore.writer import ShardWriter
from pipelines.captioners import CaptionFailure, ImageRegions
from pipelines.cosine_moments import mean_and_std, merge_moments
from pipelines.nouns import NounExtractor
from pipelines.pseudo_label_pick import TextEmbeddingCache, match_scores, pick_labels
from pipelines.pseudo_labels_config import NounsSection
from vlm.progress import Progress
from vlm.text_encoder import StoreTextEncoder

LOG = logging.getLogger(PSEUDO_LABELS)
FAILURES = "failures"
SECONDS = "seconds"


@dataclass(frozen=True)
class LabelShardTask:
    shard: int
    fingerprint: str


@dataclass(frozen=True)
class LabelledRegion:
    """A pseudo box's caption and its pick; label, cos and text_embedding are None when the caption names no object
    (no candidate is left: "a patch of striped background"), an outcome kept as a row of weight 0."""

    image_id: int
    region_id: int
    caption: str
    candidates: tuple[str, ...]
    label: str | None
    cos: float | None
    text_embedding: np.ndarray | None  # (D,) float32, L2-normalised

    @property
    def names_object(self) -> bool:
        return self.label is not None


def region_failure(image_id: int, region_id: int, file_name: str | None, kind: str, message: str) -> Failure:
    """A pseudo box that got no label."""
    return Failure(PSEUDO_LABELS, kind, message, image_id=image_id, region_id=region_id, file_name=file_name)


def usable_embeddings(column, norms, dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Embedding and embedding_norm columns (nulls allowed) → ((N, D) float32 and (N,) float32 with zeros where
    unusable, (N,) bool usable).

    Unusable = null, non-finite (a float16 overflow upstream) or all zeros, or a norm that is not a finite positive
    number: no caption or cosine can come of it.
    """
    array = column.combine_chunks()
    valid = array.is_valid().to_numpy(zero_copy_only=False)
    values = np.zeros((len(array), dim), dtype=np.float32)
    values[valid] = embeddings_to_numpy(array.filter(valid), dim).astype(np.float32)
    lengths = np.asarray(norms.combine_chunks().fill_null(0.0).to_numpy(zero_copy_only=False), dtype=np.float32)
    usable = (valid & np.isfinite(values).all(axis=1) & (np.abs(values).sum(axis=1) > 0)
              & np.isfinite(lengths) & (lengths > 0))
    values[~usable] = 0.0
    lengths = np.where(usable, lengths, 0.0).astype(np.float32)
    return values, lengths, usable


class ReadPseudoBoxes(beam.DoFn):
    """LabelShardTask → ((shard, image_id), ImageRegions) for each image with usable pseudo boxes, and
    (shard, Failure) on the `failures` output for each pseudo box without a usable embedding."""

    def __init__(self, store: str, sources: tuple[str, ...], dim: int):
        self._store = store
        self._sources = sources
        self._dim = dim

    def setup(self):
        self._reader = StoreReader(self._store)

    def process(self, task: LabelShardTask):
        table = self._reader.read_shard("regions", task.shard, ["image_id", "region_id", "box", "source", "embedding",
                                                                 "embedding_norm"])
        table = table.filter(pc.is_in(table.column("source"), value_set=pc.cast(list(self._sources), "string")))
        images = self._reader.read_shard("images", task.shard, ["image_id", "file_name"])
        file_names = dict(zip(images.column("image_id").to_pylist(), images.column("file_name").to_pylist()))
        # Embeddings are read apart: a null one is a dead letter here, not an error of the whole shard.
        regions = Regions.from_arrow(table.drop_columns(["embedding", "embedding_norm"]))
        embeddings, norms, usable = usable_embeddings(table.column("embedding"), table.column("embedding_norm"),
                                                      self._dim)
        for row in np.flatnonzero(~usable):
            image_id, region_id = int(regions.image_id[row]), int(regions.region_id[row])
            yield beam.pvalue.TaggedOutput(FAILURES, (task.shard, region_failure(
                image_id, region_id, file_names.get(image_id), "missing_embedding",
                f"region {region_id} of image {image_id} (shard {task.shard}) has a null, non-finite or zero "
                f"embedding or embedding_norm in the regions table; rerun extract-features for this shard")))
        for image_id in np.unique(regions.image_id[usable]):
            rows = np.flatnonzero(usable & (regions.image_id == image_id))
            rows = rows[np.argsort(regions.region_id[rows], kind="stable")]
            yield (task.shard, int(image_id)), ImageRegions(
                int(image_id), file_names.get(int(image_id), ""), tuple(int(r) for r in regions.region_id[rows]),
                regions.box[rows], embeddings[rows], norms[rows])


class PickLabels(beam.DoFn):
    """A batch of ((shard, image_id), PredictionResult(ImageRegions, (captions | CaptionFailure, seconds))) →
    (shard, LabelledRegion) per captioned region (labelled, or with no label where its caption names no object),
    (shard, Failure) on `failures` for regions without a caption, and (shard, {step: seconds}) on `seconds`.

    spaCy parses all captions of the batch in one `nlp.pipe`; the batch's distinct candidate texts not seen before
    are embedded in one call (TextEmbeddingCache) with the CLIP text tower and prompt ensemble of extract-features.
    A log line every few seconds says how many of the run's `expected_boxes` pseudo boxes this worker has done.
    """

    def __init__(self, nouns: NounsSection, load_text_encoder: Callable[[], StoreTextEncoder],
                 expected_boxes: int = 0):
        self._nouns = nouns
        self._load_text_encoder = load_text_encoder  # picklable (functools.partial of StoreTextEncoder.load)
        self._expected_boxes = expected_boxes

    def setup(self):
        self._extractor = NounExtractor.from_config(self._nouns)
        encoder = self._load_text_encoder()
        self._cache = TextEmbeddingCache(encoder.encode)
        self._progress = Progress("label pick (pseudo boxes)", self._expected_boxes, LOG)
        self._boxes_done = 0

    def process(self, batch):
        started = time.perf_counter()
        pending: list[tuple[int, ImageRegions, int, str]] = []  # shard, image, region index, caption
        caption_seconds: Counter = Counter()
        for (shard, _), result in batch:
            item: ImageRegions = result.example
            captions, seconds = result.inference
            caption_seconds[shard] += seconds
            if isinstance(captions, CaptionFailure):
                for region_id in item.region_ids:
                    yield self._failure(shard, item, region_id, captions.kind, captions.message)
                continue
            for index, caption in enumerate(captions):
                if caption.strip():
                    pending.append((shard, item, index, caption.strip()))
                else:
                    yield self._failure(shard, item, item.region_ids[index], "empty_caption",
                                        "the captioner gave an empty caption")
        candidates = self._extractor.candidates([caption for *_, caption in pending])
        region_embeddings = np.stack([item.embeddings[i] for _, item, i, _ in pending]) if pending else np.zeros((0, 1))
        picks = pick_labels(region_embeddings, candidates, self._cache) if pending else []
        for (shard, item, index, caption), names, pick in zip(pending, candidates, picks):
            region_id = item.region_ids[index]
            if pick is None:  # the caption names no object: a row with no label, not a failure
                yield shard, LabelledRegion(item.image_id, region_id, caption, tuple(names), None, None, None)
                continue
            yield shard, LabelledRegion(item.image_id, region_id, caption, tuple(names), pick.label, pick.cos,
                                        pick.text_embedding)
        self._boxes_done += sum(len(result.example.region_ids) for _, result in batch)
        self._progress.update(self._boxes_done)
        pick_seconds = (time.perf_counter() - started) / max(len(caption_seconds), 1)
        for shard, seconds in caption_seconds.items():
            yield beam.pvalue.TaggedOutput(SECONDS, (shard, {"caption": seconds, "nouns_and_pick": pick_seconds}))

    @staticmethod
    def _failure(shard: int, item: ImageRegions, region_id: int, kind: str, message: str):
        return beam.pvalue.TaggedOutput(FAILURES, (shard, region_failure(
            item.image_id, region_id, item.file_name, kind, f"region {region_id} of image {item.image_id}: {message}")))


class CosineMoments(beam.CombineFn):
    """Exact moment triples (pipelines.cosine_moments) → (μ, σ) of all picked cosines: the dataset's score
    statistics, the same whatever order the runner combines them in."""

    def create_accumulator(self):
        return 0, 0, 0

    def add_input(self, accumulator, moments):
        return merge_moments((accumulator, moments))

    def merge_accumulators(self, accumulators):
        return merge_moments(accumulators)

    def extract_output(self, accumulator):
        count = accumulator[0]
        if count < 2:
            raise ValueError(f"score.from_dataset needs at least 2 labelled regions, the dataset has {count}; "
                             f"set score.from_dataset=false")
        mean, std = mean_and_std(accumulator)
        if std <= 1e-6:
            raise ValueError(f"score.from_dataset: all {count} picked cosines are equal ({mean:.4f}), so they "
                             f"give no sigma; set score.from_dataset=false")
        return mean, std


class CommitLabelShard(beam.DoFn):
    """(shard, {"task": [LabelShardTask], "labels": [LabelledRegion], "failures": [Failure],
    "seconds": [{step: s}]}) with side input (μ, σ) → the shard's stats, after pseudo_labels, failures and stats
    are committed atomically."""

    def __init__(self, store: str, dim: int, k: float):
        self._store = store
        self._dim = dim
        self._k = k

    def setup(self):
        self._writer = ShardWriter(self._store, PSEUDO_LABELS, self._dim)

    def process(self, element, mu_sigma):
        shard, grouped = element
        (task,) = grouped["task"]
        started = time.perf_counter()
        rows = sorted(grouped["labels"], key=lambda r: (r.image_id, r.region_id))
        failures = sorted(grouped["failures"], key=lambda f: (f.image_id, f.region_id if f.region_id is not None else -1))
        mu, sigma = mu_sigma
        tables = {"pseudo_labels": self._label_columns(rows, mu, sigma), "failures": failure_columns(failures)}
        stats = self._stats(rows, failures, grouped["seconds"], mu, sigma, started)
        self._writer.commit(shard, tables, task.fingerprint, stats=stats)
        logging.info("committed pseudo_labels shard %05d: %d labelled, %d with no object, %d failures", shard,
                     stats["labelled"], stats["no_object"], len(failures))
        yield stats

    def _label_columns(self, rows: list[LabelledRegion], mu: float, sigma: float) -> dict:
        """The pseudo_labels columns; a row with no label gets a null label and cos, a score of 0 and a zero text
        embedding (schemas/tables.py)."""
        named = np.array([r.names_object for r in rows], dtype=bool)
        cos = np.array([r.cos if r.names_object else np.nan for r in rows], dtype=np.float32)
        scores = np.zeros(len(rows), dtype=np.float32)
        scores[named] = match_scores(cos[named], mu, sigma, self._k)
        texts = np.zeros((len(rows), self._dim), dtype=np.float32)
        for i in np.flatnonzero(named):
            texts[i] = rows[i].text_embedding
        return {"image_id": [r.image_id for r in rows], "region_id": [r.region_id for r in rows],
                "caption": [r.caption for r in rows], "candidates": [list(r.candidates) for r in rows],
                "label": [r.label for r in rows], "cos": pa.array(cos, mask=~named), "score": scores,
                "text_embedding": texts}

    @staticmethod
    def _stats(rows: list[LabelledRegion], failures: list[Failure], seconds_parts: list[dict], mu: float,
               sigma: float, started: float) -> dict:
        labelled = [r for r in rows if r.names_object]
        seconds: Counter = Counter()
        for part in seconds_parts:
            seconds.update(part)
        stats = {"regions": len(rows) + len(failures), "labelled": len(labelled),
                 "no_object": len(rows) - len(labelled), "failures": len(failures),
                 "failures_by_kind": failures_by_kind(failures),
                 "unique_labels": len({r.label for r in labelled}), "score_mu": mu, "score_sigma": sigma,
                 "seconds": {k: round(v, 4) for k, v in sorted(seconds.items())}}
        stats["seconds"]["write"] = round(time.perf_counter() - started, 4)
        return stats
