"""The driver every Beam job shares: tasks → fingerprints → forget / skip → run → vocab → summary → failure-rate gate.

A job describes its stage as a `ShardedStage`: the shards of its dataset, each with the fingerprint of everything
its rows depend on; the Beam graph over the pending ones; its vocab rows; and how its shards' stats add up. The
driver does the rest, the same way for every job:
1. forget the commit records of shards the dataset no longer has (all of them with --overwrite);
2. record the stage's config and models in the manifest;
3. skip the shards committed with the same fingerprint (with --retry-failed, only those without failure rows), run
   the Beam graph over the others;
4. commit the stage's vocab rows (if it has any);
5. add up the committed shards' stats into the summary, write it into the manifest;
6. fail (exit code 3, see job_main) when failure rows exceed runtime.max_failure_rate of the stage's inputs.

Waves: on the DirectRunner, which holds each barrier's input in memory, the pending shards run
`runtime.shards_per_run` at a time, one pipeline after another. Every other runner gets all pending shards in one
pipeline: it spills its shuffles to disk, and each pipeline start costs minutes of worker start-up.
"""
from __future__ import annotations

import abc
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Mapping, Protocol, Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from featurestore.gc import collect_garbage
from featurestore.manifest import DamagedManifestError, ModelRecord, read_manifest, scan_commits
from featurestore.manifest_rebuild import manifest_or_rebuilt
from featurestore.reader import StoreReader
from featurestore.writer import ShardWriter
from featurestore.writer_lock import WriterLock
from schemas.config import config_hash, to_dict

LOG = logging.getLogger(__name__)

# The runners that keep a pipeline's data in this process's memory (Beam's own class names). FnApiRunner is the
# in-process runner the DirectRunner runs (and plain `make` runs name, see beam_jobs.runners).
IN_MEMORY_RUNNERS = ("DirectRunner", "BundleBasedDirectRunner", "SwitchingDirectRunner", "TestDirectRunner",
                     "FnApiRunner")


class FailureRateExceeded(RuntimeError):
    """More dead letters than runtime.max_failure_rate allows; everything computed is committed regardless."""


class StageTask(Protocol):
    """One shard of a stage's work (extract-features: pipelines.sharding.ShardTask; proposals: ImageShardTask;
    pseudo-labels: LabelShardTask)."""

    shard: int
    fingerprint: str


@dataclass(frozen=True)
class StageTotals:
    """How a stage's per-shard stats add up into its summary, and what its failure rate is a share of."""

    counts: tuple[str, ...]  # integer counts, summed over shards ("failures" among them)
    breakdowns: tuple[str, ...]  # {key: count} dicts, merged over shards ("failures_by_kind" among them)
    inputs: str  # the count failure rows are a share of
    inputs_named: str  # what that count counts, for the gate's message


class ShardedStage(abc.ABC):
    """One Beam job's stage, as the driver runs it. `config` is the stage's config dataclass, with a `runtime`
    section (pipelines.runtime_section.RuntimeSection)."""

    name: str  # the store stage (featurestore.stages)
    totals: StageTotals

    def __init__(self, store: str, dim: int | None, config: Any, models: Mapping[str, ModelRecord],
                 tasks: Sequence[StageTask]):
        self.store = store
        self.dim = dim
        self.config = config
        self.models = dict(models)
        self.tasks = list(tasks)

    @abc.abstractmethod
    def build_pipeline(self, pipeline: beam.Pipeline, pending: list) -> beam.PCollection:
        """The Beam graph over `pending` tasks; returns the PCollection of each committed shard's stats."""

    @staticmethod
    def spread_tasks(pipeline: beam.Pipeline, pending: list) -> beam.PCollection:
        """The pending tasks as a PCollection, reshuffled so that a runner with several workers spreads them (Create
        alone would hand them all to one)."""
        return (pipeline
                | "PendingShards" >> beam.Create(pending, reshuffle=False)
                | "SpreadShards" >> beam.Reshuffle())

    def vocab(self) -> tuple[Mapping, str] | None:
        """The stage's vocab rows (columns of the `vocab` table) and their fingerprint, committed after the run;
        None for a stage without vocab rows."""
        return None

    def one_pipeline_reason(self) -> str | None:
        """Why every pending shard must run in one pipeline even on the DirectRunner; None when waves are fine."""
        return None

    def summary_extras(self, stats: list[dict]) -> dict:
        """Summary entries of this stage's own beyond the summed counts and merged breakdowns."""
        return {}


def runner_class_name(runner: str | None) -> str:
    """The runner class Beam resolves `--runner` to ("direct" → "DirectRunner"); no --runner is the DirectRunner."""
    if runner is None:
        return "DirectRunner"
    known = {path.rsplit(".", 1)[-1].lower(): path.rsplit(".", 1)[-1] for path in StandardOptions.ALL_KNOWN_RUNNERS}
    name = runner.rsplit(".", 1)[-1]
    return known.get(name.lower(), known.get(name.lower() + "runner", name))


def runs_in_waves(beam_args: Sequence[str]) -> bool:
    """True when the runner of `beam_args` holds pipeline data in memory (the DirectRunner, in any running mode)."""
    runner = PipelineOptions(list(beam_args)).view_as(StandardOptions).runner
    return runner_class_name(runner) in IN_MEMORY_RUNNERS


def shard_waves(pending: list, shards_per_run: int, in_waves: bool) -> list[list]:
    """The pending tasks cut into pipelines: runs of `shards_per_run` in waves (0 = all at once), else one."""
    if not pending:
        return []
    if not in_waves or shards_per_run <= 0:
        return [pending]
    return [pending[start:start + shards_per_run] for start in range(0, len(pending), shards_per_run)]


def summarise(totals: StageTotals, stats: list[dict], computed: int, wall_seconds: float) -> dict:
    """Totals over the stats of every shard of the stage (computed now or kept from an earlier run)."""
    counts: Counter = Counter()
    breakdowns: dict[str, Counter] = {name: Counter() for name in totals.breakdowns}
    seconds: Counter = Counter()
    for shard_stats in stats:
        counts.update({key: shard_stats[key] for key in totals.counts})
        for name, merged in breakdowns.items():
            merged.update(shard_stats[name])
        seconds.update(shard_stats["seconds"])
    return {"shards": len(stats), "shards_computed": computed, "shards_skipped": len(stats) - computed,
            **{key: counts[key] for key in totals.counts},
            **{name: dict(sorted(merged.items())) for name, merged in breakdowns.items()},
            "seconds": {step: round(value, 3) for step, value in sorted(seconds.items())},
            "wall_seconds": round(wall_seconds, 3)}


def check_failure_rate(summary: dict, totals: StageTotals, max_rate: float, store: str, stage: str) -> None:
    inputs = summary[totals.inputs]
    rate = summary["failures"] / max(inputs, 1)
    if rate > max_rate:
        kinds = ", ".join(f"{kind}: {count}" for kind, count in summary["failures_by_kind"].items())
        raise FailureRateExceeded(
            f"{summary['failures']} failure rows for {inputs} {totals.inputs_named} ({rate:.1%}) exceed "
            f"runtime.max_failure_rate = {max_rate:.1%} ({kinds}); every one is a row of the 'failures' table "
            f"of {store} (stage {stage}), e.g. python -m featurestore inspect {store}")


def shards_with_failures(store: str, stage: str) -> dict[int, int]:
    """shard → the number of failure rows `stage` committed with it (its commit records give the row counts)."""
    commits = StoreReader(store).table_commits("failures")
    return {c.shard: c.files["failures"].rows for c in commits if c.stage == stage and c.files["failures"].rows}


def retry_failed_tasks(stage: ShardedStage, pending: list) -> list:
    """The tasks of committed, current shards that have failure rows: --retry-failed recomputes them, since what
    failed (an image file, say) may have been fixed without changing anything a fingerprint covers."""
    failed = shards_with_failures(stage.store, stage.name)
    already = {task.shard for task in pending}
    retried = [task for task in stage.tasks if task.shard not in already and task.shard in failed]
    LOG.info("%s: --retry-failed: %d committed shards have failure rows, recomputing them: %s", stage.name,
             len(retried), ", ".join(f"{task.shard} ({failed[task.shard]} rows)" for task in retried) or "none")
    return retried


def _committed_stats(stage: ShardedStage, writer: ShardWriter) -> list[dict]:
    """The stats of every task's shard, which must now be committed with the task's fingerprint."""
    missing = [task.shard for task in stage.tasks if not writer.is_current(task.shard, task.fingerprint)]
    if missing:
        raise RuntimeError(f"shards {missing} of {stage.store} are not committed after the run of {stage.name}")
    reader = StoreReader(stage.store)
    return [reader.shard_stats(stage.name, task.shard) for task in stage.tasks]


def refuse_other_schema_version(store: str) -> None:
    """Raise SchemaVersionError (its message says how to proceed) when `store` exists with another schema version,
    before the driver changes anything in it: forgetting shards deletes commit records."""
    try:
        read_manifest(store)
    except FileNotFoundError:
        return  # a new store
    except DamagedManifestError:
        return  # rebuilt from the commit records once the driver holds the store's writer lock


def forget_damaged_records(writer: ShardWriter) -> list[str]:
    """Remove the stage's commit records that do not parse: their shards are not committed, and get recomputed."""
    damaged = scan_commits(writer.store, writer.stage).damaged
    for relative, problem in damaged.items():
        LOG.warning("%s; removing it", problem)
        writer.store.remove(relative)
    return sorted(damaged)


def damaged_kept_shards(stage: ShardedStage, writer: ShardWriter, kept: list) -> list:
    """The kept tasks whose committed files are not what their records say (missing, another size or checksum):
    their records are forgotten, so they are recomputed like any pending shard. Reads every kept file once."""
    started = time.perf_counter()
    damaged, read = [], 0
    for task in kept:
        record = writer.committed(task.shard)
        read += sum(entry.bytes for entry in record.files.values())
        problems = writer.damage(record)
        if problems:
            LOG.warning("%s: shard %d is damaged (%s): its record is dropped and the shard recomputed", stage.name,
                        task.shard, "; ".join(problems))
            damaged.append(task)
    if damaged:
        writer.forget_shards(keep={task.shard for task in stage.tasks} - {task.shard for task in damaged})
    LOG.info("%s: verified the files of %d kept shards (%.1f MB) in %.1f s: %d damaged", stage.name, len(kept),
             read / 1e6, time.perf_counter() - started, len(damaged))
    return damaged


def pending_tasks(stage: ShardedStage, writer: ShardWriter, retry_failed: bool) -> list:
    """The tasks to compute: those not committed with their fingerprint, those whose committed files are damaged,
    and with `retry_failed` the current ones with failure rows."""
    pending = [task for task in stage.tasks if not writer.is_current(task.shard, task.fingerprint)]
    computed = {task.shard for task in pending}
    pending += damaged_kept_shards(stage, writer, [task for task in stage.tasks if task.shard not in computed])
    if retry_failed:
        retried = retry_failed_tasks(stage, pending)
        # A retried shard keeps its fingerprint (what failed, an image file say, is not part of it), and a commit
        # with an unchanged fingerprint keeps the record it finds: its record goes first, so the new one is written.
        writer.forget_shards(keep={task.shard for task in stage.tasks} - {task.shard for task in retried})
        pending += retried
    return sorted(pending, key=lambda task: task.shard)


def run_sharded_stage(stage: ShardedStage, beam_args: Sequence[str], *, overwrite: bool = False,
                      retry_failed: bool = False, test_pipeline: beam.Pipeline | None = None,
                      after_commit: beam.DoFn | None = None) -> dict:
    """Run `stage` over its shards; returns its summary (also stored in the manifest).

    The whole run holds the store's writer lock (featurestore.writer_lock): a second job on the store refuses at
    its start. A damaged manifest is rebuilt from the commit records first; damaged records and shards whose files
    no longer match their records are recomputed. `retry_failed` also recomputes the current shards that have
    failure rows; the others stay untouched.

    `test_pipeline` runs every pending shard in that one pipeline. `after_commit` is applied to each committed
    shard's stats (tests use it to kill a job mid-run). Raises FailureRateExceeded after the summary is written.
    """
    runtime = stage.config.runtime
    refuse_other_schema_version(stage.store)
    with WriterLock(stage.store, f"{stage.name} job") as lock:
        started_at = time.time()
        manifest_or_rebuilt(stage.store)
        writer = ShardWriter(stage.store, stage.name, stage.dim)
        forget_damaged_records(writer)
        writer.forget_shards(keep=set() if overwrite else {task.shard for task in stage.tasks})
        writer.open_stage(to_dict(stage.config), config_hash(stage.config), stage.models)
        pending = pending_tasks(stage, writer, retry_failed)
        LOG.info("%s: %d shards, %d kept (committed with the same fingerprint), %d to compute", stage.name,
                 len(stage.tasks), len(stage.tasks) - len(pending), len(pending))
        started = time.perf_counter()
        _run_pipelines(stage, pending, beam_args, test_pipeline, after_commit, lock)
        vocab = stage.vocab()
        if vocab is not None:
            writer.commit_table("vocab", *vocab)
        stats = _committed_stats(stage, writer)
        summary = {**summarise(stage.totals, stats, len(pending), time.perf_counter() - started),
                   **stage.summary_extras(stats)}
        lock.check()
        writer.finish_stage(summary)
        # Files no record names that are older than this run: a killed earlier attempt's (this job holds the lock,
        # so no other job of ours is writing; this run's own attempts are all finished or named).
        leftovers = collect_garbage(stage.store, min_age_seconds=max(0.0, time.time() - started_at)).removed
        if leftovers:
            LOG.info("%s: removed %d files of interrupted earlier writes", stage.name, len(leftovers))
    LOG.info("summary: %s", json.dumps(summary, sort_keys=True))
    check_failure_rate(summary, stage.totals, runtime.max_failure_rate, stage.store, stage.name)
    return summary


def _run_pipelines(stage: ShardedStage, pending: list, beam_args: Sequence[str], test_pipeline, after_commit,
                   lock: WriterLock) -> None:
    """Run the Beam graph over `pending`: in waves on the DirectRunner, in one pipeline elsewhere."""
    reason = stage.one_pipeline_reason()
    in_waves = test_pipeline is None and reason is None and runs_in_waves(beam_args)
    if reason is not None and pending:
        LOG.info("%s: all %d pending shards run in one pipeline: %s", stage.name, len(pending), reason)
    waves = shard_waves(pending, stage.config.runtime.shards_per_run, in_waves)
    for number, wave in enumerate(waves, start=1):
        lock.check()
        LOG.info("%s: pipeline %d of %d: shards %s", stage.name, number, len(waves), [task.shard for task in wave])
        pipeline = test_pipeline or beam.Pipeline(options=PipelineOptions(list(beam_args)))
        committed = stage.build_pipeline(pipeline, wave)
        if after_commit is not None:
            _ = committed | "AfterCommit" >> beam.ParDo(after_commit)
        pipeline.run().wait_until_finish()
