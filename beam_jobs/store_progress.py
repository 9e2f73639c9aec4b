"""Driver-side bookkeeping around the pipeline: forget stale shards, summarise the run, enforce the failure rate."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from featurestore import layout
from pipelines.sharding import ShardTask


class FailureRateExceeded(RuntimeError):
    """More dead letters than runtime.max_failure_rate allows; everything computed is committed regardless."""


def forget_shards(store: str, stage: str, keep: set[int]) -> list[int]:
    """Remove the commit records of `stage` shards not in `keep`, so readers stop seeing them.

    Used for `--overwrite` (keep nothing) and when the dataset now has fewer shards than a previous run.
    The data files stay until the shard is recommitted; without a record they are invisible.
    """
    forgotten = []
    folder = Path(store) / layout.COMMITS / stage
    for record in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        if record.stem.isdigit() and int(record.stem) not in keep:
            record.unlink()
            forgotten.append(int(record.stem))
    return forgotten


def summarise_store(store: str, stage: str, tasks: list[ShardTask], computed: int, wall_seconds: float) -> dict:
    """Totals over the `_stats` of every shard of this run (computed now or earlier)."""
    totals: Counter = Counter()
    failures: Counter = Counter()
    sources: Counter = Counter()
    seconds: Counter = Counter()
    for task in tasks:
        path = Path(store) / layout.stats_path(stage, task.shard)
        if not path.is_file():
            raise RuntimeError(f"shard {task.shard} of {store} has no stats after the run: it was not committed")
        stats = json.loads(path.read_text())
        totals.update({k: stats[k] for k in ("input_images", "images", "regions", "crops", "failures")})
        failures.update(stats["failures_by_kind"])
        sources.update(stats["regions_by_source"])
        seconds.update(stats["seconds"])
    busy = sum(seconds.values())
    return {
        "shards": len(tasks), "shards_computed": computed, "shards_skipped": len(tasks) - computed,
        **{k: totals[k] for k in ("input_images", "images", "regions", "crops", "failures")},
        "regions_by_source": dict(sorted(sources.items())), "failures_by_kind": dict(sorted(failures.items())),
        "seconds": {k: round(v, 3) for k, v in sorted(seconds.items())},
        "crops_per_second": round(totals["crops"] / busy, 2) if busy else 0.0,
        "wall_seconds": round(wall_seconds, 3),
    }


def check_failure_rate(summary: dict, max_rate: float, store: str) -> None:
    images = max(summary["input_images"], 1)
    rate = summary["failures"] / images
    if rate > max_rate:
        kinds = ", ".join(f"{k}: {v}" for k, v in summary["failures_by_kind"].items())
        raise FailureRateExceeded(
            f"{summary['failures']} failure rows for {summary['input_images']} input images ({rate:.1%}) exceed "
            f"runtime.max_failure_rate = {max_rate:.1%} ({kinds}); every one is a row of the 'failures' table "
            f"of {store} (stage extract_features), e.g. python -m featurestore inspect {store}")
