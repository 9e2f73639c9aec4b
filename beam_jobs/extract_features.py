"""extract-features: images + annotations + proposals → crops → CLIP → store tables images, regions, vocab.

    python -m beam_jobs.extract_features [--config FILE] [--set key=value ...] --store STORE [--overwrite]
        [--retry-failed]
        [any Beam pipeline option: --runner, --direct_running_mode, --direct_num_workers, --setup_file, ...]

The job reads the annotations, proposals (a file, or with dataset.proposals = store the proposals stage of STORE,
which must be finished and cut into the same shards) and object names, plans every image's regions (no pixels
needed) and cuts the images into deterministic shards; the sharded-stage driver skips shards already committed with the same
fingerprint (--retry-failed also recomputes the committed shards with failure rows, e.g. after images were
fixed: image bytes are in no fingerprint, since hashing every file would read the whole dataset before any
work). The Beam pipeline decodes each image once, cuts all its crops, encodes them with RunInference, groups
them back by shard and commits each shard atomically. Runner options we do not know pass through to Beam unchanged.

Two paths, the same rows (runtime.crop_on): on the host, PIL decodes and each crop is its own element to the model;
on the device (a GPU's default), each image is one element and decode, crop, resize and encode run on the device.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import apache_beam as beam
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference

from beam_jobs.clip_handler import ClipImageHandler
from beam_jobs.device_clip_handler import DeviceClipHandler
from beam_jobs.extract_device_steps import ReadImages, ToShardRows
from beam_jobs.extract_dtype import load_for_job
from beam_jobs.extract_steps import OUTCOMES, CommitShard, DecodeAndCrop, key_embedding_by_shard, open_with_beam
from beam_jobs.job_main import parse_job, run_job
from beam_jobs.model_records import clip_model_record
from beam_jobs.sharded_stage import ShardedStage, StageTotals, run_sharded_stage
from featurestore.atomic import sha256_file
from featurestore.manifest import ModelRecord
from featurestore.proposals import PROPOSER_ROLE, ProposalStageError, read_stage_proposals
from featurestore.stages import EXTRACT_FEATURES
from pipelines.class_vocab import class_vocab, name_vocab, stack_vocab, vocab_fingerprint
from pipelines.coco import AnnotationError
from pipelines.extract_config import DatasetSection, ExtractFeaturesConfig
from pipelines.extract_plan import PlannedDataset, plan_dataset
from pipelines.ov_split import BUILT_IN
from pipelines.proposals import STORE_PROPOSALS
from pipelines.sharding import ShardTask, build_shard_tasks
from schemas.config import ConfigError, origins_named
from schemas.tables import SchemaVersionError
from vlm.clip import ClipSource, ModelLoadError, resolve_clip, resolve_device
from vlm.clip_preprocess import CropPreprocess
from vlm.dtype_probe import DtypeChoice
from vlm.text_encoder import StoreTextEncoder

LOG = logging.getLogger(EXTRACT_FEATURES)
PROPOSALS_KEY = "dataset.proposals"


PROG = "python -m beam_jobs.extract_features"
STORE_HELP = "feature store root (created if missing)"


class ExtractFeatures(ShardedStage):
    """The extract-features stage: a shard is a run of images by id (pipelines.sharding.ShardTask)."""

    name = EXTRACT_FEATURES
    totals = StageTotals(counts=("input_images", "images", "regions", "crops", "failures"),
                         breakdowns=("regions_by_source", "failures_by_kind", "whole_image_crops_by_source",
                                     "clipped_crops_by_source"), inputs="input_images",
                         inputs_named="input images")

    def __init__(self, store: str, config: ExtractFeaturesConfig, tasks: list[ShardTask], clip: ModelRecord,
                 source: ClipSource, preprocess: CropPreprocess, dim: int, planned: PlannedDataset,
                 vocab: tuple[dict, str], proposer: ModelRecord | None = None,
                 dtype_choice: DtypeChoice | None = None):
        # With proposals from the store's proposals stage, the network that made them is part of the provenance.
        models = {"clip": clip, **({PROPOSER_ROLE: proposer} if proposer is not None else {})}
        super().__init__(store, dim, config, models, tasks)
        self.source = source
        self.preprocess = preprocess
        self.planned = planned
        self._vocab = vocab
        self.dtype_choice = dtype_choice  # how the driver settled model.dtype (beam_jobs.extract_dtype)

    def build_pipeline(self, pipeline: beam.Pipeline, pending: list[ShardTask]) -> beam.PCollection:
        shards = self.spread_tasks(pipeline, pending)
        outcomes, embeddings = self._on_device(shards) if self.crop_on_device else self._on_host(shards)
        keyed_tasks = shards | "KeyTasksByShard" >> beam.Map(lambda task: (task.shard, task))
        return ({"task": keyed_tasks, "outcomes": outcomes, "embeddings": embeddings}
                | "GroupByShard" >> beam.CoGroupByKey()
                | "CommitShard" >> beam.ParDo(CommitShard(self.store, self.dim, self.config.crop, len(pending))))

    @property
    def crop_on_device(self) -> bool:
        """runtime.crop_on, with auto resolved: the device path when runtime.device is (or resolves to) a GPU."""
        runtime = self.config.runtime
        if runtime.crop_on != "auto":
            return runtime.crop_on == "device"
        return resolve_device(runtime.device).type == "cuda"

    def _on_host(self, shards: beam.PCollection) -> tuple[beam.PCollection, beam.PCollection]:
        """Per image (shard, ImageOutcome) and per crop (shard, embedding row): PIL decodes and cuts in the worker."""
        config, runtime = self.config, self.config.runtime
        handler = ClipImageHandler(self.source, self.preprocess, dtype=config.model.dtype, device=runtime.device,
                                   min_batch_size=runtime.min_batch_size, max_batch_size=runtime.max_batch_size,
                                   large_model=runtime.large_model)
        cut = shards | "DecodeAndCrop" >> beam.ParDo(
            DecodeAndCrop(config.dataset.image_root, config.crop, self.preprocess, runtime.max_image_pixels)
        ).with_outputs(OUTCOMES, main="crops")
        embeddings = (cut.crops
                      | "EncodeCrops" >> RunInference(KeyedModelHandler(handler))
                      | "KeyEmbeddingsByShard" >> beam.Map(key_embedding_by_shard))
        return cut[OUTCOMES], embeddings

    def _on_device(self, shards: beam.PCollection) -> tuple[beam.PCollection, beam.PCollection]:
        """Per image (shard, ImageOutcome) and (shard, ImageEmbeddings): one element per image, the pixels decoded,
        cut, resized and encoded on runtime.device."""
        config, runtime = self.config, self.config.runtime
        handler = DeviceClipHandler(self.source, self.preprocess, dtype=config.model.dtype, device=runtime.device,
                                    max_crops=runtime.max_batch_size, resize=runtime.crop_resize,
                                    large_model=runtime.large_model)
        read = shards | "ReadImages" >> beam.ParDo(
            ReadImages(config.dataset.image_root, config.crop, runtime.max_image_pixels)
        ).with_outputs(OUTCOMES, main="images")
        encoded = (read.images
                   | "DecodeCropEncode" >> RunInference(KeyedModelHandler(handler))
                   | "ToShardRows" >> beam.ParDo(ToShardRows()).with_outputs(OUTCOMES, main="embeddings"))
        outcomes = (read[OUTCOMES], encoded[OUTCOMES]) | "AllOutcomes" >> beam.Flatten()
        return outcomes, encoded.embeddings

    def vocab(self) -> tuple[dict, str]:
        return self._vocab

    def summary_extras(self, stats: list[dict]) -> dict:
        busy = sum(sum(shard["seconds"].values()) for shard in stats)
        crops = sum(shard["crops"] for shard in stats)
        extras = {"crops_per_second": round(crops / busy, 2) if busy else 0.0}
        if self.dtype_choice is not None:
            extras["dtype"] = self.dtype_choice.as_record()
        # The dtype each worker ran the image tower in, once per distinct record: shards kept from a run before
        # model.dtype auto was settled by the driver may differ.
        dtypes = {json.dumps(shard["model_dtype"], sort_keys=True) for shard in stats if "model_dtype" in shard}
        if dtypes:
            extras["model_dtype"] = [json.loads(record) for record in sorted(dtypes)]
        if self.config.dataset.object_name_mode:
            # Lines for annotations the job does not keep (novel boxes in the strict setting) are counted, not used.
            extras["object_names"] = {"distinct": len(self.planned.object_names()),
                                      "unmatched_lines": self.planned.names_unmatched}
        return extras


def check_dataset_paths(dataset: DatasetSection) -> None:
    """Every local file and folder the `dataset` section names exists (a missing image folder would make every
    image a failure row, after the work); URLs are read through Beam's file systems and checked when read."""
    proposals = None if dataset.proposals == STORE_PROPOSALS else dataset.proposals  # the store's own stage
    files = {"dataset.annotations": dataset.annotations, "dataset.proposals": proposals,
             "dataset.names": dataset.names, "dataset.split": None if dataset.split in BUILT_IN else dataset.split}
    for key, path in files.items():
        if path and "://" not in path and not Path(path).is_file():
            raise FileNotFoundError(f"config key '{key}': no file {path}")
    if "://" not in dataset.image_root and not Path(dataset.image_root).is_dir():
        raise FileNotFoundError(f"config key 'dataset.image_root': no folder {dataset.image_root}")


def store_vocab(planned: PlannedDataset, encoder: StoreTextEncoder, weights_sha256: str) -> tuple[dict, str]:
    """The class names (and object names) with their text embeddings, and the fingerprint of those rows."""
    vocab = class_vocab(planned.dataset, planned.split, encoder)
    object_names = planned.object_names()
    if object_names:
        vocab = stack_vocab(vocab, name_vocab(object_names, encoder))
    return vocab, vocab_fingerprint(vocab, weights_sha256)


def run(argv: list[str] | None = None, test_pipeline: beam.Pipeline | None = None,
        after_commit: beam.DoFn | None = None) -> dict:
    """Run the job; returns the summary (also stored in the manifest). Raises FailureRateExceeded.
    `after_commit` is applied to each committed shard's stats (see sharded_stage.run_sharded_stage)."""
    args, beam_args, config, origins = parse_job(argv, PROG, __doc__, STORE_HELP, ExtractFeaturesConfig, LOG)
    # Every model and input problem surfaces here, before any pixel is read or anything is written; errors name
    # the config key and the file (or --set) that set it.
    with origins_named(origins):
        source = resolve_clip(config.model.clip, config.model.checkpoint, config.model.model_config_dir)
        check_dataset_paths(config.dataset)
        stored = (read_stage_proposals(args.store, PROPOSALS_KEY) if config.dataset.proposals == STORE_PROPOSALS
                  else None)
        planned = plan_dataset(config, open_with_beam, stored.by_image if stored else None)
    weights_sha256 = sha256_file(source.weights_path)
    # model.dtype auto is settled here, before the fingerprints, which then hold the dtype the shards run in.
    config, clip = load_for_job(source, config, args.store, args.overwrite)
    tasks = build_shard_tasks(planned.plans, planned.orphans, config.shard_size, config.content_hash(),
                              weights_sha256)
    if stored is not None:
        stored.check_shards(((task.shard, task.image_ids) for task in tasks), f"{PROPOSALS_KEY}, shard_size")
    LOG.info("%d images in %d shards", len(planned.plans), len(tasks))
    vocab = store_vocab(planned, StoreTextEncoder(clip, config.vocab.prompts), weights_sha256)
    stage = ExtractFeatures(args.store, config, tasks, clip_model_record(source, config.vocab.prompts, weights_sha256),
                            source=source, preprocess=CropPreprocess.from_open_clip(clip.preprocess_cfg),
                            dim=clip.embed_dim, planned=planned, vocab=vocab,
                            proposer=stored.proposer if stored else None, dtype_choice=clip.dtype_choice)
    del clip  # workers load their own copy through the ModelHandler
    return run_sharded_stage(stage, beam_args, overwrite=args.overwrite, retry_failed=args.retry_failed,
                             test_pipeline=test_pipeline, after_commit=after_commit)


def main(argv: list[str] | None = None) -> int:
    # SchemaVersionError: --store names a store of another schema version; its message says how to proceed.
    # ProposalStageError: dataset.proposals is "store" and the store has no finished proposals stage cut alike.
    return run_job(run, argv, LOG, setup_errors=(ConfigError, ModelLoadError, AnnotationError, FileNotFoundError,
                                                 SchemaVersionError, ProposalStageError))


if __name__ == "__main__":
    raise SystemExit(main())
