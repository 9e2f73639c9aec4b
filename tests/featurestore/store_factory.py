"""Deterministic small stores written through the real ShardWriter, for the featurestore tests."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from featurestore.integrity import content_checksum

from featurestore.manifest import ModelRecord
from featurestore.stages import EXTRACT_FEATURES, PROPOSALS, PSEUDO_LABELS
from featurestore.writer import ShardWriter
from schemas.tables import SCHEMA_VERSION

DIM = 16
IMAGES_PER_SHARD = 3
REGIONS_PER_IMAGE = 4


def shard_tables(shard: int, dim: int = DIM) -> dict:
    """Columns of every sharded table for shard `shard`; values depend only on the shard index."""
    rng = np.random.default_rng(shard)
    ids = [1000 * (shard + 1) + i for i in range(IMAGES_PER_SHARD)]
    image_ids = [i for i in ids for _ in range(REGIONS_PER_IMAGE)]
    region_ids = [r for _ in ids for r in range(REGIONS_PER_IMAGE)]
    n = len(image_ids)
    boxes = [[float(r), float(r), 10.0 + r, 12.0 + r] for r in region_ids]
    sources = ["gt", "proposal", "proposal", "image"] * len(ids)
    return {
        "images": {"image_id": ids, "file_name": [f"img_{i}.jpg" for i in ids], "width": [64] * len(ids),
                   "height": [48] * len(ids), "sha256": [f"{i:064x}" for i in ids],
                   "embedding": rng.standard_normal((len(ids), dim)).astype(np.float16),
                   "embedding_norm": np.linspace(8.0, 9.0, len(ids), dtype=np.float32)},
        "regions": {"image_id": image_ids, "region_id": region_ids, "box": boxes, "source": sources,
                    "category_id": [3 if s == "gt" else None for s in sources],
                    "proposal_score": [0.75 if s == "proposal" else None for s in sources],
                    "max_iou_base": [0.125] * n, "crop_mode": ["square"] * n, "crop_box": boxes,
                    "names": [["red star", "star"] if s == "gt" else None for s in sources],
                    "embedding": rng.standard_normal((n, dim)).astype(np.float16),
                    "embedding_norm": np.linspace(10.0, 11.0, n, dtype=np.float32)},
        "failures": {"image_id": [ids[0]], "region_id": [None], "file_name": ["broken.jpg"],
                     "stage": [EXTRACT_FEATURES], "kind": ["truncated_image"],
                     "message": ["broken.jpg: image file is truncated"]},
    }


NO_OBJECT_CAPTION = "a patch of striped background"


def pseudo_label_tables(shard: int, dim: int = DIM, no_object: frozenset = frozenset()) -> dict:
    """pseudo_labels for the proposal regions of `shard_tables(shard)`; the (image_id, region_id) of `no_object`
    are captioned with no object, as the pseudo-labels job writes them (no label or cos, score 0, zero text)."""
    regions = shard_tables(shard, dim)["regions"]
    keep = [i for i, s in enumerate(regions["source"]) if s == "proposal"]
    keys = [(regions["image_id"][i], regions["region_id"][i]) for i in keep]
    named = [key not in no_object for key in keys]
    rng = np.random.default_rng(100 + shard)
    texts = rng.standard_normal((len(keep), dim)).astype(np.float16)
    texts[~np.asarray(named, dtype=bool)] = 0
    return {"pseudo_labels": {
        "image_id": [i for i, _ in keys], "region_id": [r for _, r in keys],
        "caption": ["a red star on a wall" if n else NO_OBJECT_CAPTION for n in named],
        "candidates": [["star", "wall"] if n else [] for n in named],
        "label": ["star" if n else None for n in named], "cos": [0.375 if n else None for n in named],
        "score": [0.875 if n else 0.0 for n in named], "text_embedding": texts}}


def proposal_tables(shard: int) -> dict:
    """Two proposals per image of `shard_tables(shard)`, best first, and its stats as the proposals job writes them."""
    ids = shard_tables(shard)["images"]["image_id"]
    return {"proposals": {"image_id": [i for i in ids for _ in range(2)], "rank": [0, 1] * len(ids),
                          "box": [[1.0, 2.0, 30.0, 40.0], [5.0, 5.0, 20.0, 25.0]] * len(ids),
                          "score": [0.9, 0.5] * len(ids)}}


def write_proposal_stage(root: Path, shards: int) -> None:
    writer = ShardWriter(root, PROPOSALS, None)
    writer.open_stage({"dataset": {"annotations": "instances.json"}}, "hash-proposals",
                      {"proposer": ModelRecord(sha256="1" * 64, name="proposal network", path="checkpoint.pt")})
    for shard in range(shards):
        writer.commit(shard, proposal_tables(shard), fingerprint=f"pr-{shard}",
                      stats={"image_ids": shard_tables(shard)["images"]["image_id"]})
    writer.finish_stage({"images": shards * IMAGES_PER_SHARD})


def vocab_columns(dim: int = DIM) -> dict:
    """Classes star (base, e0) and circle (novel, e1), and the object names of the GT regions: "red star" (e2) and
    "star" (e0, as the same prompt ensemble gives the same embedding as the class)."""
    return {"name": ["star", "circle", "red star", "star"], "kind": ["class", "class", "name", "name"],
            "category_id": [3, 4, None, None], "split": ["base", "novel", None, None], "prompts": ["single"] * 4,
            "embedding": np.eye(dim, dtype=np.float16)[[0, 1, 2, 0]]}


def write_store(root: Path, shards: int = 2, with_pseudo_labels: bool = True, strict: bool = True,
                labelled_shards: int | None = None, no_object: frozenset = frozenset(),
                with_proposals: bool = False) -> Path:
    """labelled_shards: how many shards the pseudo-labels stage committed (default: all of them); no_object: the
    (image_id, region_id) of pseudo boxes whose caption named no object. with_proposals: a proposals stage first,
    cut into the same shards."""
    if with_proposals:
        write_proposal_stage(root, shards)
    writer = ShardWriter(root, EXTRACT_FEATURES, DIM)
    writer.open_stage({"crop": {"mode": "square"}, "dataset": {"strict": strict}}, "hash-extract",
                      {"clip": ModelRecord(sha256="0" * 64, name="local-dir:tiny", path="tiny", prompts="single")})
    for shard in range(shards):
        writer.commit(shard, shard_tables(shard), fingerprint=f"fp-{shard}", stats={"images": IMAGES_PER_SHARD})
    writer.commit_table("vocab", vocab_columns())
    writer.finish_stage({"images": shards * IMAGES_PER_SHARD})
    if with_pseudo_labels:
        labels = ShardWriter(root, PSEUDO_LABELS, DIM)
        labels.open_stage({"captioner": "given"}, "hash-labels")
        for shard in range(shards if labelled_shards is None else labelled_shards):
            labels.commit(shard, pseudo_label_tables(shard, no_object=no_object), fingerprint=f"pl-{shard}")
        labels.finish_stage()
    return root


def committed_file(root: Path, table: str, shard: int = 0, stage: str | None = None) -> Path:
    """The file of `table` that the commit record of `shard` names (of `stage`, default: the one holding it)."""
    for record_path in sorted((Path(root) / "_commits").glob(f"{stage or '*'}/{shard:05d}.json")):
        files = json.loads(record_path.read_text())["files"]
        if table in files:
            return Path(root) / files[table]["path"]
    raise KeyError(f"no commit record of shard {shard} names a {table} file in {root}")


def rewrite_committed(root: Path, path: Path, data: bytes) -> None:
    """Replace a committed file with `data` as a writer would have written it: its record's size and digests follow
    (the store stays intact, only its content changes)."""
    relative = Path(path).relative_to(root).as_posix()
    Path(path).write_bytes(data)
    for record_path in (Path(root) / "_commits").rglob("*.json"):
        record = json.loads(record_path.read_text())
        for entry in record["files"].values():
            if entry["path"] == relative:
                entry.update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest(), checksum=content_checksum(data))
                record_path.write_text(json.dumps(record))


def downgrade_to_version_1(root):
    """The store as schema version 1 wrote it: no embedding_norm column, version 1 in every record and file."""
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["schema_version"] = 1
    (root / "manifest.json").write_text(json.dumps(manifest))
    for record_path in (root / "_commits").rglob("*.json"):
        record = json.loads(record_path.read_text())
        record["schema_version"] = 1
        record_path.write_text(json.dumps(record))
    for path in root.rglob("*.parquet"):
        table = pq.read_table(path)
        if "embedding_norm" in table.column_names:
            table = table.drop_columns(["embedding_norm"])
        metadata = {**table.schema.metadata, b"ovd_distill.schema_version": b"1"}
        sink = pa.BufferOutputStream()
        pq.write_table(table.replace_schema_metadata(metadata), sink)
        rewrite_committed(root, path, sink.getvalue().to_pybytes())
    return root


def assert_says_how_to_proceed(message: str) -> None:
    assert "schema version 1" in message and f"schema version {SCHEMA_VERSION}" in message
    assert "embedding_norm" in message  # why an old store cannot simply be read
    assert "make clean-store" in message and "--store" in message and "make extract-features" in message
