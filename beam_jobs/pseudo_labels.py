"""pseudo-labels: pseudo boxes → captions (ClipCap / BLIP-2 / given) → spaCy nouns → CLIP pick → pseudo_labels.

    python -m beam_jobs.pseudo_labels --store STORE [--config FILE] [--set key=value ...] [--overwrite]
        [any Beam pipeline option: --runner, --direct_num_workers, --setup_file, ...]

Reads the `regions` rows with source "proposal" of every extract-features shard and writes `pseudo_labels` shard by
shard (shard k holds exactly the pseudo boxes of regions shard k), plus `failures` rows for boxes that got no label
and `vocab` rows (kind "label") for the unique labels. Shards whose fingerprint (regions shard, config, CLIP and
captioner weights, schema version) is already committed are skipped. With score.from_dataset, μ and σ of the score
come from a global combine over every picked cosine (a first pass), and scores are computed in the commit (second).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no model may come from the hub (set before transformers imports)
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import apache_beam as beam  # noqa: E402
import numpy as np  # noqa: E402
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference  # noqa: E402
from apache_beam.options.pipeline_options import PipelineOptions  # noqa: E402

from beam_jobs.captioner_handler import CaptionerHandler  # noqa: E402
from beam_jobs.pseudo_label_steps import (FAILURES, SECONDS, STAGE, CommitLabelShard, CosineMoments,  # noqa: E402
                                          LabelShardTask, PickLabels, ReadPseudoBoxes)
from beam_jobs.job_main import parse_job_args, run_job  # noqa: E402
from beam_jobs.store_progress import forget_shards  # noqa: E402
from featurestore import layout  # noqa: E402
from featurestore.atomic import sha256_file  # noqa: E402
from featurestore.arrow import embeddings_to_numpy  # noqa: E402
from featurestore.manifest import ModelRecord  # noqa: E402
from featurestore.reader import StoreReader  # noqa: E402
from featurestore.writer import ShardWriter  # noqa: E402
from pipelines.captioners import captioner_provenance, check_captioner_files  # noqa: E402
from vlm.clip import ClipSource, ModelLoadError, resolve_clip  # noqa: E402
from pipelines.pseudo_label_config import PseudoLabelsConfig  # noqa: E402
from schemas.config import ConfigError, config_hash, load_config, to_dict  # noqa: E402
from schemas.tables import SCHEMA_VERSION  # noqa: E402

LOG = logging.getLogger("pseudo_labels")
UPSTREAM = "extract_features"


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    return parse_job_args("python -m beam_jobs.pseudo_labels", __doc__,
                          "feature store written by extract-features", argv)


def resolve_text_clip(config: PseudoLabelsConfig, store_clip: ModelRecord, store: str
                      ) -> tuple[ClipSource, ModelRecord]:
    """The CLIP (and prompt ensemble) that embeds candidates: the store's unless the config names one, which must
    then have the same weights, since cosines across two CLIPs' spaces mean nothing. Returns the source to load and
    the record of it (with the prompts) for the manifest."""
    text = config.text
    source = resolve_clip(text.clip or store_clip.name, text.checkpoint or store_clip.checkpoint,
                          text.model_config_dir or store_clip.model_config_dir, key="text")
    weights_sha256 = sha256_file(source.weights_path)
    if weights_sha256 != store_clip.sha256:
        raise ConfigError(f"the CLIP at {source.weights_path} (config key text.clip) is not the CLIP whose region "
                          f"embeddings are in {store} (weights sha256 {store_clip.sha256[:12]}…); use the same weights")
    return source, ModelRecord(sha256=weights_sha256, name=source.open_clip_name, path=source.weights_path,
                               checkpoint=source.checkpoint, model_config_dir=source.model_config_dir,
                               prompts=text.prompts or store_clip.prompts)


def shard_fingerprint(regions_fingerprint: str, content_hash: str, clip_sha: str, captioner_sha: str) -> str:
    payload = {"regions": regions_fingerprint, "config": content_hash, "clip": clip_sha, "captioner": captioner_sha,
               "schema_version": SCHEMA_VERSION}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def committed_moments(reader: StoreReader, done: list[LabelShardTask]) -> tuple[float, float, float]:
    """(count, Σcos, Σcos²) over shards kept from an earlier run, so dataset μ/σ cover the whole dataset."""
    count = total = squares = 0.0
    for batch in reader.stream("pseudo_labels", ["cos"], shards=[t.shard for t in done]):
        cos = batch.column("cos").to_numpy().astype(np.float64)
        count, total, squares = count + cos.size, total + cos.sum(), squares + (cos ** 2).sum()
    return count, total, squares


def build_pipeline(pipeline: beam.Pipeline, pending: list[LabelShardTask], prior: tuple[float, float, float],
                   config: PseudoLabelsConfig, store: str, dim: int, clip: ClipSource,
                   prompts: str) -> beam.PCollection:
    """The Beam graph over the pending shards; returns the PCollection of committed shards' stats."""
    runtime = config.runtime
    tasks = (pipeline
             | "PendingShards" >> beam.Create(pending, reshuffle=False)
             | "SpreadShards" >> beam.Reshuffle())
    boxes = tasks | "ReadPseudoBoxes" >> beam.ParDo(
        ReadPseudoBoxes(store, config.sources, dim)).with_outputs(FAILURES, main="images")
    handler = CaptionerHandler(config.captioner, min_batch_size=runtime.min_batch_size,
                               max_batch_size=runtime.max_batch_size, large_model=runtime.large_model)
    picked = (boxes.images
              | "Caption" >> RunInference(KeyedModelHandler(handler))
              | "BatchForPick" >> beam.BatchElements(min_batch_size=1, max_batch_size=runtime.pick_batch_size)
              | "NounsAndPick" >> beam.ParDo(PickLabels(config.nouns, clip, prompts, runtime.device,
                                                        config.text.dtype)).with_outputs(FAILURES, SECONDS,
                                                                                          main="labels"))
    if config.score.from_dataset:
        # First pass: every picked cosine (plus those of shards kept from an earlier run) → dataset μ, σ.
        moments = ((picked.labels | "CosineMoments" >> beam.Map(lambda kv: (1.0, kv[1].cos, kv[1].cos ** 2)),
                    pipeline | "KeptShardMoments" >> beam.Create([prior]))
                   | "AllMoments" >> beam.Flatten())
        mu_sigma = moments | "DatasetMuSigma" >> beam.CombineGlobally(CosineMoments())
    else:
        mu_sigma = pipeline | "ReleasedMuSigma" >> beam.Create([(config.score.mu, config.score.sigma)])
    failures = (boxes[FAILURES], picked[FAILURES]) | "AllFailures" >> beam.Flatten()
    keyed_tasks = tasks | "KeyTasksByShard" >> beam.Map(lambda task: (task.shard, task))
    return ({"task": keyed_tasks, "labels": picked.labels, "failures": failures, "seconds": picked[SECONDS]}
            | "GroupByShard" >> beam.CoGroupByKey()
            | "CommitShard" >> beam.ParDo(CommitLabelShard(store, dim, config.score.k),
                                          beam.pvalue.AsSingleton(mu_sigma)))


def label_vocab(reader: StoreReader, prompts: str, dim: int) -> dict:
    """vocab rows (kind "label") for the unique labels of every committed shard, with their text embeddings."""
    first: dict[str, np.ndarray] = {}
    for batch in reader.stream("pseudo_labels", ["label", "text_embedding"]):
        labels = batch.column("label").to_pylist()
        new = [i for i, label in enumerate(labels) if label not in first]
        if new:
            rows = embeddings_to_numpy(batch.column("text_embedding").take(new), dim)
            for i, row in zip(new, rows):
                first.setdefault(labels[i], row)
    names = sorted(first)
    return {"name": names, "kind": ["label"] * len(names), "category_id": [None] * len(names),
            "split": [None] * len(names), "prompts": [prompts] * len(names),
            "embedding": np.stack([first[n] for n in names]) if names else np.zeros((0, dim), np.float16)}


def summarise(store: str, tasks: list[LabelShardTask], computed: int, wall_seconds: float) -> dict:
    totals: Counter = Counter()
    kinds: Counter = Counter()
    seconds: Counter = Counter()
    mu_sigma = set()
    for task in tasks:
        path = Path(store) / layout.stats_path(STAGE, task.shard)
        if not path.is_file():
            raise RuntimeError(f"shard {task.shard} of {store} has no {STAGE} stats after the run: not committed")
        stats = json.loads(path.read_text())
        totals.update({k: stats[k] for k in ("regions", "labelled", "failures")})
        kinds.update(stats["failures_by_kind"])
        seconds.update(stats["seconds"])
        mu_sigma.add((stats["score_mu"], stats["score_sigma"]))
    return {"shards": len(tasks), "shards_computed": computed, "shards_skipped": len(tasks) - computed,
            **{k: totals[k] for k in ("regions", "labelled", "failures")},
            "failures_by_kind": dict(sorted(kinds.items())), "score_mu_sigma": sorted(mu_sigma),
            "seconds": {k: round(v, 3) for k, v in sorted(seconds.items())}, "wall_seconds": round(wall_seconds, 3)}


def run(argv: list[str] | None = None, test_pipeline: beam.Pipeline | None = None) -> dict:
    """Run the job; returns the summary (also stored in the manifest)."""
    args, beam_args = parse_args(argv)
    config = load_config(PseudoLabelsConfig, args.config, args.overrides)
    LOG.info("config: %s", json.dumps(to_dict(config), sort_keys=True))
    # Every model and input problem surfaces here, before anything is read or written.
    reader = StoreReader(args.store)
    upstream = reader.manifest.stages.get(UPSTREAM)
    if not upstream or not reader.shards("regions"):
        raise FileNotFoundError(f"{args.store} has no committed extract-features regions; run make extract-features "
                                f"first (flag --store)")
    clip, text_clip = resolve_text_clip(config, reader.manifest.store_clip(f"store {args.store}"), args.store)
    clip_sha, prompts = text_clip.sha256, text_clip.prompts
    check_captioner_files(config.captioner)
    captioner = captioner_provenance(config.captioner)
    dim = int(upstream.embedding_dim)
    content = config.content_hash()
    tasks = [LabelShardTask(c.shard, shard_fingerprint(c.fingerprint, content, clip_sha,
                                                       captioner["sha256"]))
             for c in reader.table_commits("regions")]

    writer = ShardWriter(args.store, STAGE, dim)
    forget_shards(args.store, STAGE, keep=set() if args.overwrite else {t.shard for t in tasks})
    writer.open_stage(to_dict(config), config_hash(config), models={
        "clip": text_clip, "captioner": ModelRecord(**captioner)})
    pending = [t for t in tasks if not writer.is_current(t.shard, t.fingerprint)]
    done = [t for t in tasks if t not in pending]
    LOG.info("%d shards: %d already committed with the same fingerprint, %d to compute", len(tasks), len(done),
             len(pending))
    started = time.perf_counter()
    if pending:
        prior = committed_moments(StoreReader(args.store), done) if config.score.from_dataset else (0.0, 0.0, 0.0)
        pipeline = test_pipeline or beam.Pipeline(options=PipelineOptions(beam_args))
        build_pipeline(pipeline, pending, prior, config, args.store, dim, clip, prompts)
        pipeline.run().wait_until_finish()
    writer.commit_table("vocab", label_vocab(StoreReader(args.store), prompts, dim))
    summary = summarise(args.store, tasks, len(pending), time.perf_counter() - started)
    writer.finish_stage(summary)
    LOG.info("summary: %s", json.dumps(summary, sort_keys=True))
    return summary


def main(argv: list[str] | None = None) -> int:
    return run_job(run, argv, LOG, setup_errors=(ConfigError, ModelLoadError, FileNotFoundError, OSError))


if __name__ == "__main__":
    raise SystemExit(main())
