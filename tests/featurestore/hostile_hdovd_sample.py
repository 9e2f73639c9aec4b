"""A small COCO set with every input the HD-OVD export must survive, and a store made of it by the real
extract-features job (tiny CLIP, TestPipeline) plus pseudo labels written through the real ShardWriter.

Images (id, file name, what is hostile about it):
    1 0001.png             a novel GT box beside base ones, 7 stored proposals: one too thin for the > 32 px mask,
                           more than 5 left after it; one whose caption named no object (a row with no label); a GT
                           box without `area`
    2 scene.v2.final.jpeg  dots in the name, a 5-character extension; only a crowd box and a novel box: no GT row
    3 sub/dir/odd.PNG      folders in the name; crowd, `ignore`, area 0, outside-the-image, unknown-category and one
                           plain GT box; no proposal at all
    4 tiny.png             30 px wide: the official loader drops it from training, the pickle still lists it
    5 photo.jpeg           no annotation at all
    6 photo.tiff           in the store, not in the training file; its .pth name would be photo..pth like image 5's
    7 missing.png          listed, never written: extract-features files a failure, the store has no features
    8 nolabel.png          proposals without any pseudo_labels row (as after a failure of the pseudo-labels stage)
plus an annotation and proposals naming image ids that `images` does not list.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from apache_beam.testing.test_pipeline import TestPipeline
from PIL import Image

from beam_jobs import extract_features
from featurestore.reader import StoreReader
from featurestore.stages import PSEUDO_LABELS
from featurestore.writer import ShardWriter
from tests.tiny_clip import save_local_dir

CATEGORIES = [{"id": 1, "name": "circle"}, {"id": 2, "name": "square"}, {"id": 3, "name": "star"}]
SPLIT = {"base": ["circle", "square"], "novel": ["star"]}
NOVEL_CATEGORY = 3
IMAGES = [(1, "0001.png", 120, 90), (2, "scene.v2.final.jpeg", 100, 80), (3, "sub/dir/odd.PNG", 96, 96),
          (4, "tiny.png", 30, 40), (5, "photo.jpeg", 64, 64), (6, "photo.tiff", 64, 64), (7, "missing.png", 50, 50),
          (8, "nolabel.png", 80, 60)]
NOT_IN_TRAINING_FILE = 6
MISSING = 7
NO_LABELS = 8


def _annotation(ann_id, image_id, category_id, bbox, **extra):
    return {"id": ann_id, "image_id": image_id, "category_id": category_id, "bbox": bbox,
            "area": bbox[2] * bbox[3], "iscrowd": 0, **extra}


ANNOTATIONS = [
    _annotation(11, 1, 1, [10, 10, 40, 30]),
    _annotation(12, 1, NOVEL_CATEGORY, [60, 20, 30, 30]),
    {"id": 13, "image_id": 1, "category_id": 2, "bbox": [70, 55, 30, 20], "iscrowd": 0},  # no `area` key
    _annotation(21, 2, 1, [10, 10, 30, 30], iscrowd=1),
    _annotation(22, 2, NOVEL_CATEGORY, [50, 20, 30, 30]),
    _annotation(31, 3, 2, [5, 5, 20, 20], iscrowd=1),
    _annotation(32, 3, 1, [30, 30, 20, 20], ignore=1),
    {**_annotation(33, 3, 1, [50, 50, 20, 20]), "area": 0.0},
    _annotation(34, 3, 1, [200, 200, 10, 10]),  # entirely outside the 96 x 96 image
    _annotation(35, 3, 77, [10, 60, 20, 20]),  # category 77 is not in `categories`
    _annotation(36, 3, 2, [60, 10, 25, 25]),
    _annotation(41, 4, 1, [2, 2, 20, 20]),
    _annotation(61, 6, 1, [10, 10, 30, 30]),
    _annotation(81, 8, 2, [5, 5, 30, 30]),
    _annotation(99, 999, 1, [1, 1, 5, 5]),  # dangling: image 999 is not in `images`
]
PROPOSALS = {  # image id → (x, y, w, h, score) rows
    1: [(80, 5, 30, 30, .9), (5, 50, 25, 30, .85), (30, 40, 3.5, 20, .8), (90, 60, 20, 20, .7), (2, 2, 10, 10, .6),
        (50, 5, 20, 12, .55), (100, 10, 15, 15, .5), (11, 11, 38, 28, .95)],  # the last overlaps base GT 11
    2: [(60, 40, 30, 30, .9), (5, 45, 40, 30, .8)],
    4: [(1, 1, 10, 10, .9)],
    5: [(5, 5, 30, 30, .9), (30, 30, 30, 30, .8)],
    6: [(5, 5, 20, 20, .9)],
    8: [(40, 10, 30, 30, .9), (10, 35, 20, 20, .8)],
    555: [(1, 1, 5, 5, .5)],  # image 555 is not in `images`
}
NO_OBJECT_RANK = (1, 1)  # image 1's second proposal (in region order): its caption named no object


@dataclass(frozen=True)
class HostileStore:
    root: Path
    store: Path
    extract_file: Path  # everything, novel boxes included: what extract-features read (strict)
    training_file: Path  # what the official trainer reads: base annotations only, image 6 left out
    full_file: Path  # the training images with their novel annotations
    collision_file: Path  # the training file plus image 6


def _write_images(image_root: Path, rng: np.random.Generator) -> None:
    for image_id, name, width, height in IMAGES:
        if image_id == MISSING:
            continue
        pixels = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
        path = image_root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path, format="PNG")  # the decoder reads the bytes, not the extension


FILE_ORDER = (3, 1, 8, 6, 2, 7, 5, 4)  # the files list images in this order, not by id: the pickle must follow it


def _coco(images, annotations) -> dict:
    images = sorted(images, key=lambda image: FILE_ORDER.index(image[0]))
    return {"images": [{"id": i, "file_name": n, "width": w, "height": h} for i, n, w, h in images],
            "annotations": annotations, "categories": CATEGORIES}


def _write_files(root: Path) -> dict[str, Path]:
    training_images = [image for image in IMAGES if image[0] != NOT_IN_TRAINING_FILE]
    base = [a for a in ANNOTATIONS if a["category_id"] != NOVEL_CATEGORY]
    files = {
        "extract": _coco(IMAGES, ANNOTATIONS),
        "training": _coco(training_images, [a for a in base if a["image_id"] != NOT_IN_TRAINING_FILE]),
        "full": _coco(training_images, [a for a in ANNOTATIONS if a["image_id"] != NOT_IN_TRAINING_FILE]),
        "collision": _coco(IMAGES, base),
    }
    paths = {}
    for name, data in files.items():
        paths[name] = root / f"{name}.json"
        paths[name].write_text(json.dumps(data))
    (root / "split.json").write_text(json.dumps(SPLIT))
    rows = [{"image_id": i, "bbox": list(row[:4]), "score": row[4]} for i, rows in PROPOSALS.items() for row in rows]
    (root / "proposals.json").write_text(json.dumps(rows))
    return paths


def _write_pseudo_labels(store: Path, rng: np.random.Generator) -> None:
    """A label and a unit text embedding for every proposal but those of image 8 (no row) and the one of
    NO_OBJECT_RANK (a row with no label, as the pseudo-labels job writes a caption that names no object)."""
    reader = StoreReader(store)
    dim = reader.manifest.stages["extract_features"].embedding_dim
    writer = ShardWriter(store, PSEUDO_LABELS, dim)
    writer.open_stage({"captioner": {"name": "given"}}, "hash-labels")
    for shard in reader.shards("regions"):
        regions = reader.read_shard("regions", shard, ["image_id", "region_id", "source"]).to_pylist()
        proposals = sorted((r["image_id"], r["region_id"]) for r in regions if r["source"] == "proposal")
        image, rank = NO_OBJECT_RANK
        nothing = set([key for key in proposals if key[0] == image][rank:rank + 1])
        keys = [key for key in proposals if key[0] != NO_LABELS]
        named = np.array([key not in nothing for key in keys], dtype=bool)
        vectors = rng.standard_normal((len(keys), dim))
        vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True) * named[:, None]
        writer.commit(shard, {"pseudo_labels": {
            "image_id": [i for i, _ in keys], "region_id": [r for _, r in keys],
            "caption": ["a thing" if n else "a patch of striped background" for n in named],
            "candidates": [["thing"] if n else [] for n in named], "label": ["thing" if n else None for n in named],
            "cos": [0.3 if n else None for n in named], "score": np.where(named, 0.5, 0.0).astype(np.float32),
            "text_embedding": vectors.astype(np.float16)}},
            fingerprint=f"labels-{shard}")
    writer.finish_stage()


def write_hostile_store(root: Path) -> HostileStore:
    rng = np.random.default_rng(7)
    image_root = root / "images"
    _write_images(image_root, rng)
    files = _write_files(root)
    clip = save_local_dir(root / "clip", seed=3)
    store = root / "store"
    argv = [f"--set={setting}" for setting in (
        f"dataset.annotations={files['extract']}", f"dataset.image_root={image_root}",
        f"dataset.split={root / 'split.json'}", f"dataset.proposals={root / 'proposals.json'}",
        f"model.clip=local-dir:{clip}", "runtime.device=cpu", "runtime.min_batch_size=4", "runtime.max_batch_size=16",
        "shard_size=3", "vocab.prompts=single", "regions.top_k=7", "regions.min_proposal_side=2",
        "crop.mode=tight", "runtime.max_failure_rate=1.0")] + ["--store", str(store)]
    extract_features.run(argv, test_pipeline=TestPipeline(argv=[]))
    _write_pseudo_labels(store, rng)
    return HostileStore(root, store, files["extract"], files["training"], files["full"], files["collision"])
