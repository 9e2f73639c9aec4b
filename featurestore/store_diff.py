"""Compare two stores table by table: do they hold the same rows, keys, embeddings and labels?

Rows are matched on each table's key (proposals: image_id, rank; images: image_id; regions and pseudo_labels:
image_id, region_id; vocab: kind, name; failures: stage, image_id, region_id, kind); a key that occurs twice is matched by occurrence, in the
order the writer stored the rows. A failure whose message differs (it names files, so another image root changes it)
is a differing column, not two different failures.
Matched rows are compared column by column: embeddings by cosine (equal when cos >= 1 - cos_tol, since float16
storage and another device move a vector a little without turning it), other floats within an absolute tolerance,
everything else exactly. Sharded tables are compared one shard at a time, so memory stays bounded by a shard;
both stores are expected to cut the same images into the same shards (a store's layout is part of what it is).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from featurestore.reader import StoreReader
from schemas.tables import EMBEDDING_COLUMNS, TABLES

KEYS = {"proposals": ("image_id", "rank"), "images": ("image_id",), "regions": ("image_id", "region_id"), "pseudo_labels": ("image_id", "region_id"),
        "vocab": ("kind", "name"), "failures": ("stage", "image_id", "region_id", "kind")}
STAGE_TABLES = ("vocab", "failures")  # written per stage, not cut into image shards the same way
EXAMPLES = 5  # keys or values listed per difference


@dataclass
class ColumnDiff:
    differing: int = 0
    examples: list = field(default_factory=list)  # (key, value in A, value in B)


@dataclass
class EmbeddingDiff:
    compared: int = 0
    below: int = 0  # rows whose cosine is below 1 - cos_tol (or null in one store only)
    min_cos: float = 1.0
    examples: list = field(default_factory=list)  # (key, cosine)


@dataclass
class TableDiff:
    table: str
    rows_a: int = 0
    rows_b: int = 0
    only_a: int = 0
    only_b: int = 0
    examples_only_a: list = field(default_factory=list)
    examples_only_b: list = field(default_factory=list)
    columns: dict[str, ColumnDiff] = field(default_factory=dict)
    embeddings: dict[str, EmbeddingDiff] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # differences that are not about rows (schema, shards)

    @property
    def differs(self) -> bool:
        return bool(self.rows_a != self.rows_b or self.only_a or self.only_b or self.problems
                    or any(c.differing for c in self.columns.values())
                    or any(e.below for e in self.embeddings.values()))


def _keys(table: pa.Table, names: tuple[str, ...]) -> list[tuple]:
    """One key per row; the n-th repeat of a key gets occurrence n, so repeated keys still pair one to one."""
    seen: Counter = Counter()
    keys = []
    for key in zip(*(table.column(n).to_pylist() for n in names)):
        keys.append((*key, seen[key]) if seen[key] else key)
        seen[key] += 1
    return keys


def _embedding_rows(column: pa.ChunkedArray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The float32 vectors of `rows` and whether each is present (a nullable embedding may be null)."""
    array = column.combine_chunks().take(pa.array(rows, type=pa.int64()))
    valid = array.is_valid().to_numpy(zero_copy_only=False)
    vectors = np.zeros((len(array), array.type.list_size), dtype=np.float32)
    if valid.any():
        flat = array.filter(pa.array(valid)).flatten().to_numpy(zero_copy_only=False)
        vectors[valid] = flat.astype(np.float32).reshape(int(valid.sum()), -1)
    return vectors, valid


def _compare_embeddings(diff: EmbeddingDiff, a: np.ndarray, b: np.ndarray, valid_a: np.ndarray,
                        valid_b: np.ndarray, keys: list[tuple], cos_tol: float) -> None:
    both = valid_a & valid_b
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    cos = np.where(norms > 0, (a * b).sum(axis=1) / np.maximum(norms, 1e-30), 0.0)
    cos = np.where(both & (norms == 0) & (np.abs(a - b).sum(axis=1) == 0), 1.0, cos)  # two equal zero vectors
    bad = (both & (cos < 1.0 - cos_tol)) | (valid_a != valid_b)
    diff.compared += int(both.sum())
    diff.below += int(bad.sum())
    if both.any():
        diff.min_cos = min(diff.min_cos, float(cos[both].min()))
    for i in np.flatnonzero(bad)[:max(0, EXAMPLES - len(diff.examples))]:
        diff.examples.append((keys[i], float(cos[i]) if both[i] else None))


def _values_differ(a: list, b: list, atol: float, is_float: bool) -> list[int]:
    if not is_float:
        return [i for i, (x, y) in enumerate(zip(a, b)) if x != y]
    out = []
    for i, (x, y) in enumerate(zip(a, b)):
        if x is None or y is None:
            if (x is None) != (y is None):
                out.append(i)
        elif not np.allclose(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64), rtol=0, atol=atol,
                             equal_nan=True):
            out.append(i)
    return out


def _is_float(data_type: pa.DataType) -> bool:
    if pa.types.is_fixed_size_list(data_type) or pa.types.is_list(data_type):
        data_type = data_type.value_type
    return pa.types.is_floating(data_type)


def compare_tables(diff: TableDiff, a: pa.Table, b: pa.Table, cos_tol: float, atol: float) -> None:
    """Add the differences between two parts (one shard, or a whole stage table) of `diff.table` to `diff`."""
    name = diff.table
    diff.rows_a += a.num_rows
    diff.rows_b += b.num_rows
    keys_a, keys_b = _keys(a, KEYS[name]), _keys(b, KEYS[name])
    index_b = {key: i for i, key in enumerate(keys_b)}
    set_a = set(keys_a)
    only_a = [k for k in keys_a if k not in index_b]
    only_b = [k for k in keys_b if k not in set_a]
    diff.only_a += len(only_a)
    diff.only_b += len(only_b)
    diff.examples_only_a += only_a[:max(0, EXAMPLES - len(diff.examples_only_a))]
    diff.examples_only_b += only_b[:max(0, EXAMPLES - len(diff.examples_only_b))]
    pairs = [(i, index_b[k]) for i, k in enumerate(keys_a) if k in index_b]
    rows_a = np.array([i for i, _ in pairs], dtype=np.int64)
    rows_b = np.array([j for _, j in pairs], dtype=np.int64)
    matched = [keys_a[i] for i in rows_a]
    for column in a.column_names:
        if column in KEYS[name] or column not in b.column_names:
            continue
        if column in EMBEDDING_COLUMNS[name]:
            vectors_a, valid_a = _embedding_rows(a.column(column), rows_a)
            vectors_b, valid_b = _embedding_rows(b.column(column), rows_b)
            _compare_embeddings(diff.embeddings.setdefault(column, EmbeddingDiff()), vectors_a, vectors_b, valid_a,
                                valid_b, matched, cos_tol)
            continue
        values_a = a.column(column).take(pa.array(rows_a, type=pa.int64())).to_pylist()
        values_b = b.column(column).take(pa.array(rows_b, type=pa.int64())).to_pylist()
        differing = _values_differ(values_a, values_b, atol, _is_float(a.schema.field(column).type))
        if differing:
            found = diff.columns.setdefault(column, ColumnDiff())
            found.differing += len(differing)
            found.examples += [(matched[i], values_a[i], values_b[i])
                               for i in differing[:max(0, EXAMPLES - len(found.examples))]]


def _schema_problems(a: pa.Table, b: pa.Table) -> list[str]:
    problems = []
    for column in sorted(set(a.column_names) ^ set(b.column_names)):
        problems.append(f"column {column} is only in {'A' if column in a.column_names else 'B'}")
    for column in sorted(set(a.column_names) & set(b.column_names)):
        if a.schema.field(column).type != b.schema.field(column).type:
            problems.append(f"column {column} is {a.schema.field(column).type} in A, {b.schema.field(column).type} "
                            "in B")
    return problems


def _shard_ranges(reader: StoreReader, table: str) -> dict[int, tuple]:
    return {c.shard: (c.image_id_min, c.image_id_max) for c in reader.table_commits(table)}


def diff_table(a: StoreReader, b: StoreReader, table: str, cos_tol: float, atol: float) -> TableDiff | None:
    """The differences of one table; None when neither store has it."""
    has_a, has_b = bool(a.table_commits(table)), bool(b.table_commits(table))
    if not has_a and not has_b:
        return None
    diff = TableDiff(table)
    if table in STAGE_TABLES or not (has_a and has_b):
        parts = [(a.read_table(table) if has_a else None, b.read_table(table) if has_b else None)]
    else:
        ranges_a, ranges_b = _shard_ranges(a, table), _shard_ranges(b, table)
        for shard in sorted(set(ranges_a) & set(ranges_b)):
            if ranges_a[shard] != ranges_b[shard]:
                diff.problems.append(f"shard {shard} holds image ids {ranges_a[shard][0]}–{ranges_a[shard][1]} in A "
                                     f"but {ranges_b[shard][0]}–{ranges_b[shard][1]} in B")
        parts = [(a.read_shard(table, s) if s in ranges_a else None, b.read_shard(table, s) if s in ranges_b else None)
                 for s in sorted(set(ranges_a) | set(ranges_b))]
    for part_a, part_b in parts:
        part_a = part_b.schema.empty_table() if part_a is None else part_a
        part_b = part_a.schema.empty_table() if part_b is None else part_b
        for problem in _schema_problems(part_a, part_b):
            if problem not in diff.problems:
                diff.problems.append(problem)
        compare_tables(diff, part_a, part_b, cos_tol, atol)
    if not has_a or not has_b:
        diff.problems.append(f"table {table} is only in {'A' if has_a else 'B'}")
    return diff


def provenance_notes(a: StoreReader, b: StoreReader) -> list[str]:
    """How the two stores were made differently (config, models): explanations, not differences of content."""
    notes = []
    for stage in sorted(set(a.manifest.stages) | set(b.manifest.stages)):
        record_a, record_b = a.manifest.stages.get(stage), b.manifest.stages.get(stage)
        if record_a is None or record_b is None:
            notes.append(f"stage {stage} is recorded only in {'A' if record_b is None else 'B'}")
            continue
        if record_a.config_hash != record_b.config_hash:
            notes.append(f"stage {stage}: config hash {record_a.config_hash} in A, {record_b.config_hash} in B")
        for role in sorted(set(record_a.models) | set(record_b.models)):
            model_a, model_b = record_a.models.get(role), record_b.models.get(role)
            if (model_a and model_a.sha256) != (model_b and model_b.sha256):
                notes.append(f"stage {stage}: the {role} weights differ (sha256 "
                             f"{model_a.sha256[:12] if model_a else 'none'}… vs "
                             f"{model_b.sha256[:12] if model_b else 'none'}…)")
    return notes


def diff_stores(a: StoreReader, b: StoreReader, cos_tol: float = 1e-3, atol: float = 1e-4) -> list[TableDiff]:
    """One TableDiff per table either store has, in schema order."""
    return [d for d in (diff_table(a, b, table, cos_tol, atol) for table in TABLES) if d is not None]
