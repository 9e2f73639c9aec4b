"""Rows of the `regions` table as one record of columns, shared by the stages that write regions and the readers
that use them (the pattern of detectron2's `Instances`): every field holds one value per region, and there is one
conversion each way between the record and Arrow.

A reader that asks for some columns gets a record whose other fields are None.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from featurestore.arrow import build_table, embeddings_to_numpy

BOX_WIDTH = 4  # xyxy


def _boxes_to_numpy(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """fixed_size_list<float32>[4] column → (N, 4) float32."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    return array.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(-1, BOX_WIDTH)


def _boxes_to_arrow(boxes: np.ndarray) -> pa.FixedSizeListArray:
    flat = pa.array(np.ascontiguousarray(boxes, dtype=np.float32).reshape(-1), type=pa.float32())
    return pa.FixedSizeListArray.from_arrays(flat, BOX_WIDTH)


def _strings_to_numpy(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A string column of few distinct values (source, crop_mode) → (N,) str array: one Python string per distinct
    value, then a numpy gather, not one per row."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if array.null_count:
        return np.asarray(array.to_pylist(), dtype=str)
    encoded = array if pa.types.is_dictionary(array.type) else array.dictionary_encode()
    values = np.asarray(encoded.dictionary.to_pylist(), dtype=str)
    return values[encoded.indices.to_numpy(zero_copy_only=False)] if len(values) else values


def _as_list(column: pa.ChunkedArray | pa.Array) -> list:
    return column.to_pylist()


# Field → its Arrow → Python conversion. Nullable scalar columns stay lists, so a null is None both ways.
_FROM_ARROW = {
    "image_id": lambda column: column.to_numpy().astype(np.int64, copy=False),
    "region_id": lambda column: column.to_numpy().astype(np.int32, copy=False),
    "box": _boxes_to_numpy,
    "source": _strings_to_numpy,
    "category_id": _as_list,
    "proposal_score": _as_list,
    "max_iou_base": _as_list,
    "crop_mode": _strings_to_numpy,
    "crop_box": _boxes_to_numpy,
    "names": _as_list,
    "embedding": embeddings_to_numpy,
    "embedding_norm": lambda column: column.to_numpy().astype(np.float32, copy=False),
}


@dataclass(frozen=True)
class Regions:
    """N regions; each field is None when it was not read."""

    image_id: np.ndarray  # (N,) int64
    region_id: np.ndarray  # (N,) int32, index within the image, stable across stages
    box: np.ndarray | None = None  # (N, 4) float32 xyxy, image pixels
    source: np.ndarray | None = None  # (N,) str: "gt", "proposal" or "image"
    category_id: list[int | None] | None = None  # None unless source is "gt"
    proposal_score: list[float | None] | None = None  # None unless source is "proposal"
    max_iou_base: list[float | None] | None = None  # max IoU with the image's base GT boxes
    crop_mode: np.ndarray | None = None  # (N,) str: the crop mode the region was cut with
    crop_box: np.ndarray | None = None  # (N, 4) float32 xyxy, the window actually cut
    names: list[list[str] | None] | None = None  # object names of a GT box (alternatives of one object), else None
    embedding: np.ndarray | None = None  # (N, D) float16 CLIP region embedding, unit length
    embedding_norm: np.ndarray | None = None  # (N,) float32 length of the raw encode_image output

    def __post_init__(self):
        count = len(self.image_id)
        for name, value in self._present().items():
            if len(value) != count:
                raise ValueError(f"Regions: field {name!r} has {len(value)} rows, image_id has {count}")

    def __len__(self) -> int:
        return len(self.image_id)

    def _present(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if getattr(self, f.name) is not None}

    # -- Arrow, both ways ---------------------------------------------------------------------------------
    @classmethod
    def from_arrow(cls, table: pa.Table) -> "Regions":
        """The region columns of `table` (others, e.g. those of a zipped table, are left out)."""
        return cls(**{name: convert(table.column(name)) for name, convert in _FROM_ARROW.items()
                      if name in table.column_names})

    def to_arrow(self, dim: int) -> pa.Table:
        """The `regions` table of our schema (embeddings of size `dim`); fields that are None become nulls."""
        columns: dict[str, Any] = self._present()
        for name in ("box", "crop_box"):
            if name in columns:
                columns[name] = _boxes_to_arrow(columns[name])
        return build_table("regions", columns, dim)

    # -- selecting rows -----------------------------------------------------------------------------------
    def take(self, rows: np.ndarray) -> "Regions":
        """The regions at `rows` (indices, or a boolean mask of length N), in that order."""
        rows = np.asarray(rows)
        indices = np.flatnonzero(rows) if rows.dtype == bool else rows.astype(np.int64, copy=False)
        return Regions(**{name: value[indices] if isinstance(value, np.ndarray) else [value[i] for i in indices]
                          for name, value in self._present().items()})

    def rows_by_image(self) -> dict[int, np.ndarray]:
        """image_id → indices of its regions, ids ascending, each image's rows in table order."""
        order = np.argsort(self.image_id, kind="stable")
        ids = self.image_id[order]
        starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]]) if len(ids) else np.array([], dtype=np.int64)
        ends = np.r_[starts[1:], len(ids)]
        return {int(ids[start]): order[start:end] for start, end in zip(starts, ends)}

    def to_rows(self, fields: tuple[str, ...]) -> list[dict]:
        """One dict of plain Python values per region, with the given fields (embeddings are arrays, not rows)."""
        columns = {name: getattr(self, name) for name in fields}
        missing = [name for name, value in columns.items() if value is None]
        if missing:
            raise ValueError(f"Regions: fields {missing} were not read")
        plain = {name: value.tolist() if isinstance(value, np.ndarray) else value for name, value in columns.items()}
        return [{name: plain[name][i] for name in fields} for i in range(len(self))]
