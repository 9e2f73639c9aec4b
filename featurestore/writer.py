"""Commit one shard of several tables at once, atomically: every file under a name unique to the attempt, then the
commit record that names them, last (local folder or object store alike: featurestore.storage); a re-commit's record
replaces the old one whole, and the old files go after it."""
from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path
from typing import Mapping

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from featurestore import layout
from featurestore.arrow import build_table, sort_by_keys
from featurestore.integrity import content_checksum, mismatch
from featurestore.manifest import (CommitRecord, DamagedStoreError, FileEntry, ModelRecord, StageRecord, dump_json,
                                   read_commit, read_commits, read_manifest, update_stage)
from featurestore.stages import EXTRACT_FEATURES
from featurestore.storage import StoreLocation
from featurestore.wds import wds_shard_bytes
from schemas.tables import EMBEDDING_COLUMNS, SchemaVersionError
from schemas.version import code_version

# Row groups small enough that a lookup by image id decodes little, large enough to stream well. A lookup decodes
# its whole group; on a 2304-row D=512 regions shard (one thread): 4096-row groups 12.7 ms, 1024-row groups 6.9 ms,
# streaming 180k vs 167k rows/s. `bench/store.py` measures the store-level effect.
ROW_GROUP_SIZE = 1024
WDS_STAGE = EXTRACT_FEATURES  # the stage whose shards also go out as WebDataset tars
LOG = logging.getLogger(__name__)


class ConcurrentCommitError(RuntimeError):
    """Another writer committed the same shard with another fingerprint while this attempt was writing it."""


class ShardWriter:
    """Writes the shards of one stage of one store (a local folder or an object-store URL).

    Safe to use from many processes at once as long as each shard is written by one of them at a time (Beam runs
    each shard's DoFn call once per successful bundle). A retried or speculative attempt of a shard already
    committed with the same fingerprint leaves the committed record and files alone.
    """

    def __init__(self, root: str | Path, stage: str, dim: int | None):
        self.store = StoreLocation(root)
        self.root = self.store.root  # a Path for a local folder, the URL of an object store
        self.stage = stage
        self.dim = dim

    # -- stage-level -------------------------------------------------------------------------------------
    def open_stage(self, config: Mapping, config_hash: str, models: Mapping[str, ModelRecord] | None = None) -> None:
        """Record the stage's provenance in manifest.json; called once by the driver before any shard."""
        update_stage(self.store, self.stage, config=config, config_hash=config_hash, models=dict(models or {}),
                     code_version=code_version(), embedding_dim=self.dim, started_at=time.time())

    def finish_stage(self, summary: dict | None = None) -> None:
        """Write the consolidated shard list (and a run summary) into manifest.json."""
        shards = {layout.shard_name(r.shard): r.fingerprint for r in read_commits(self.store, self.stage)}
        update_stage(self.store, self.stage, shards=shards, finished_at=time.time(), summary=summary or {})

    def provenance(self) -> dict:
        record = read_manifest(self.store).stages.get(self.stage, StageRecord())
        return {"stage": self.stage, "config_hash": record.config_hash,
                "models": {role: model.to_json() for role, model in record.models.items()},
                "code_version": record.code_version}

    # -- shards ------------------------------------------------------------------------------------------
    def committed(self, shard: int) -> CommitRecord | None:
        relative = layout.commit_path(self.stage, shard)
        if not self.store.is_file(relative):
            return None
        return read_commit(self.store, relative)

    def forget_shards(self, keep: set[int]) -> list[int]:
        """Remove the commit records of this stage's shards not in `keep`, so readers stop seeing them, then the
        files those records named.

        Used for `--overwrite` (keep nothing) and when the dataset now has fewer shards than a previous run.
        """
        forgotten = []
        # By file name, without parsing: a record of any age or state can be forgotten.
        for relative in self.store.files_under(f"{layout.COMMITS}/{self.stage}"):
            stem = relative.rsplit("/", 1)[-1].removesuffix(".json")
            if relative.endswith(".json") and stem.isdigit() and int(stem) not in keep:
                named = _named_files(self.store, relative)
                self.store.remove(relative)
                self.store.remove_all(named)
                forgotten.append(int(stem))
        return forgotten

    def is_current(self, shard: int, fingerprint: str) -> bool:
        """True when the shard is committed with this exact fingerprint (resume skips it)."""
        record = self.committed(shard)
        return record is not None and record.fingerprint == fingerprint

    def damage(self, record: CommitRecord) -> list[str]:
        """What is wrong with the files `record` names (missing, another size or checksum); [] when all are intact.
        Reads every byte of them once."""
        problems = []
        for name, entry in sorted(record.files.items()):
            try:
                data = self.store.read_bytes(entry.path)
            except FileNotFoundError:
                problems.append(f"{entry.path} is missing")
                continue
            reason = mismatch(data, entry)
            if reason is not None:
                problems.append(f"{entry.path}: {reason}")
        return problems

    def commit(self, shard: int, tables: Mapping[str, Mapping | pa.Table], fingerprint: str,
               stats: dict | None = None, with_wds: bool | None = None) -> CommitRecord:
        """Write every table of this shard, then its commit record, last.

        A crash before the record leaves the shard invisible to readers (`validate` lists the orphan files, `gc`
        removes them); a rerun commits it. When the shard is already committed with this fingerprint (a retried
        bundle), that record stands and is returned.
        """
        provenance = self.provenance()
        built = {name: sort_by_keys(build_table(name, cols, self.dim, provenance)) for name, cols in tables.items()}
        encoded = _encode_shard(self.stage, shard, built, stats, with_wds)
        existing = self.committed(shard)
        if existing is not None and existing.fingerprint == fingerprint:
            LOG.info("shard %05d of %s is already committed with this fingerprint; this attempt keeps it",
                     shard, self.stage)
            return existing
        attempt = layout.new_attempt()
        placed = {name: (self.store.placement(path, attempt), data, rows)
                  for name, (path, data, rows) in encoded.items()}
        self.store.put_all({path: data for path, data, _ in placed.values()})
        files = {name: _file_entry(path, rows, data) for name, (path, data, rows) in placed.items()}
        id_min, id_max = _image_id_range(built)
        record = CommitRecord(stage=self.stage, shard=shard, fingerprint=fingerprint, files=files,
                              image_id_min=id_min, image_id_max=id_max)
        return self._publish_record(record, existing)

    def _publish_record(self, record: CommitRecord, existing: CommitRecord | None) -> CommitRecord:
        """Make `record` the shard's commit record: its files are in place under names of their own. `existing` is
        the record found before the files were written (None, or one of another fingerprint, which this one
        replaces: the one atomic switch of a re-commit; until it, readers see the old shard whole, after it the
        new one, and the old files are removed last)."""
        relative = layout.commit_path(record.stage, record.shard)
        data = dump_json(record.to_json())
        mine = [entry.path for entry in record.files.values()]
        if existing is not None:
            self.store.write(relative, data)
        elif not self.store.create(relative, data):
            # Another attempt committed the shard while this one wrote its files (attempt-unique keys: nothing of
            # the winner was touched). Ours are orphans and go; the winner's record stands.
            self.store.remove_all(mine)
            winner = read_commit(self.store, relative)
            if winner.fingerprint != record.fingerprint:
                raise ConcurrentCommitError(
                    f"shard {record.shard} of stage {record.stage} in {self.store} was committed with fingerprint "
                    f"{winner.fingerprint} while this attempt wrote fingerprint {record.fingerprint}: two jobs with "
                    f"different inputs or configs are writing the same store")
            return winner
        if existing is not None:
            self.store.remove_all([entry.path for entry in existing.files.values() if entry.path not in mine])
        return record

    def commit_table(self, table: str, columns: Mapping | pa.Table, fingerprint: str = "") -> CommitRecord:
        """A stage-level table that is not sharded by images (e.g. `vocab`), as shard 0 of its own record.
        Written by the driver only; a new version replaces the old one."""
        return ShardWriter(self.store, f"{self.stage}.{table}", self.dim)._commit_single(
            table, columns, fingerprint, self.provenance())

    def _commit_single(self, table: str, columns, fingerprint: str, provenance: dict) -> CommitRecord:
        built = build_table(table, columns, self.dim, provenance)
        data = _parquet_bytes(built, row_group_size=None, use_dictionary=True)
        path = self.store.placement(f"{table}/{self.stage.split('.')[0]}.parquet", layout.new_attempt())
        self.store.put_all({path: data})
        entry = _file_entry(path, built.num_rows, data)
        record = CommitRecord(stage=self.stage, shard=0, fingerprint=fingerprint, files={table: entry})
        return self._publish_record(record, self.committed(0))


def _file_entry(path: str, rows: int | None, data: bytes) -> FileEntry:
    """What a commit record says about one file: where, how many rows, its size and both digests."""
    return FileEntry(path=path, rows=rows, bytes=len(data), sha256=hashlib.sha256(data).hexdigest(),
                     checksum=content_checksum(data))


def _named_files(store: StoreLocation, relative: str) -> list[str]:
    """The files a commit record names; [] when the record cannot be read (it is removed all the same)."""
    try:
        return [entry.path for entry in read_commit(store, relative).files.values()]
    except (ValueError, KeyError, SchemaVersionError, DamagedStoreError):
        return []


def _parquet_bytes(table: pa.Table, row_group_size: int | None, use_dictionary) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, row_group_size=row_group_size, compression="zstd", use_dictionary=use_dictionary)
    return sink.getvalue().to_pybytes()


def _encode_shard(stage: str, shard: int, built: Mapping[str, pa.Table], stats: dict | None,
                  with_wds: bool | None) -> dict[str, tuple[str, bytes, int | None]]:
    """name → (store-relative path, file bytes, rows) of every file of one shard: its tables, its WebDataset twin
    (extract-features), its stats."""
    encoded = {name: (layout.table_path(name, stage, shard),
                      _parquet_bytes(table, ROW_GROUP_SIZE, _dictionary_columns(name, table)), table.num_rows)
               for name, table in built.items()}
    if with_wds if with_wds is not None else stage == WDS_STAGE and "regions" in built:
        encoded["wds"] = (layout.wds_path(shard), wds_shard_bytes(built.get("images"), built["regions"]),
                          built["images"].num_rows if "images" in built else None)
    if stats is not None:
        encoded["stats"] = (layout.stats_path(stage, shard), dump_json(stats), None)
    return encoded


def _dictionary_columns(name: str, table: pa.Table) -> list[str]:
    """Every column but the embeddings: float16 values almost never repeat, so a dictionary overflows and falls
    back to plain pages; the same D=512 shard streamed 3.5x slower with it (50k vs 180k rows/s) and was 5% bigger."""
    return [c for c in table.column_names if c not in EMBEDDING_COLUMNS.get(name, ())]


def _image_id_range(tables: Mapping[str, pa.Table]) -> tuple[int | None, int | None]:
    lows, highs = [], []
    for table in tables.values():
        if "image_id" in table.column_names and table.num_rows:
            bounds = pc.min_max(table.column("image_id"))
            if bounds["min"].is_valid:
                lows.append(bounds["min"].as_py())
                highs.append(bounds["max"].as_py())
    return (min(lows), max(highs)) if lows else (None, None)
