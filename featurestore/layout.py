"""Where each file of a store lives. One place for every path rule, so writer, reader and tools agree.

STORE/manifest.json                 schema version; per stage: config, hash, models, code version
STORE/_commits/<stage>/<shard>.json commit record of one shard of one stage (written last: the commit point)
STORE/<table>/<shard>.parquet       tables owned by one stage (images, regions, pseudo_labels, vocab)
STORE/failures/<stage>-<shard>.parquet  dead letters; every stage writes its own
STORE/wds/<shard>.tar               WebDataset twin of the extract-features shard
STORE/_stats/<stage>-<shard>.json   counts and per-step timings
"""
from __future__ import annotations

from pathlib import Path

MANIFEST = "manifest.json"
COMMITS = "_commits"
STATS = "_stats"
WDS = "wds"
TMP_PREFIX = ".tmp-"
SHARED_TABLES = ("failures",)  # written by several stages: the stage is part of the file name


def shard_name(shard: int) -> str:
    """Zero-padded, sortable, without dots (img2dataset / webdataset convention)."""
    if shard < 0:
        raise ValueError(f"shard index must be >= 0, got {shard}")
    return f"{shard:05d}"


def table_path(table: str, stage: str, shard: int) -> str:
    """Store-relative path of one table file."""
    stem = f"{stage}-{shard_name(shard)}" if table in SHARED_TABLES else shard_name(shard)
    return f"{table}/{stem}.parquet"


def wds_path(shard: int) -> str:
    return f"{WDS}/{shard_name(shard)}.tar"


def stats_path(stage: str, shard: int) -> str:
    return f"{STATS}/{stage}-{shard_name(shard)}.json"


def commit_path(stage: str, shard: int) -> str:
    return f"{COMMITS}/{stage}/{shard_name(shard)}.json"


def is_temporary(path: Path) -> bool:
    return path.name.startswith(TMP_PREFIX)
