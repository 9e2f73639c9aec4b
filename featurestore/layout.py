"""Where each file of a store lives. One place for every path rule, so writer, reader and tools agree.

STORE/manifest.json                            schema version; per stage: config, hash, models, code version
STORE/_writer.lock                             who writes the store now (featurestore.writer_lock; local folders)
STORE/_lock/<generation>.json                  the same on an object store: a lease, one create-only object per holder
STORE/_commits/<stage>/<shard>.json            commit record of one shard of one stage (written last: the commit point)
STORE/<table>/<shard>-<attempt>.parquet        tables owned by one stage (images, regions, pseudo_labels, vocab)
STORE/failures/<stage>-<shard>-<attempt>.parquet  dead letters; every stage writes its own
STORE/wds/<shard>-<attempt>.tar                WebDataset twin of the extract-features shard
STORE/_stats/<stage>-<shard>-<attempt>.json    counts and per-step timings

Every data file goes to a name unique to its write attempt (`attempt_path`, 12 hex digits): a re-commit or a
retried attempt never overwrites a file a commit record names, and the record names the files that count. The
shard's own name (`table_path`, `wds_path`, `stats_path`) is the stem of those names.
"""
from __future__ import annotations

import uuid
from pathlib import Path

MANIFEST = "manifest.json"
WRITER_LOCK = "_writer.lock"
LEASES = "_lock"
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
    """`regions/00042.parquet` → `regions/00042-<attempt>.parquet`: one write attempt's own file."""
    folder, _, name = path.rpartition("/")
    stem, dot, suffix = name.partition(".")
    return f"{folder}/{stem}-{attempt}{dot}{suffix}" if folder else f"{stem}-{attempt}{dot}{suffix}"
