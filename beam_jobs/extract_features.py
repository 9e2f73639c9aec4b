"""extract-features: images + annotations + proposals → crops → CLIP → store tables images, regions, vocab.

    python -m beam_jobs.extract_features [--config FILE] [--set key=value ...] --store STORE [--overwrite]
        [any Beam pipeline option: --runner, --direct_running_mode, --direct_num_workers, --setup_file, ...]

The driver reads the annotations, proposals and object names, plans every image's regions (no pixels needed),
cuts the images into deterministic shards and skips shards already committed with the same fingerprint. The Beam
pipeline decodes each image once, cuts all its crops, encodes them with RunInference, groups them back by
shard and commits each shard atomically. Runner options we do not know pass through to Beam unchanged.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no model may come from the hub (set before open_clip imports it)
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import apache_beam as beam  # noqa: E402
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference  # noqa: E402
from apache_beam.options.pipeline_options import PipelineOptions  # noqa: E402

from beam_jobs.clip_handler import ClipImageHandler  # noqa: E402
from beam_jobs.extract_steps import (OUTCOMES, STAGE, CommitShard, DecodeAndCrop, key_embedding_by_shard,  # noqa: E402
                                     open_with_beam)
from beam_jobs.job_main import parse_job_args, run_job  # noqa: E402
from beam_jobs.store_progress import (FailureRateExceeded, check_failure_rate, forget_shards,  # noqa: E402
                                      summarise_store)
from featurestore.atomic import sha256_file  # noqa: E402
from featurestore.manifest import ModelRecord  # noqa: E402
from featurestore.writer import ShardWriter  # noqa: E402
from pipelines.class_vocab import class_vocab, name_vocab, stack_vocab, vocab_fingerprint  # noqa: E402
from vlm.clip_preprocess import CropPreprocess  # noqa: E402
from pipelines.extract_config import ExtractFeaturesConfig  # noqa: E402
from pipelines.extract_plan import plan_dataset  # noqa: E402
from pipelines.coco import AnnotationError  # noqa: E402
from vlm.clip import ModelLoadError, load_clip, resolve_clip  # noqa: E402
from vlm.text_encoder import StoreTextEncoder  # noqa: E402
from pipelines.sharding import ShardTask, build_shard_tasks  # noqa: E402
from schemas.config import ConfigError, config_hash, load_config, to_dict  # noqa: E402

LOG = logging.getLogger("extract_features")


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    return parse_job_args("python -m beam_jobs.extract_features", __doc__,
                          "feature store root (created if missing)", argv)


def build_pipeline(pipeline: beam.Pipeline, tasks: list[ShardTask], config: ExtractFeaturesConfig, store: str,
                   dim: int, handler: ClipImageHandler, preprocess: CropPreprocess) -> beam.PCollection:
    """The Beam graph over the pending shards; returns the PCollection of committed shards' stats."""
    runtime = config.runtime
    shards = (pipeline
              | "PendingShards" >> beam.Create(tasks, reshuffle=False)
              | "SpreadShards" >> beam.Reshuffle())
    cut = shards | "DecodeAndCrop" >> beam.ParDo(
        DecodeAndCrop(config.dataset.image_root, config.crop.mode, config.crop.context_scale, preprocess)
    ).with_outputs(OUTCOMES, main="crops")
    embeddings = (cut.crops
                  | "EncodeCrops" >> RunInference(KeyedModelHandler(handler))
                  | "KeyEmbeddingsByShard" >> beam.Map(key_embedding_by_shard))
    keyed_tasks = shards | "KeyTasksByShard" >> beam.Map(lambda task: (task.shard, task))
    return ({"task": keyed_tasks, "outcomes": cut[OUTCOMES], "embeddings": embeddings}
            | "GroupByShard" >> beam.CoGroupByKey()
            | "CommitShard" >> beam.ParDo(CommitShard(store, dim, config.crop.mode, len(tasks),
                                                      runtime.crash_after_commits)))


def shard_waves(tasks: list[ShardTask], per_run: int, single: bool) -> list[list[ShardTask]]:
    """The pending shards cut into runs of `per_run` (all at once if 0, or for a TestPipeline that runs once)."""
    if single or per_run <= 0:
        return [tasks]
    return [tasks[start:start + per_run] for start in range(0, len(tasks), per_run)]


def run(argv: list[str] | None = None, test_pipeline: beam.Pipeline | None = None) -> dict:
    """Run the job; returns the summary (also stored in the manifest). Raises FailureRateExceeded."""
    args, beam_args = parse_args(argv)
    config = load_config(ExtractFeaturesConfig, args.config, args.overrides)
    LOG.info("config: %s", json.dumps(to_dict(config), sort_keys=True))
    # Every model and input problem surfaces here, before any pixel is read or anything is written.
    source = resolve_clip(config.model.clip, config.model.checkpoint, config.model.model_config_dir)
    weights_sha256 = sha256_file(source.weights_path)
    planned = plan_dataset(config, open_with_beam)
    clip = load_clip(source, device=config.runtime.device, dtype=config.model.dtype)
    preprocess = CropPreprocess.from_open_clip(clip.preprocess_cfg)
    tasks = build_shard_tasks(planned.plans, planned.orphans, config.shard_size, config.content_hash(),
                              weights_sha256)

    writer = ShardWriter(args.store, STAGE, clip.embed_dim)
    forget_shards(args.store, STAGE, keep=set() if args.overwrite else {t.shard for t in tasks})
    writer.open_stage(to_dict(config), config_hash(config),
                      models={"clip": ModelRecord(sha256=weights_sha256, name=config.model.clip,
                                                  path=source.weights_path, checkpoint=source.checkpoint,
                                                  model_config_dir=source.model_config_dir,
                                                  prompts=config.vocab.prompts)})
    encoder = StoreTextEncoder(clip, config.vocab.prompts)
    vocab = class_vocab(planned.dataset, planned.split, encoder)
    object_names = planned.object_names()
    if object_names:
        vocab = stack_vocab(vocab, name_vocab(object_names, encoder))
    writer.commit_table("vocab", vocab, vocab_fingerprint(vocab, weights_sha256))
    dim = clip.embed_dim
    del clip  # workers load their own copy through the ModelHandler

    pending = [t for t in tasks if not writer.is_current(t.shard, t.fingerprint)]
    LOG.info("%d images in %d shards: %d already committed with the same fingerprint, %d to compute",
             len(planned.plans), len(tasks), len(tasks) - len(pending), len(pending))
    started = time.perf_counter()
    if pending:
        handler = ClipImageHandler(source, preprocess, dtype=config.model.dtype, device=config.runtime.device,
                                   min_batch_size=config.runtime.min_batch_size,
                                   max_batch_size=config.runtime.max_batch_size,
                                   large_model=config.runtime.large_model)
        for wave in shard_waves(pending, config.runtime.shards_per_run, single=test_pipeline is not None):
            pipeline = test_pipeline or beam.Pipeline(options=PipelineOptions(beam_args))
            build_pipeline(pipeline, wave, config, args.store, dim, handler, preprocess)
            pipeline.run().wait_until_finish()
    summary = summarise_store(args.store, STAGE, tasks, computed=len(pending),
                              wall_seconds=time.perf_counter() - started)
    if config.dataset.object_name_mode:
        # Lines for annotations the job does not keep (novel boxes in the strict setting) are counted, not used.
        summary["object_names"] = {"distinct": len(object_names), "unmatched_lines": planned.names_unmatched}
    writer.finish_stage(summary)
    LOG.info("summary: %s", json.dumps(summary, sort_keys=True))
    check_failure_rate(summary, config.runtime.max_failure_rate, args.store)
    return summary


def main(argv: list[str] | None = None) -> int:
    return run_job(run, argv, LOG, setup_errors=(ConfigError, ModelLoadError, AnnotationError, FileNotFoundError),
                   exit_codes={FailureRateExceeded: 3})


if __name__ == "__main__":
    raise SystemExit(main())
