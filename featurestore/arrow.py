"""Columns → Arrow tables of our schemas, with embeddings as fixed_size_list<float16> built without copies per row."""
from __future__ import annotations

from typing import Mapping

import numpy as np
import pyarrow as pa

from schemas.tables import EMBEDDING_COLUMNS, JOIN_KEYS, schema_for


def embedding_array(values: np.ndarray, dim: int) -> pa.FixedSizeListArray:
    """(N, D) array → fixed_size_list<float16>[D]; float32 inputs are rounded to float16 once, here."""
    values = np.asarray(values)
    if values.ndim != 2 or values.shape[1] != dim:
        raise ValueError(f"embeddings must have shape (N, {dim}), got {values.shape}")
    flat = pa.array(np.ascontiguousarray(values, dtype=np.float16).reshape(-1), type=pa.float16())
    return pa.FixedSizeListArray.from_arrays(flat, dim)


def embeddings_to_numpy(column: pa.ChunkedArray | pa.Array, dim: int | None = None) -> np.ndarray:
    """fixed_size_list<float16>[D] column → (N, D) float16 array (zero-copy where Arrow allows)."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    dim = dim or array.type.list_size
    if len(array) == 0:
        return np.zeros((0, dim), dtype=np.float16)
    if array.null_count:
        raise ValueError("embedding column has nulls; select rows with embeddings first")
    flat = array.flatten().to_numpy(zero_copy_only=False)
    return flat.reshape(len(array), dim)


def build_table(table: str, columns: Mapping[str, object] | pa.Table, dim: int,
                provenance: dict | None = None) -> pa.Table:
    """A table of our schema from columns (lists or arrays; embeddings as (N, D) arrays) or a pa.Table.

    Missing nullable columns are filled with nulls; unknown columns are an error that names them.
    """
    schema = schema_for(table, dim, provenance)
    if isinstance(columns, pa.Table):
        columns = {name: columns.column(name) for name in columns.column_names}
    unknown = sorted(set(columns) - set(schema.names))
    if unknown:
        raise ValueError(f"table {table!r} has no column(s) {unknown}; its columns are {schema.names}")
    lengths = {name: len(value) for name, value in columns.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"table {table!r}: columns differ in length: {lengths}")
    num_rows = next(iter(lengths.values()), 0)
    arrays = []
    for field in schema:
        value = columns.get(field.name)
        if value is None:
            if not field.nullable:
                raise ValueError(f"table {table!r}: column {field.name!r} is required")
            arrays.append(pa.nulls(num_rows, field.type))
        elif field.name in EMBEDDING_COLUMNS[table] and isinstance(value, np.ndarray):
            arrays.append(embedding_array(value, dim))
        else:
            arrays.append(pa.array(value, type=field.type) if not isinstance(value, (pa.Array, pa.ChunkedArray))
                          else value.cast(field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def sort_by_keys(table: pa.Table) -> pa.Table:
    """Rows ordered by (image_id, region_id) where present: lookups by id prune row groups, zips are merges."""
    keys = [(k, "ascending") for k in JOIN_KEYS if k in table.column_names]
    return table.sort_by(keys) if keys and table.num_rows else table
