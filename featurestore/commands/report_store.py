"""The store-level facts of the HTML report: each stage's provenance, its per-shard timings and throughput, and its
failure rows by kind with examples. Plain dicts, so the page and `report.json` show the same numbers."""
from __future__ import annotations

import datetime
from collections import Counter

from featurestore.reader import StoreReader
from featurestore.stages import EXTRACT_FEATURES, PROPOSALS, PSEUDO_LABELS
from schemas.tables import TABLES

# What each stage's throughput counts: the stats key of its items and what they are called.
THROUGHPUT_ITEMS = {PROPOSALS: ("images", "images"), EXTRACT_FEATURES: ("crops", "crops"),
                    PSEUDO_LABELS: ("regions", "pseudo boxes")}
RECALL_SIDES = ("base", "novel")
FAILURE_EXAMPLES = 3  # failure rows shown per kind


def _time(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def stage_provenance(reader: StoreReader) -> list[dict]:
    """Per stage of the manifest: config hash, models, code version, times, summary, and the resolved config."""
    stages = []
    for name, record in reader.manifest.stages.items():
        stages.append({
            "stage": name, "config_hash": record.config_hash, "code_version": record.code_version,
            "embedding_dim": record.embedding_dim, "started": _time(record.started_at),
            "finished": _time(record.finished_at), "shards": len(record.shards or {}),
            "models": {role: {"name": model.name, "path": model.path, "sha256": model.sha256,
                              "prompts": model.prompts} for role, model in sorted(record.models.items())},
            "summary": dict(record.summary or {}), "config": dict(record.config)})
    return stages


def stage_shards(reader: StoreReader) -> dict[str, list[int]]:
    """stage → its committed shard indices (stage-level tables such as vocab are not shards of a stage)."""
    found: dict[str, set[int]] = {name: set() for name in reader.manifest.stages}
    for table in TABLES:
        for commit in reader.table_commits(table):
            if commit.stage in found:
                found[commit.stage].add(commit.shard)
    return {stage: sorted(shards) for stage, shards in found.items()}


def stage_timings(reader: StoreReader) -> list[dict]:
    """Per stage: seconds per step for every shard (its committed `_stats`), totals, and items per busy second.

    Busy seconds are the sum of a shard's step timings (work done in its DoFns); the stage's wall time comes from
    the summary of its last run, which may have skipped shards committed earlier."""
    timings = []
    for stage, shards in stage_shards(reader).items():
        per_shard = []
        for shard in shards:
            try:
                stats = reader.shard_stats(stage, shard)
            except KeyError:  # a shard committed without stats (older writers): nothing to plot
                continue
            per_shard.append({"shard": shard, "seconds": stats.get("seconds", {}), "stats": stats})
        if not per_shard:
            continue
        steps = sorted({step for shard in per_shard for step in shard["seconds"]})
        item_key, items_named = THROUGHPUT_ITEMS.get(stage, ("", "items"))
        rows = []
        for shard in per_shard:
            busy = sum(shard["seconds"].values())
            items = shard["stats"].get(item_key, 0)
            rows.append({"shard": shard["shard"], "seconds": {s: shard["seconds"].get(s, 0.0) for s in steps},
                         "busy_seconds": busy, "items": items, "items_per_second": items / busy if busy else None})
        busy = sum(r["busy_seconds"] for r in rows)
        items = sum(r["items"] for r in rows)
        summary = reader.manifest.stages[stage].summary or {}
        timings.append({"stage": stage, "steps": steps, "items_named": items_named, "shards": rows,
                        "step_totals": {s: sum(r["seconds"][s] for r in rows) for s in steps},
                        "busy_seconds": busy, "items": items, "items_per_second": items / busy if busy else None,
                        "wall_seconds": summary.get("wall_seconds")})
    return timings


def failures_by_kind(reader: StoreReader, examples: int = FAILURE_EXAMPLES) -> list[dict]:
    """(stage, kind) → count and the first `examples` rows, most frequent first."""
    counts: Counter = Counter()
    shown: dict[tuple[str, str], list[dict]] = {}
    if not reader.table_commits("failures"):
        return []
    for batch in reader.stream("failures", ["stage", "kind", "image_id", "region_id", "file_name", "message"]):
        for row in batch.to_pylist():
            key = (row["stage"], row["kind"])
            counts[key] += 1
            if len(shown.setdefault(key, [])) < examples:
                shown[key].append(row)
    return [{"stage": stage, "kind": kind, "count": count, "examples": shown[(stage, kind)]}
            for (stage, kind), count in sorted(counts.items(), key=lambda item: (-item[1], item[0]))]


def proposal_recall(reader: StoreReader) -> dict | None:
    """The average recall the proposals stage measured on its last run (beam_jobs/proposals.py), or None:
    {"sides": {"base" | "novel": {"AR@k", "R50@k", "num_gt"}}, "max_dets": [k, ...], "images": {side: count},
    "split", "novel_annotations", "proposals_per_image"}."""
    record = reader.manifest.stages.get(PROPOSALS)
    summary = dict(record.summary or {}) if record else {}
    recall = summary.get("recall")
    if not recall:
        return None
    sides = {side: recall[side] for side in RECALL_SIDES if side in recall}
    max_dets = sorted({int(key.split("@")[1]) for metrics in sides.values() for key in metrics if "@" in key})
    images = summary.get("images") or 0
    return {"sides": sides, "max_dets": max_dets, "images": recall.get("images", {}), "split": recall.get("split"),
            "novel_annotations": recall.get("novel_annotations"),
            "proposals_per_image": summary.get("proposals", 0) / images if images else None}
