"""`export-hdovd STORE OUT`: the extract-features shards in the layout HD-OVD's training code reads.

OUT/<image file stem>.pth   {"clip_full_image_embedding": (1, D), "gt_clip_image_embedding": (#base GT, D) in the
                            order of the image's valid base annotations, "proposal_clip_image_embedding":
                            (#proposals, D) in proposal order, "proposal_clip_text_embedding": (#proposals, D) text
                            embedding of each proposal's pseudo label, rows matching the image embeddings, zero where
                            the pseudo-labels stage gave no label (its failures rows say why); only when the store
                            has pseudo_labels}, float32 tensors
OUT/proposals.pkl           list in dataset order of (#proposals, 5) float32 arrays x0, y0, x1, y1, score, rows
                            matching proposal_clip_image_embedding (an image missing from the store gets (0, 5))
OUT/class_embeddings.pt     (C, D) float32 text embeddings of the classes, base then novel (65 x D for OV-COCO)

Dataset order is the `images` order of --annotations when given, else image id order. The store is read one
shard at a time, so memory is bounded by a shard.
"""
from __future__ import annotations

import io
import json
import pickle
from pathlib import Path, PurePosixPath

import numpy as np

from featurestore.arrow import embeddings_to_numpy
from featurestore.atomic import write_bytes_atomic
from featurestore.reader import StoreReader
from featurestore.regions import Regions
from featurestore.stages import EXTRACT_FEATURES

# Protocol 4 keeps numpy arrays in-band, so restricted unpicklers (ours included) can read the file.
PICKLE_PROTOCOL = 4


def add_arguments(parser) -> None:
    parser.add_argument("store", help="path of the store (the directory holding manifest.json)")
    parser.add_argument("out", help="output folder (created if missing)")
    parser.add_argument("--annotations", default=None,
                        help="COCO/LVIS JSON whose `images` order the proposals pickle follows (default: id order)")


def _tensor_bytes(payload) -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def _image_payload(image_vector: np.ndarray, regions: Regions, text_vectors: dict | None = None) -> dict:
    """regions: one image's regions in region id order, with their embeddings."""
    import torch

    def stack(source: str) -> torch.Tensor:
        return torch.from_numpy(regions.embedding[regions.source == source].astype(np.float32))

    payload = {"clip_full_image_embedding": torch.from_numpy(image_vector.astype(np.float32)[None]),
               "gt_clip_image_embedding": stack("gt"), "proposal_clip_image_embedding": stack("proposal")}
    if text_vectors is not None:
        dim = regions.embedding.shape[1]
        zero = np.zeros(dim, dtype=np.float32)
        proposals = regions.take(regions.source == "proposal")
        texts = [text_vectors.get(key, zero) for key in zip(proposals.image_id.tolist(), proposals.region_id.tolist())]
        payload["proposal_clip_text_embedding"] = torch.from_numpy(np.asarray(texts, dtype=np.float32).reshape(
            len(texts), dim))
    return payload


def _pseudo_label_vectors(reader: StoreReader, shard: int) -> dict | None:
    """(image_id, region_id) → pseudo-label text embedding for one shard; None when the shard has no labels."""
    if shard not in reader.shards("pseudo_labels"):
        return None
    labels = reader.read_shard("pseudo_labels", shard, ["image_id", "region_id", "text_embedding"])
    vectors = embeddings_to_numpy(labels.column("text_embedding")).astype(np.float32)
    keys = zip(labels.column("image_id").to_pylist(), labels.column("region_id").to_pylist())
    return dict(zip(keys, vectors))


def _export_shard(reader: StoreReader, shard: int, out: Path, proposals: dict[int, np.ndarray]) -> int:
    images = reader.read_shard("images", shard)
    regions = Regions.from_arrow(reader.read_shard("regions", shard).sort_by([("image_id", "ascending"),
                                                                              ("region_id", "ascending")]))
    rows_of = regions.rows_by_image()
    image_vectors = embeddings_to_numpy(images.column("embedding"))
    text_vectors = _pseudo_label_vectors(reader, shard)
    for position, image_row in enumerate(images.drop_columns(["embedding"]).to_pylist()):
        mine = regions.take(rows_of.get(image_row["image_id"], np.array([], dtype=np.int64)))
        payload = _image_payload(image_vectors[position], mine, text_vectors)
        stem = PurePosixPath(image_row["file_name"]).stem
        write_bytes_atomic(out / f"{stem}.pth", _tensor_bytes(payload))
        is_proposal = mine.source == "proposal"
        scores = np.asarray([s for s, p in zip(mine.proposal_score, is_proposal) if p], dtype=np.float32)
        proposals[image_row["image_id"]] = np.concatenate([mine.box[is_proposal], scores[:, None]], axis=1)
    return images.num_rows


def _class_embeddings(reader: StoreReader):
    import torch

    vocab = reader.read_table("vocab")
    rows = vocab.drop_columns(["embedding"]).to_pylist()
    vectors = embeddings_to_numpy(vocab.column("embedding")).astype(np.float32)
    order = sorted((i for i, r in enumerate(rows) if r["kind"] == "class"),
                   key=lambda i: (rows[i]["split"] != "base", rows[i]["category_id"]))
    return torch.from_numpy(vectors[order]), [rows[i]["name"] for i in order]


def run(args) -> int:
    reader = StoreReader(args.store)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    proposals: dict[int, np.ndarray] = {}
    exported = sum(_export_shard(reader, shard, out, proposals)
                   for shard in sorted({c.shard for c in reader.table_commits("images") if c.stage == EXTRACT_FEATURES}))
    if args.annotations:
        order = [int(image["id"]) for image in json.loads(Path(args.annotations).read_text())["images"]]
    else:
        order = sorted(proposals)
    empty = np.zeros((0, 5), dtype=np.float32)
    missing = sum(1 for image_id in order if image_id not in proposals)
    write_bytes_atomic(out / "proposals.pkl", pickle.dumps([proposals.get(i, empty) for i in order],
                                                           protocol=PICKLE_PROTOCOL))
    classes, names = _class_embeddings(reader)
    write_bytes_atomic(out / "class_embeddings.pt", _tensor_bytes(classes))
    print(f"exported {exported} images to {out}: per-image .pth files, proposals.pkl ({len(order)} entries, "
          f"{missing} without stored features), class_embeddings.pt ({len(names)} x {classes.shape[1]})")
    return 0
