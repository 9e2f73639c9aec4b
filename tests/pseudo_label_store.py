"""A small extract-features store written through the real ShardWriter, with a tiny real CLIP and real images.

Region embeddings of pseudo boxes are the tiny CLIP's own text embeddings of known words, so which candidate CLIP
picks is known in advance: a box embedded as "star" whose caption offers "red star", "star" and "wall" must get
"star" with cosine 1.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
from PIL import Image

from featurestore.atomic import sha256_file
from featurestore.manifest import ModelRecord
from featurestore.stages import EXTRACT_FEATURES
from featurestore.writer import ShardWriter
from vlm.clip import load_clip, resolve_clip
from vlm.prompts import text_embeddings
from schemas.tables import embedding_type
from tests.tiny_teachers import CLIP_DIM, write_tiny_clip

PROMPTS = "single"
# Per image: region 0 is a GT box, 1-3 are proposals (pseudo boxes), 4 is the whole image.
PROPOSAL_WORDS = ("star", "heart", "circle")
IMAGE_SIZE = (64, 48)
BOXES = {0: [2.0, 2.0, 20.0, 20.0], 1: [30.0, 4.0, 50.0, 24.0], 2: [4.0, 26.0, 24.0, 46.0],
         3: [36.0, 28.0, 60.0, 44.0], 4: [0.0, 0.0, 64.0, 48.0]}


@dataclass(frozen=True)
class LabelStore:
    root: Path
    clip_model: str  # "local-dir:<folder>"
    image_root: Path
    image_ids: tuple[tuple[int, ...], ...]  # per shard
    word_embeddings: dict[str, np.ndarray]  # word → (D,) float32 tiny-CLIP text embedding ("single" prompt)


def embed_words(clip_model: str, words) -> dict[str, np.ndarray]:
    clip = load_clip(resolve_clip(clip_model, None, None), device="cpu")
    rows = text_embeddings(clip.model, clip.tokenizer, list(words), PROMPTS, clip.device)
    return dict(zip(words, rows))


def write_images(image_root: Path, image_ids) -> None:
    image_root.mkdir(parents=True, exist_ok=True)
    for image_id in image_ids:
        pixels = np.full((IMAGE_SIZE[1], IMAGE_SIZE[0], 3), 90, dtype=np.uint8)
        for region_id, (x0, y0, x1, y1) in BOXES.items():
            if region_id in (1, 2, 3):
                pixels[int(y0):int(y1), int(x0):int(x1)] = (40 * region_id, 200, 255 - 30 * image_id % 200)
        Image.fromarray(pixels).save(image_root / f"{image_id:04d}.png")


def region_norm(image_id: int, region_id: int) -> float:
    """The raw embedding length recorded for a region of this store."""
    return 5.0 + 0.25 * region_id + 0.01 * (image_id % 100)


def shard_regions(image_ids, words: dict[str, np.ndarray], null_embedding: set[tuple[int, int]]) -> dict:
    rows = [(i, r) for i in image_ids for r in BOXES]
    sources = {0: "gt", 1: "proposal", 2: "proposal", 3: "proposal", 4: "image"}
    embeddings = []
    for image_id, region_id in rows:
        if (image_id, region_id) in null_embedding:
            embeddings.append(None)
        elif sources[region_id] == "proposal":
            embeddings.append(words[PROPOSAL_WORDS[region_id - 1]].astype(np.float16).tolist())
        else:
            embeddings.append(words["square"].astype(np.float16).tolist())
    return {"image_id": [i for i, _ in rows], "region_id": [r for _, r in rows], "box": [BOXES[r] for _, r in rows],
            "source": [sources[r] for _, r in rows], "category_id": [2 if r == 0 else None for _, r in rows],
            "proposal_score": [0.5 if sources[r] == "proposal" else None for _, r in rows],
            "max_iou_base": [0.0] * len(rows), "crop_mode": ["tight"] * len(rows),
            "crop_box": [BOXES[r] for _, r in rows],
            "embedding": pa.array(embeddings, type=embedding_type(CLIP_DIM)),
            # Raw encode_image lengths, distinct per region so a test can tell which one a captioner received.
            "embedding_norm": [region_norm(i, r) for i, r in rows]}


def write_label_store(tmp: Path, shards: int = 2, images_per_shard: int = 2,
                      null_embedding: set[tuple[int, int]] = frozenset()) -> LabelStore:
    """An extract-features stage (images, regions, class vocab) as the real job records it."""
    clip_dir = write_tiny_clip(tmp / "clip")
    clip_model = f"local-dir:{clip_dir}"
    source = resolve_clip(clip_model, None, None)
    words = embed_words(clip_model, [*PROPOSAL_WORDS, "square", "red star", "wall"])
    image_ids = tuple(tuple(100 * (s + 1) + i for i in range(images_per_shard)) for s in range(shards))
    image_root = tmp / "images"
    write_images(image_root, [i for ids in image_ids for i in ids])
    root = tmp / "store"
    writer = ShardWriter(root, EXTRACT_FEATURES, CLIP_DIM)
    writer.open_stage({"model": {"clip": clip_model, "checkpoint": None, "model_config_dir": None},
                       "vocab": {"prompts": PROMPTS}, "dataset": {"image_root": str(image_root)}}, "hash-extract",
                      {"clip": ModelRecord(sha256=sha256_file(source.weights_path), name=clip_model,
                                           path=source.weights_path, prompts=PROMPTS)})
    for shard, ids in enumerate(image_ids):
        images = {"image_id": list(ids), "file_name": [f"{i:04d}.png" for i in ids],
                  "width": [IMAGE_SIZE[0]] * len(ids), "height": [IMAGE_SIZE[1]] * len(ids),
                  "sha256": ["0" * 64] * len(ids),
                  "embedding": np.stack([words["square"]] * len(ids)),
                  "embedding_norm": [region_norm(i, max(BOXES)) for i in ids]}
        writer.commit(shard, {"images": images, "regions": shard_regions(ids, words, set(null_embedding))},
                      fingerprint=f"extract-{shard}", with_wds=False)
    writer.commit_table("vocab", {"name": ["square", "star"], "kind": ["class", "class"], "category_id": [2, 4],
                                  "split": ["base", "novel"], "prompts": [PROMPTS] * 2,
                                  "embedding": np.stack([words["square"], words["star"]])})
    writer.finish_stage()
    return LabelStore(root, clip_model, image_root, image_ids, words)


def write_given_captions(path: Path, captions: dict[tuple[int, int], str]) -> Path:
    path.write_text("".join(json.dumps({"image_id": i, "region_id": r, "caption": c}) + "\n"
                            for (i, r), c in sorted(captions.items())))
    return path
