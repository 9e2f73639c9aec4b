"""Read a store: complete shards only, every file checked against its commit record, streamed rows, per-shard zips,
and lookup of one image by id."""
from __future__ import annotations

import json
import logging
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from featurestore import layout
from featurestore.integrity import DamagedFileError, damaged_file_message, repair_command, verified
from featurestore.manifest import CommitRecord, FileEntry, Manifest, read_commit, read_commits, read_manifest
from featurestore.storage import StoreLocation
from featurestore.wds import read_wds_bytes
from schemas.tables import JOIN_KEYS, TABLES, check_schema_version

LOG = logging.getLogger(__name__)
# Files read, verified and decoded ahead of the one being streamed: pyarrow.dataset's scan reads 4 files ahead too
# (Scanner's fragment_readahead default), and bench/store.py measures the reader against that scan. With 2 the
# reader kept 0.81 of the scan's rows/s on an idle 2-core machine (AMD EPYC, bench/PERFORMANCE.md); memory holds at
# most 5 decoded files.
STREAM_READAHEAD = 4


class ShardReplacedError(RuntimeError):
    """A shard was committed again after this reader listed the store, and the file it knew is gone."""


class StoreReader:
    """Read-only view of the committed shards of a store: a local folder or an object-store URL (`s3://…`).

    Only files named by commit records are read; files of an interrupted or superseded write are never opened.
    Each file's bytes are read whole and checked against its record (size and checksum, featurestore.integrity)
    before they are parsed, so a damaged file is refused (DamagedFileError, naming the file and the command that
    repairs it), never read as changed values. `verify=False` skips the check (benchmarks measure its cost).
    """

    def __init__(self, root: str | Path, verify: bool = True):
        self.store = StoreLocation(root)
        self.root = self.store.root  # a Path for a local folder, the URL of an object store
        self.verify = verify
        self.manifest: Manifest = read_manifest(self.store)  # refuses another schema version
        self.commits: list[CommitRecord] = read_commits(self.store)
        self._named = {entry.path: (record, entry) for record in self.commits for entry in record.files.values()}
        warn_unrecorded_shards(self.manifest, self.commits, self.store)

    # -- what is there ------------------------------------------------------------------------------------
    def table_commits(self, table: str) -> list[CommitRecord]:
        if table not in TABLES:
            raise KeyError(f"unknown table {table!r}; tables are {sorted(TABLES)}")
        return [c for c in self.commits if table in c.files]

    def shards(self, table: str = "regions") -> list[int]:
        """Shard indices that hold `table` (sharded tables only; stage tables are shard 0)."""
        return sorted({c.shard for c in self.table_commits(table)})

    def files(self, table: str) -> list[Path | str]:
        """Committed files of `table`, in stage and shard order: Paths in a local store, URLs in an object store."""
        return [self.store.path(c.files[table].path) for c in self.table_commits(table)]

    def shard_stats(self, stage: str, shard: int) -> dict:
        """The counts and per-step timings `stage` committed with `shard` (its `_stats` file)."""
        record = next((c for c in self.commits if c.stage == stage and c.shard == shard), None)
        if record is None or "stats" not in record.files:
            raise KeyError(f"shard {shard} of stage {stage} has no committed stats in {self.root}")
        return json.loads(self.file_bytes(record.files["stats"].path))

    # -- reading ------------------------------------------------------------------------------------------
    def file_bytes(self, path: Path | str) -> bytes:
        """The bytes of one committed file (named as `files` names it, or store-relative), checked against its
        commit record unless the reader was opened with verify=False."""
        relative = self.store.relative(path)
        if relative not in self._named:
            raise KeyError(f"{path} is named by no commit record of {self.root}; readers open committed files only")
        record, entry = self._named[relative]
        where = str(self.store.path(relative))
        try:
            data = self.store.read_bytes(relative)
        except FileNotFoundError as error:
            self._refuse_missing(record, entry, where, error)
        return verified(data, entry, record, where) if self.verify else data

    def _refuse_missing(self, record: CommitRecord, entry: FileEntry, where: str, error: Exception):
        """A file a record named is gone: either its shard was committed again since this reader listed the store
        (the re-commit removed the old files), or the store lost it."""
        relative = layout.commit_path(record.stage, record.shard)
        try:
            current = read_commit(self.store, relative) if self.store.is_file(relative) else None
        except (ValueError, RuntimeError):
            current = None
        if current is not None and current.committed_at != record.committed_at:
            raise ShardReplacedError(
                f"shard {record.shard} of stage {record.stage} was committed again after this reader listed "
                f"{self.root} and its old file {where} is gone; open the store again") from error
        raise DamagedFileError(damaged_file_message(where, record, "the file is missing")) from error

    def _open(self, path: Path | str) -> pq.ParquetFile:
        return _parquet(self.file_bytes(path), path)

    def schema(self, table: str) -> pa.Schema:
        """The Arrow schema of `table`, from its first committed file."""
        commits = self.table_commits(table)
        if not commits:
            raise KeyError(f"table {table!r} has no committed file in {self.root}")
        return self._open(commits[0].files[table].path).schema_arrow

    def read_file(self, path: Path | str, columns: Sequence[str] | None = None, filters=None) -> pa.Table:
        """One file of the store, named as `files` names it (or store-relative)."""
        data = self.file_bytes(path)
        handle = _parquet(data, path)  # checks the schema version
        columns = list(columns) if columns else None
        if filters is None:
            return handle.read(columns=columns)
        return pq.read_table(pa.BufferReader(data), columns=columns, filters=filters)

    def read_shard(self, table: str, shard: int, columns: Sequence[str] | None = None) -> pa.Table:
        """All rows of `table` in one shard (several files when several stages wrote it, e.g. failures)."""
        parts = [self.read_file(c.files[table].path, columns)
                 for c in self.table_commits(table) if c.shard == shard]
        if not parts:
            raise KeyError(f"shard {shard} of table {table!r} is not committed in {self.root}")
        return pa.concat_tables(parts) if len(parts) > 1 else parts[0]

    def read_table(self, table: str, columns: Sequence[str] | None = None) -> pa.Table:
        """The whole table in memory; prefer `stream` for anything large."""
        parts = [self.read_file(path, columns) for path in self.files(table)]
        if not parts:
            raise KeyError(f"table {table!r} has no committed file in {self.root}")
        return pa.concat_tables(parts)

    def stream(self, table: str, columns: Sequence[str] | None = None, batch_size: int = 4096,
               shards: Sequence[int] | None = None, readahead: int = STREAM_READAHEAD) -> Iterator[pa.RecordBatch]:
        """Record batches of `table` (at most `batch_size` rows each, never across files), file after file in
        stage and shard order.

        While the caller works on one file's batches, the next `readahead` files are read, verified and decoded on
        other threads (file reads, XXH3 and Parquet decoding release the GIL), as pyarrow.dataset's own scan reads
        ahead: memory is bounded by `readahead` + 1 decoded files. A damaged file is refused when its turn comes,
        after the batches of every file before it.
        """
        wanted = set(shards) if shards is not None else None
        paths = [c.files[table].path for c in self.table_commits(table) if wanted is None or c.shard in wanted]
        columns = list(columns) if columns else None
        with ThreadPoolExecutor(max_workers=max(readahead, 1), thread_name_prefix="store-readahead") as pool:
            pending: deque = deque()
            try:
                for path in paths:
                    pending.append(pool.submit(self._decoded, path, columns))
                    if len(pending) > readahead:
                        yield from pending.popleft().result().to_batches(max_chunksize=batch_size)
                while pending:
                    yield from pending.popleft().result().to_batches(max_chunksize=batch_size)
            finally:
                for future in pending:  # the caller stopped early or a file was refused: read no further
                    future.cancel()

    def _decoded(self, path: str, columns: list[str] | None) -> pa.Table:
        """One committed file, read once, verified over those bytes and decoded from them; its row groups joined
        here, off the caller's thread, so a batch holds up to `batch_size` rows of the file, not one row group's
        (each batch costs its consumer a fixed amount of Python: Regions.from_arrow's conversions)."""
        return self._open(path).read(columns=columns, use_threads=True).combine_chunks()

    def rows(self, table: str, columns: Sequence[str] | None = None) -> Iterator[dict]:
        for batch in self.stream(table, columns):
            yield from batch.to_pylist()

    def zip_shard(self, shard: int, tables: Sequence[str] = ("regions", "pseudo_labels")) -> pa.Table:
        """Columns of several tables of one shard side by side, matched on (image_id, region_id).

        The first table gives the rows; the others are left-joined (null where a row has no match).
        Columns of later tables are prefixed with their table name when names clash.
        """
        base = self.read_shard(tables[0], shard)
        for other_name in tables[1:]:
            other = self.read_shard(other_name, shard)
            base = _left_zip(base, other, other_name)
        return base

    def find_image(self, image_id: int, tables: Sequence[str] = ("images", "regions", "pseudo_labels")
                   ) -> dict[str, pa.Table]:
        """Rows of one image in each table, reading only shards whose id range covers it."""
        found: dict[str, pa.Table] = {}
        for table in tables:
            parts = [self.read_file(c.files[table].path, filters=[("image_id", "=", image_id)])
                     for c in self.table_commits(table) if c.covers_image(image_id)]
            parts = [p for p in parts if p.num_rows]
            if parts:
                found[table] = pa.concat_tables(parts)
        if not found:
            raise KeyError(f"image id {image_id} is in no committed shard of {self.root}")
        return found

    def wds_samples(self, shards: Sequence[int] | None = None) -> Iterator[dict]:
        wanted = set(shards) if shards is not None else None
        for commit in self.commits:
            if "wds" in commit.files and (wanted is None or commit.shard in wanted):
                path = commit.files["wds"].path
                yield from read_wds_bytes(self.file_bytes(path), str(self.store.path(path)))


def _parquet(data: bytes, path: Path | str) -> pq.ParquetFile:
    """A Parquet file over bytes already read (and checked), refused when of another schema version."""
    handle = pq.ParquetFile(pa.BufferReader(data))
    check_schema_version(handle.schema_arrow.metadata, str(path))
    return handle


def warn_unrecorded_shards(manifest: Manifest, commits: list[CommitRecord], store: StoreLocation) -> list[str]:
    """Warn (and return the warnings) for each stage whose manifest shard list names shards without a commit record:
    readers see only the others, so a deleted record would otherwise shrink a dataset in silence."""
    warnings = []
    for stage, record in sorted(manifest.stages.items()):
        committed = {layout.shard_name(c.shard) for c in commits if c.stage == stage}
        missing = sorted(set(record.shards or {}) - committed)
        if missing:
            warnings.append(f"{store.path(layout.MANIFEST)} lists {len(missing)} shard(s) of stage {stage} that have "
                            f"no commit record ({', '.join(missing[:10])}{', …' if len(missing) > 10 else ''}): "
                            f"readers see the other {len(committed)} shard(s) only; rerun {repair_command(stage)} "
                            "with the same config and --store to recompute them")
    for warning in warnings:
        LOG.warning("%s", warning)
    return warnings


def _keys(table: pa.Table) -> np.ndarray:
    """(image_id, region_id) packed into one int64 per row for matching (region_id < 2**31)."""
    image = table.column("image_id").to_numpy().astype(np.int64)
    region = table.column("region_id").to_numpy().astype(np.int64)
    return (image << 32) | region


def _left_zip(left: pa.Table, right: pa.Table, right_name: str) -> pa.Table:
    left_keys, right_keys = _keys(left), _keys(right)
    order = np.argsort(right_keys, kind="stable")
    position = np.searchsorted(right_keys[order], left_keys)
    position = np.minimum(position, max(len(order) - 1, 0))
    matched = (len(order) > 0) & (right_keys[order][position] == left_keys) if len(order) else \
        np.zeros(len(left_keys), dtype=bool)
    take = pa.array(np.where(matched, order[position] if len(order) else 0, 0), mask=~matched)
    picked = right.take(take)
    out = left
    for name in picked.column_names:
        if name in JOIN_KEYS:
            continue
        out = out.append_column(f"{right_name}.{name}" if name in out.column_names else name, picked.column(name))
    return out
