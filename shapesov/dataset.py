"""Write a whole ShapesOV dataset: images, COCO annotations, the OV split, proposals and object names.

Layout under the output directory:
    images/{train,val}/<image_id:012d>.jpg
    annotations/train_base.json            base-class train annotations, all 8 categories listed
    annotations/train_novel_heldout.json   novel-class train annotations: for evaluation only, never for training
    annotations/val.json                   all classes
    ov_split.json                          {"base": [...], "novel": [...], "base_ids": [...], "novel_ids": [...]}
    proposals/{train,val}.json             COCO-results [{"image_id", "bbox": [x, y, w, h], "score"}]
    proposals/{train,val}.pkl              mmdet-style list of (N, 5) float32 x1, y1, x2, y2, score, in image order
    names/train.jsonl                      VG-style names of the base-class train boxes
    broken/                                a small COCO set with broken entries (see broken.py)
    config.json                            the resolved generator config
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shapesov.broken import write_broken_set
from shapesov.coco import coco_file, ov_split, scene_annotations
from shapesov.config import ShapesConfig
from shapesov.names import write_names_jsonl
from shapesov.proposals import simulate_proposals, write_proposals_json, write_proposals_pickle
from shapesov.scenes import sample_scene
from shapesov.streams import ID_OFFSETS, proposal_rng, stream_rng


@dataclass
class SplitRecords:
    images: list[dict]
    annotations: list[dict]
    proposals: list[np.ndarray]


def generate_split(out: Path, split: str, count: int, cfg: ShapesConfig) -> SplitRecords:
    """Render `count` scenes of `split` into out/images/<split>/ and return their records."""
    image_dir = out / "images" / split
    image_dir.mkdir(parents=True, exist_ok=True)
    records = SplitRecords([], [], [])
    next_ann_id = ID_OFFSETS[split] + 1
    for index in range(count):
        image_id = ID_OFFSETS[split] + index + 1
        scene = sample_scene(stream_rng(cfg.seed, split, index), cfg.scene)
        file_name = f"{image_id:012d}.jpg"
        scene.image.save(image_dir / file_name, quality=cfg.jpeg_quality)
        records.images.append({"id": image_id, "file_name": file_name, "width": scene.width, "height": scene.height})
        anns = scene_annotations(scene, image_id, next_ann_id)
        next_ann_id += len(anns)
        records.annotations.extend(anns)
        xyxy = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)]).reshape(-1, 4)
        records.proposals.append(simulate_proposals(proposal_rng(cfg.seed, split, index), xyxy, scene.width, scene.height, cfg.proposals))
    return records


def _write_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def _write_proposals(out: Path, split: str, records: SplitRecords) -> None:
    (out / "proposals").mkdir(parents=True, exist_ok=True)
    image_ids = [image["id"] for image in records.images]
    write_proposals_json(out / "proposals" / f"{split}.json", image_ids, records.proposals)
    write_proposals_pickle(out / "proposals" / f"{split}.pkl", records.proposals)


def write_dataset(out: Path, cfg: ShapesConfig, resolved_config: dict) -> None:
    """Generate the full ShapesOV layout (module docstring) under `out`."""
    novel_ids = set(ov_split()["novel_ids"])
    train = generate_split(out, "train", cfg.train_images, cfg)
    base_anns = [a for a in train.annotations if a["category_id"] not in novel_ids]
    novel_anns = [a for a in train.annotations if a["category_id"] in novel_ids]
    _write_json(out / "annotations" / "train_base.json",
                coco_file(train.images, base_anns, "ShapesOV train, base classes only"))
    _write_json(out / "annotations" / "train_novel_heldout.json",
                coco_file(train.images, novel_anns, "ShapesOV train, novel classes: evaluation only"))
    _write_proposals(out, "train", train)
    (out / "names").mkdir(parents=True, exist_ok=True)
    write_names_jsonl(out / "names" / "train.jsonl", base_anns)

    val = generate_split(out, "val", cfg.val_images, cfg)
    _write_json(out / "annotations" / "val.json", coco_file(val.images, val.annotations, "ShapesOV val, all classes"))
    _write_proposals(out, "val", val)

    _write_json(out / "ov_split.json", ov_split())
    write_broken_set(out / "broken", cfg, stream_rng(cfg.seed, "broken", 0))
    _write_json(out / "config.json", resolved_config)
