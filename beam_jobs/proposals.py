"""proposals: every image of a dataset → the trained class-agnostic proposal network → store table `proposals`.

    python -m beam_jobs.proposals [--config FILE] [--set key=value ...] --store STORE [--overwrite] [--retry-failed]
        [any Beam pipeline option: --runner, --direct_running_mode, --direct_num_workers, --setup_file, ...]

The job reads the image list of dataset.annotations (its boxes are not read) and cuts it into the input shards every
stage cuts (pipelines.sharding: sorted by image id, runs of shard_size), so shard k of `proposals` holds exactly the
images of extract-features' input shard k. A shard's fingerprint covers its images, the output settings, the
network checkpoint's sha256 and the schema version; the sharded-stage driver skips shards committed with the same
fingerprint. The Beam pipeline decodes each image once, runs the network with RunInference (the model loaded once
per worker, several images per forward), groups the proposals back by shard and commits each shard atomically:
per image its top output.top_k proposals after class-agnostic NMS (image_id, rank, box xyxy pixels, score). An
image that cannot be read is a `failures` row. With recall.split set, the stage's average recall on base (and,
with recall.novel_annotations, novel) ground truth is measured after the run, logged and stored in its summary.
"""
from __future__ import annotations

import dataclasses
import logging

import apache_beam as beam
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference

from beam_jobs.extract_steps import OUTCOMES, open_with_beam
from beam_jobs.job_main import parse_job, run_job
from beam_jobs.proposal_handler import ProposalNetworkHandler
from beam_jobs.proposal_steps import CommitProposalShard, DecodeImages, key_proposals_by_shard
from beam_jobs.sharded_stage import ShardedStage, StageTotals, run_sharded_stage
from featurestore.atomic import sha256_file
from featurestore.manifest import ModelRecord
from featurestore.proposals import PROPOSER_ROLE, committed_proposals
from featurestore.reader import StoreReader
from featurestore.stages import PROPOSALS
from pipelines.coco import AnnotationError, read_coco
from pipelines.proposal_recall import RecallGroundTruth, format_recall_table
from pipelines.proposals_config import ProposalsConfig
from pipelines.sharding import ImageShardTask, build_image_shard_tasks
from schemas.config import ConfigError, origins_named
from schemas.tables import SchemaVersionError
from trainers.proposer.config import ProposalOutputConfig
from trainers.proposer.inference import ProposalGenerator, ProposerCheckpointError
from vlm.clip import ModelLoadError

LOG = logging.getLogger(PROPOSALS)
CHECKPOINT_KEY = "proposer.checkpoint"


PROG = "python -m beam_jobs.proposals"
STORE_HELP = "feature store root (created if missing)"


def network_output(config: ProposalsConfig) -> ProposalOutputConfig:
    """The network's output settings from the stage's config (images per forward: runtime.max_batch_size)."""
    output = config.output
    return ProposalOutputConfig(top_k=output.top_k, nms_thresh=output.nms_thresh, score_thresh=output.score_thresh,
                                batch_size=config.runtime.max_batch_size)


class Proposals(ShardedStage):
    """The proposals stage: a shard is a run of images by id (pipelines.sharding.ImageShardTask)."""

    name = PROPOSALS
    totals = StageTotals(counts=("input_images", "images", "proposals", "failures"), breakdowns=("failures_by_kind",),
                         inputs="input_images", inputs_named="input images")

    def __init__(self, store: str, config: ProposalsConfig, tasks: list[ImageShardTask], proposer: ModelRecord,
                 recall: RecallGroundTruth | None):
        super().__init__(store, None, config, {PROPOSER_ROLE: proposer}, tasks)
        self.recall = recall

    def build_pipeline(self, pipeline: beam.Pipeline, pending: list[ImageShardTask]) -> beam.PCollection:
        config, runtime = self.config, self.config.runtime
        shards = self.spread_tasks(pipeline, pending)
        decoded = shards | "DecodeImages" >> beam.ParDo(
            DecodeImages(config.dataset.image_root, runtime.max_image_pixels)).with_outputs(OUTCOMES, main="images")
        handler = ProposalNetworkHandler(config.proposer.checkpoint, network_output(config), device=runtime.device,
                                         min_batch_size=runtime.min_batch_size, max_batch_size=runtime.max_batch_size,
                                         large_model=runtime.large_model, config_key=CHECKPOINT_KEY)
        found = (decoded.images
                 | "Propose" >> RunInference(KeyedModelHandler(handler))
                 | "KeyProposalsByShard" >> beam.Map(key_proposals_by_shard))
        keyed_tasks = shards | "KeyTasksByShard" >> beam.Map(lambda task: (task.shard, task))
        return ({"task": keyed_tasks, "outcomes": decoded[OUTCOMES], "proposals": found}
                | "GroupByShard" >> beam.CoGroupByKey()
                | "CommitShard" >> beam.ParDo(CommitProposalShard(self.store, len(pending))))

    def summary_extras(self, stats: list[dict]) -> dict:
        busy = sum(sum(shard["seconds"].values()) for shard in stats)
        images = sum(shard["images"] for shard in stats)
        extras = {"images_per_second": round(images / busy, 2) if busy else 0.0}
        if self.recall is not None:
            extras["recall"] = self.measure_recall()
        return extras

    def measure_recall(self) -> dict:
        """AR / R50 at recall.max_dets of the committed proposals, per ground-truth side, over the images the stage
        ran over (an image it could not read finds nothing)."""
        ran = {image.image_id for task in self.tasks for image in task.images}
        truth = dataclasses.replace(self.recall, image_ids={
            side: [i for i in ids if i in ran] for side, ids in self.recall.image_ids.items()})
        metrics = truth.score(committed_proposals(StoreReader(self.store)), self.config.recall.max_dets)
        LOG.info("average recall of the stage's proposals (class-agnostic, pycocotools useCats=0), in %%:\n%s",
                 format_recall_table({"proposals": metrics}, self.config.recall.max_dets))
        section = self.config.recall
        return {"split": section.split, "novel_annotations": section.novel_annotations,
                "images": {side: len(ids) for side, ids in truth.image_ids.items()}, **metrics}


def proposer_record(generator: ProposalGenerator, path: str, sha256: str) -> ModelRecord:
    """The manifest's record of the proposal network: the checkpoint as configured, its sha256 and what it is."""
    network = generator.network_config
    name = "proposal network" + (f" (objectness {network.objectness}, backbone {network.backbone})" if network else "")
    return ModelRecord(sha256=sha256, name=name, path=path)


def run(argv: list[str] | None = None, test_pipeline: beam.Pipeline | None = None,
        after_commit: beam.DoFn | None = None) -> dict:
    """Run the job; returns the summary (also stored in the manifest). Raises FailureRateExceeded.
    `after_commit` is applied to each committed shard's stats (see sharded_stage.run_sharded_stage)."""
    args, beam_args, config, origins = parse_job(argv, PROG, __doc__, STORE_HELP, ProposalsConfig, LOG)
    # Every model and input problem surfaces here, before any pixel is read or anything is written; errors name
    # the config key and the file (or --set) that set it.
    with origins_named(origins):
        checkpoint = config.proposer.checkpoint
        generator = ProposalGenerator.from_checkpoint(checkpoint, network_output(config), "cpu",
                                                      config_key=CHECKPOINT_KEY)
        sha256 = sha256_file(checkpoint)
        dataset = read_coco(config.dataset.annotations, open_with_beam)
        images = sorted(dataset.images, key=lambda image: image.image_id)[:config.dataset.max_images or None]
        tasks = build_image_shard_tasks(images, config.shard_size, config.content_hash(), sha256)
        LOG.info("%d images in %d shards", len(images), len(tasks))
        recall = config.recall
        truth = (RecallGroundTruth.load(config.dataset.annotations, recall.novel_annotations, recall.split,
                                        open_fn=open_with_beam) if recall.split else None)
    stage = Proposals(args.store, config, tasks, proposer_record(generator, checkpoint, sha256), truth)
    del generator  # workers load their own copy through the ModelHandler
    return run_sharded_stage(stage, beam_args, overwrite=args.overwrite, retry_failed=args.retry_failed,
                             test_pipeline=test_pipeline, after_commit=after_commit)


def main(argv: list[str] | None = None) -> int:
    # SchemaVersionError: --store names a store of another schema version; its message says how to proceed.
    return run_job(run, argv, LOG, setup_errors=(ConfigError, ProposerCheckpointError, ModelLoadError,
                                                 AnnotationError, FileNotFoundError, SchemaVersionError))


if __name__ == "__main__":
    raise SystemExit(main())
