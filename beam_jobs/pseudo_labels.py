"""pseudo-labels: pseudo boxes → captions (ClipCap / BLIP-2 / given / a vlm's answers) → spaCy nouns →
CLIP pick → pseudo_labels.

    python -m beam_jobs.pseudo_labels --store STORE [--config FILE] [--set key=value ...] [--overwrite]
        [--retry-failed]
        [any Beam pipeline option: --runner, --direct_num_workers, --setup_file, ...]

Reads the `regions` rows with source "proposal" of every extract-features shard and writes `pseudo_labels` shard by
shard (shard k holds exactly the pseudo boxes of regions shard k; a box whose caption names no object keeps its row,
with no label and a score of 0), plus `failures` rows for boxes that got no caption and `vocab` rows (kind "label")
for the unique labels. The sharded-stage driver skips shards whose fingerprint
(regions shard and file, config, CLIP and captioner weights, schema version) is already committed; --retry-failed
recomputes the committed shards that have failure rows. With score.from_dataset,
μ and σ of the score come from a global combine over every picked cosine (a first pass), and scores are computed in
the commit (second).
"""
from __future__ import annotations

import logging
from functools import partial

import apache_beam as beam
import numpy as np
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference

from beam_jobs.captioner_handler import CaptionerHandler
from beam_jobs.job_main import parse_job, run_job
from beam_jobs.model_records import captioner_model_record, clip_model_record
from beam_jobs.pseudo_labels_preflight import check_captioner_input, check_spacy_model, given_captions_summary
from beam_jobs.pseudo_label_steps import (FAILURES, SECONDS, CommitLabelShard, CosineMoments, LabelShardTask,
                                          PickLabels, ReadPseudoBoxes)
from beam_jobs.sharded_stage import ShardedStage, StageTotals, run_sharded_stage
from featurestore.arrow import embeddings_to_numpy
from featurestore.manifest import ModelRecord
from featurestore.reader import StoreReader
from featurestore.stages import EXTRACT_FEATURES, PSEUDO_LABELS
from pipelines.captioners import resolve_captioner
from pipelines.cosine_moments import Moments, cosine_moment, cosine_moments, merge_moments
from pipelines.pseudo_labels_config import CaptionerSection, PseudoLabelsConfig
from pipelines.sharding import pseudo_label_shard_fingerprint
from schemas.config import ConfigError, origins_named
from schemas.tables import SchemaVersionError
from vlm.clip import ClipSource, ModelLoadError, resolve_clip
from vlm.text_encoder import StoreTextEncoder

LOG = logging.getLogger(PSEUDO_LABELS)


PROG = "python -m beam_jobs.pseudo_labels"
STORE_HELP = "feature store written by extract-features"


def resolve_text_clip(config: PseudoLabelsConfig, store_clip: ModelRecord, store: str
                      ) -> tuple[ClipSource, ModelRecord]:
    """The CLIP (and prompt ensemble) that embeds candidates: the store's unless the config names one, which must
    then have the same weights, since cosines across two CLIPs' spaces mean nothing. Returns the source to load and
    its record (with the prompts) for the manifest."""
    text = config.text
    # The store's own CLIP is found again at the commit it was read at; a CLIP the config names, at its latest.
    revision = None if text.clip or text.checkpoint else store_clip.revision
    source = resolve_clip(text.clip or store_clip.name, text.checkpoint or store_clip.checkpoint,
                          text.model_config_dir or store_clip.model_config_dir, key="text", revision=revision)
    record = clip_model_record(source, text.prompts or store_clip.prompts)
    if record.sha256 != store_clip.sha256:
        raise ConfigError(f"the CLIP at {source.weights_path} (config key 'text.clip') is not the CLIP whose region "
                          f"embeddings are in {store} (weights sha256 {store_clip.sha256[:12]}…); leave text.clip "
                          f"empty to use the store's own, or give the same weights")
    return source, record


def committed_moments(reader: StoreReader, done: list[LabelShardTask]) -> Moments:
    """Exact cosine moments (pipelines.cosine_moments) over the labelled boxes of shards kept from an earlier run,
    so dataset μ/σ cover the whole dataset."""
    return merge_moments(cosine_moments(batch.column("cos").drop_null().to_numpy())
                         for batch in reader.stream("pseudo_labels", ["cos"], shards=[t.shard for t in done]))


def label_vocab(reader: StoreReader, prompts: str, dim: int) -> dict:
    """vocab rows (kind "label") for the unique labels of every committed shard, with their text embeddings."""
    first: dict[str, np.ndarray] = {}
    for batch in reader.stream("pseudo_labels", ["label", "text_embedding"]):
        labels = batch.column("label").to_pylist()
        new = [i for i, label in enumerate(labels) if label is not None and label not in first]
        if new:
            rows = embeddings_to_numpy(batch.column("text_embedding").take(new), dim)
            for i, row in zip(new, rows):
                first.setdefault(labels[i], row)
    names = sorted(first)
    return {"name": names, "kind": ["label"] * len(names), "category_id": [None] * len(names),
            "split": [None] * len(names), "prompts": [prompts] * len(names),
            "embedding": np.stack([first[n] for n in names]) if names else np.zeros((0, dim), np.float16)}


class PseudoLabels(ShardedStage):
    """The pseudo-labels stage: shard k labels the pseudo boxes of regions shard k."""

    name = PSEUDO_LABELS
    totals = StageTotals(counts=("regions", "labelled", "failures"), breakdowns=("failures_by_kind",),
                         inputs="regions", inputs_named="pseudo boxes")

    def __init__(self, store: str, dim: int, config: PseudoLabelsConfig, models: dict[str, ModelRecord],
                 tasks: list[LabelShardTask], text_clip: ClipSource, captioner: CaptionerSection,
                 given_captions: dict | None = None):
        super().__init__(store, dim, config, models, tasks)
        self.text_clip = text_clip
        self.captioner = captioner  # config.captioner with its models as local paths (resolve_captioner)
        self.prompts = models["clip"].prompts
        self.given_captions = given_captions  # the `given` file's counts (pseudo_labels_preflight)

    def pseudo_boxes(self, tasks: list[LabelShardTask]) -> int:
        """The regions of `tasks`' shards that get pseudo labels (the label pick's progress counts them)."""
        reader = StoreReader(self.store)
        return sum(sum(source in self.config.sources for source in
                       reader.read_shard("regions", task.shard, ["source"]).column("source").to_pylist())
                   for task in tasks)

    def one_pipeline_reason(self) -> str | None:
        if self.config.score.from_dataset:
            return "score.from_dataset takes μ and σ from every picked cosine, a global combine over all shards"
        return None

    def build_pipeline(self, pipeline: beam.Pipeline, pending: list[LabelShardTask]) -> beam.PCollection:
        config, runtime = self.config, self.config.runtime
        tasks = self.spread_tasks(pipeline, pending)
        boxes = tasks | "ReadPseudoBoxes" >> beam.ParDo(
            ReadPseudoBoxes(self.store, config.sources, self.dim)).with_outputs(FAILURES, main="images")
        handler = CaptionerHandler(self.captioner, min_batch_size=runtime.min_batch_size,
                                   max_batch_size=runtime.max_batch_size, large_model=runtime.large_model)
        picked = (boxes.images
                  | "Caption" >> RunInference(KeyedModelHandler(handler))
                  | "BatchForPick" >> beam.BatchElements(min_batch_size=1, max_batch_size=config.pick.batch_size)
                  | "NounsAndPick" >> beam.ParDo(PickLabels(
                      config.nouns, partial(StoreTextEncoder.load, self.text_clip, self.prompts, device=runtime.device,
                                            dtype=config.text.dtype), self.pseudo_boxes(pending))
                                                 ).with_outputs(FAILURES, SECONDS, main="labels"))
        failures = (boxes[FAILURES], picked[FAILURES]) | "AllFailures" >> beam.Flatten()
        keyed_tasks = tasks | "KeyTasksByShard" >> beam.Map(lambda task: (task.shard, task))
        return ({"task": keyed_tasks, "labels": picked.labels, "failures": failures, "seconds": picked[SECONDS]}
                | "GroupByShard" >> beam.CoGroupByKey()
                | "CommitShard" >> beam.ParDo(CommitLabelShard(self.store, self.dim, config.score.k),
                                              beam.pvalue.AsSingleton(self._mu_sigma(pipeline, picked, pending))))

    def _mu_sigma(self, pipeline: beam.Pipeline, picked, pending: list[LabelShardTask]) -> beam.PCollection:
        """One (μ, σ): the released constants, or with score.from_dataset every picked cosine (plus those of
        shards kept from an earlier run) in a global combine."""
        score = self.config.score
        if not score.from_dataset:
            return pipeline | "ReleasedMuSigma" >> beam.Create([(score.mu, score.sigma)])
        done = [task for task in self.tasks if task not in pending]
        prior = committed_moments(StoreReader(self.store), done)
        named = picked.labels | "LabelledOnly" >> beam.Filter(lambda kv: kv[1].names_object)
        moments = ((named | "CosineMoments" >> beam.Map(lambda kv: cosine_moment(kv[1].cos)),
                    pipeline | "KeptShardMoments" >> beam.Create([prior]))
                   | "AllMoments" >> beam.Flatten())
        return moments | "DatasetMuSigma" >> beam.CombineGlobally(CosineMoments())

    def vocab(self) -> tuple[dict, str]:
        return label_vocab(StoreReader(self.store), self.prompts, self.dim), ""

    def summary_extras(self, stats: list[dict]) -> dict:
        # Boxes whose caption names no object: rows with no label, not failures, so outside the failure-rate gate.
        # Shards committed before such rows existed have no count (their caption-less boxes are failure rows).
        extras = {"no_object": sum(shard.get("no_object", 0) for shard in stats),
                  "score_mu_sigma": sorted({(shard["score_mu"], shard["score_sigma"]) for shard in stats})}
        if self.given_captions is not None:
            extras["given_captions"] = self.given_captions
        return extras


def run(argv: list[str] | None = None, test_pipeline: beam.Pipeline | None = None,
        after_commit: beam.DoFn | None = None) -> dict:
    """Run the job; returns the summary (also stored in the manifest). Raises FailureRateExceeded.
    `after_commit` is applied to each committed shard's stats (see sharded_stage.run_sharded_stage)."""
    args, beam_args, config, origins = parse_job(argv, PROG, __doc__, STORE_HELP, PseudoLabelsConfig, LOG)
    # Every model and input problem surfaces here, before anything is read or written; errors name the config key
    # and the file (or --set) that set it.
    with origins_named(origins):
        reader = StoreReader(args.store)
        upstream = reader.manifest.stages.get(EXTRACT_FEATURES)
        if not upstream or not reader.shards("regions"):
            raise FileNotFoundError(f"{args.store} has no committed extract-features regions; run make "
                                    f"extract-features first (flag --store)")
        store_clip = reader.manifest.store_clip(f"store {args.store}")
        text_clip, clip = resolve_text_clip(config, store_clip, args.store)
        resolved = resolve_captioner(config.captioner, config.runtime.device)
        check_captioner_input(config, resolved, args.store, int(upstream.embedding_dim), store_clip)
        check_spacy_model(config)
        given = given_captions_summary(config, reader)
    captioner = captioner_model_record(resolved)
    content = config.content_hash()
    tasks = [LabelShardTask(c.shard, pseudo_label_shard_fingerprint(c.fingerprint, c.files["regions"].sha256, content,
                                                                    clip.sha256, captioner.sha256))
             for c in reader.table_commits("regions")]
    stage = PseudoLabels(args.store, int(upstream.embedding_dim), config, {"clip": clip, "captioner": captioner},
                         tasks, text_clip, resolved.config, given_captions=given)
    return run_sharded_stage(stage, beam_args, overwrite=args.overwrite, retry_failed=args.retry_failed,
                             test_pipeline=test_pipeline, after_commit=after_commit)


def main(argv: list[str] | None = None) -> int:
    # KeyError: the store's manifest lacks the record of its CLIP (featurestore.manifest.Manifest.store_clip).
    # SchemaVersionError: the store has another schema version; its message says how to proceed.
    return run_job(run, argv, LOG, setup_errors=(ConfigError, ModelLoadError, FileNotFoundError, OSError, KeyError,
                                                 SchemaVersionError))


if __name__ == "__main__":
    raise SystemExit(main())
