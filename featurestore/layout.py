"""Where each file of a store lives. One place for every path rule, so writer, reader and tools agree.

STORE/manifest.json                 schema version; per stage: config, hash, models, code version
STORE/_commits/<stage>/<shard>.json commit record of one shard of one stage (written last: the commit point)
STORE/<table>/<shard>.parquet       tables owned by one stage (images, regions, pseudo_labels, vocab)
STORE/failures/<stage>-<shard>.parquet  dead letters; every stage writes its own
STORE/wds/<shard>.tar               WebDataset twin of the extract-features shard
STORE/_stats/<stage>-<shard>.json   counts and per-step timings

On an object store (no rename) each data file goes to a key unique to its write attempt,
`regions/<shard>-<attempt>.parquet` (`attempt_path`); the commit record names the one that counts.
"""
from __future__ import annotations

import uuid
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


def new_attempt() -> str:
    """A fresh id for one write attempt of one shard (12 hex digits: unique enough among a shard's retries)."""
    return uuid.uuid4().hex[:12]


def attempt_path(path: str, attempt: str) -> str:
    """`regions/00042.parquet` → `regions/00042-<attempt>.parquet`: one attempt's own key on an object store."""
    folder, _, name = path.rpartition("/")
    stem, dot, suffix = name.partition(".")
    return f"{folder}/{stem}-{attempt}{dot}{suffix}" if folder else f"{stem}-{attempt}{dot}{suffix}"
