"""Arrow schemas of the store tables (see DESIGN.md, "The store").

Every table carries its schema version and provenance in the Parquet key-value metadata, so a file
read without our code still says what it is. Embedding columns are `fixed_size_list<float16>[D]`:
D is a property of the model, so schemas are built for a given dimension.
"""
from __future__ import annotations

import json
from typing import Literal, get_args

import pyarrow as pa

# Bump when a column changes meaning, type or name; readers refuse any other version.
SCHEMA_VERSION = 2
# What each version changed, so a refusal can say why an older store cannot be read as it is.
VERSION_CHANGES = {
    2: "images and regions gained embedding_norm, the length of the raw encode_image output before it was scaled "
       "to unit length; official ClipCap MLP checkpoints were trained on that raw output",
}

METADATA_PREFIX = "ovd_distill."
# The values of the `source` and `crop_mode` columns; the Literals are also the config types that name them.
RegionSource = Literal["gt", "proposal", "image"]
CropMode = Literal["tight", "square", "context"]
REGION_SOURCES = get_args(RegionSource)
CROP_MODES = get_args(CropMode)


class SchemaVersionError(RuntimeError):
    """A store or file written with another schema version than the one this code reads."""

    def __init__(self, where: str, found: object, expected: int = SCHEMA_VERSION):
        super().__init__(f"{where} has schema version {found}, this code reads schema version {expected}. "
                         + _how_to_proceed(found, expected))
        self.found = found
        self.expected = expected


def _how_to_proceed(found: object, expected: int) -> str:
    """What a user can do about a store of version `found`: an older store is rewritten, never patched, since what
    a newer version adds (e.g. the raw embedding norms) can only come from running the models again."""
    if isinstance(found, int) or (isinstance(found, str) and found.isdigit()):
        found = int(found)
        if found > expected:
            return "It was written by newer code: read it with that code (its manifest records the code_version)."
        changes = "; ".join(f"version {v}: {VERSION_CHANGES[v]}" for v in range(found + 1, expected + 1)
                            if v in VERSION_CHANGES)
        return (f"A store cannot be upgraded in place ({changes}). Write it again with this code: delete it "
                f"(make clean-store STORE=...) or give the jobs another --store, then run make extract-features "
                f"and make pseudo-labels; or read it with the code that wrote it (the manifest's code_version).")
    return "It is not a store this code wrote; write one with make extract-features."


def embedding_type(dim: int) -> pa.DataType:
    return pa.list_(pa.float16(), dim)


BOX_TYPE = pa.list_(pa.float32(), 4)  # xyxy in image pixels


def _images(dim: int) -> pa.Schema:
    return pa.schema([
        pa.field("image_id", pa.int64(), nullable=False),
        pa.field("file_name", pa.string(), nullable=False),
        pa.field("width", pa.int32(), nullable=False),
        pa.field("height", pa.int32(), nullable=False),
        pa.field("sha256", pa.string(), nullable=False),
        pa.field("embedding", embedding_type(dim)),  # CLIP embedding of the whole image, unit length
        pa.field("embedding_norm", pa.float32()),  # length of the raw encode_image output (embedding x norm = raw)
    ])


def _regions(dim: int) -> pa.Schema:
    return pa.schema([
        pa.field("image_id", pa.int64(), nullable=False),
        pa.field("region_id", pa.int32(), nullable=False),  # index within the image, stable across stages
        pa.field("box", BOX_TYPE, nullable=False),
        pa.field("source", pa.string(), nullable=False),  # one of REGION_SOURCES
        pa.field("category_id", pa.int64()),  # null unless source == "gt"
        pa.field("proposal_score", pa.float32()),  # null unless source == "proposal"
        pa.field("max_iou_base", pa.float32()),  # max IoU with the image's base GT boxes
        pa.field("crop_mode", pa.string(), nullable=False),  # one of CROP_MODES
        pa.field("crop_box", BOX_TYPE, nullable=False),  # the window actually cut, xyxy
        # Object names of a GT box (Open-Det targets), alternatives of one object ("a, b" synonyms already split);
        # null for proposal and image regions, and for every region unless extract-features names objects.
        pa.field("names", pa.list_(pa.string())),
        pa.field("embedding", embedding_type(dim), nullable=False),  # unit length
        # Length of the raw encode_image output, so embedding x embedding_norm restores it (to float16 precision):
        # captioners trained on raw CLIP output (official ClipCap MLP checkpoints) need it.
        pa.field("embedding_norm", pa.float32(), nullable=False),
    ])


def _pseudo_labels(dim: int) -> pa.Schema:
    # A caption that names no object (its candidates are empty: "a patch of striped background") is an outcome, not
    # a failure: the row stays, with a null label and cos, a score of 0 (the trainers give the box no weight) and an
    # all-zero text_embedding, not a null one: Arrow C++ cannot read a null fixed-size list back from Parquet
    # (apache/arrow#35692). Stores written before such rows existed have none and read as they are.
    return pa.schema([
        pa.field("image_id", pa.int64(), nullable=False),
        pa.field("region_id", pa.int32(), nullable=False),
        pa.field("caption", pa.string(), nullable=False),
        pa.field("candidates", pa.list_(pa.string()), nullable=False),
        pa.field("label", pa.string()),  # null: the caption names no object ("no object")
        pa.field("cos", pa.float32()),  # cosine(region embedding, label text embedding); null without a label
        pa.field("score", pa.float32(), nullable=False),  # sigmoid((cos - mu) / sigma) * k; 0 without a label
        pa.field("text_embedding", embedding_type(dim), nullable=False),  # all zeros without a label
    ])


def _proposals(dim: int) -> pa.Schema:
    del dim  # proposals carry no embedding
    return pa.schema([
        pa.field("image_id", pa.int64(), nullable=False),
        pa.field("rank", pa.int32(), nullable=False),  # 0 = the image's best proposal; rows of an image by rank
        pa.field("box", BOX_TYPE, nullable=False),
        pa.field("score", pa.float32(), nullable=False),  # the network's objectness, non-increasing with rank
    ])


def _vocab(dim: int) -> pa.Schema:
    return pa.schema([
        pa.field("name", pa.string(), nullable=False),
        # "class" (a category), "label" (a pseudo label) or "name" (an object name of regions.names)
        pa.field("kind", pa.string(), nullable=False),
        pa.field("category_id", pa.int64()),  # null for labels and names
        pa.field("split", pa.string()),  # "base" / "novel" for classes, null otherwise
        pa.field("prompts", pa.string(), nullable=False),  # name of the prompt ensemble used
        pa.field("embedding", embedding_type(dim), nullable=False),
    ])


def _failures(dim: int) -> pa.Schema:
    del dim  # dead letters carry no embedding
    return pa.schema([
        pa.field("image_id", pa.int64()),  # null when the id itself was unreadable
        pa.field("region_id", pa.int32()),
        pa.field("file_name", pa.string()),
        pa.field("stage", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),  # short machine-readable reason
        pa.field("message", pa.string(), nullable=False),
    ])


TABLES = {
    "proposals": _proposals,
    "images": _images,
    "regions": _regions,
    "pseudo_labels": _pseudo_labels,
    "vocab": _vocab,
    "failures": _failures,
}
EMBEDDING_COLUMNS = {"proposals": (), "images": ("embedding",), "regions": ("embedding",),
                     "pseudo_labels": ("text_embedding",), "vocab": ("embedding",), "failures": ()}
JOIN_KEYS = ("image_id", "region_id")


def schema_for(table: str, dim: int, provenance: dict | None = None) -> pa.Schema:
    """The Arrow schema of `table` with embeddings of size `dim`, tagged with version and provenance."""
    if table not in TABLES:
        raise KeyError(f"unknown table {table!r}; tables are {sorted(TABLES)}")
    metadata = {
        METADATA_PREFIX + "schema_version": str(SCHEMA_VERSION),
        METADATA_PREFIX + "table": table,
    }
    if provenance:
        metadata[METADATA_PREFIX + "provenance"] = json.dumps(provenance, sort_keys=True)
    return TABLES[table](dim).with_metadata(metadata)


def embedding_dim(schema: pa.Schema, table: str) -> int | None:
    """D of the table's embedding column, or None for tables without one."""
    columns = EMBEDDING_COLUMNS[table]
    return schema.field(columns[0]).type.list_size if columns else None


def check_schema_version(metadata: dict | None, where: str) -> None:
    """Raise SchemaVersionError unless the Parquet key-value metadata carries our version."""
    key = (METADATA_PREFIX + "schema_version").encode()
    found = (metadata or {}).get(key)
    found = found.decode() if found is not None else "none"
    if found != str(SCHEMA_VERSION):
        raise SchemaVersionError(where, found)
