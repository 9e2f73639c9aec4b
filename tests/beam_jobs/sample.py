"""A handful of synthetic detection images in COCO format, with every kind of bad input on request."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CATEGORIES = [{"id": 1, "name": "circle"}, {"id": 2, "name": "square"}, {"id": 3, "name": "star"},
              {"id": 4, "name": "heart"}]
SPLIT = {"base": ["circle", "square"], "novel": ["star", "heart"]}
NOVEL_IDS = {3, 4}
DANGLING_IMAGE_ID = 555  # an annotation names it, `images` does not list it
UNKNOWN_PROPOSAL_IMAGE_ID = 999  # proposals name it, `images` does not list it


@dataclass
class Sample:
    root: Path
    annotations: Path
    image_root: Path
    split: Path
    proposals: Path

    def overrides(self, model_dir: Path) -> list[str]:
        """The job's keys for this sample. model.dtype fp32, not the default auto: the rows are compared with fp32
        computations, and auto may pick bf16 on a CPU that runs it faster (tests of auto set it themselves)."""
        return [f"dataset.annotations={self.annotations}", f"dataset.image_root={self.image_root}",
                f"dataset.split={self.split}", f"dataset.proposals={self.proposals}",
                f"model.clip=local-dir:{model_dir}", "runtime.device=cpu", "runtime.min_batch_size=4",
                "runtime.max_batch_size=16", "shard_size=3", "vocab.prompts=single", "model.dtype=fp32"]


def _scene(rng: np.random.Generator, image_id: int, width: int, height: int, folder: Path) -> tuple[dict, list]:
    image = Image.new("RGB", (width, height), tuple(int(v) for v in rng.integers(0, 255, 3)))
    draw = ImageDraw.Draw(image)
    annotations = []
    for k in range(3):
        w, h = rng.uniform(8, width / 2), rng.uniform(8, height / 2)
        x, y = rng.uniform(0, width - w), rng.uniform(0, height - h)
        draw.rectangle([x, y, x + w, y + h], fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
        annotations.append({"id": image_id * 10 + k, "image_id": image_id, "category_id": int(rng.integers(1, 5)),
                            "bbox": [round(x, 2), round(y, 2), round(w, 2), round(h, 2)], "iscrowd": 0})
    name = f"{image_id:04d}.png"
    image.save(folder / name)
    return {"id": image_id, "file_name": name, "width": width, "height": height}, annotations


def _proposals_for(rng: np.random.Generator, annotations: list, width: int, height: int) -> list[dict]:
    rows = []
    for annotation in annotations:
        x, y, w, h = annotation["bbox"]
        rows.append({"image_id": annotation["image_id"], "score": round(float(rng.uniform(0.5, 1)), 3),
                     "bbox": [x + 1, y + 1, w - 1, h - 1]})
    for _ in range(4):
        w, h = rng.uniform(6, width / 2), rng.uniform(6, height / 2)
        x, y = rng.uniform(0, width - w), rng.uniform(0, height - h)
        rows.append({"image_id": annotations[0]["image_id"], "score": round(float(rng.uniform(0, 1)), 3),
                     "bbox": [round(x, 2), round(y, 2), round(w, 2), round(h, 2)]})
    return rows


def make_sample(root: Path, images: int = 6, bad_inputs: bool = False, seed: int = 0) -> Sample:
    """`images` good images (ids 1..N); with `bad_inputs`, also a missing, a truncated and a non-image file,
    an annotation of an undefined category, a zero-width box, an annotation and proposals for unknown image ids and
    NaN / negative / out-of-image proposal boxes."""
    rng = np.random.default_rng(seed)
    image_root = root / "images"
    image_root.mkdir(parents=True)
    records, annotations, proposals = [], [], []
    for image_id in range(1, images + 1):
        width, height = int(rng.integers(40, 90)), int(rng.integers(40, 90))
        record, anns = _scene(rng, image_id, width, height, image_root)
        records.append(record)
        annotations += anns
        proposals += _proposals_for(rng, anns, width, height)
    if bad_inputs:
        records.append({"id": 101, "file_name": "missing.png", "width": 50, "height": 50})
        Image.fromarray(rng.integers(0, 255, (60, 60, 3), dtype=np.uint8)).save(image_root / "full.jpg", quality=95)
        (image_root / "truncated.jpg").write_bytes((image_root / "full.jpg").read_bytes()[:600])
        records.append({"id": 102, "file_name": "truncated.jpg", "width": 60, "height": 60})
        (image_root / "notes.png").write_text("this is not an image")
        records.append({"id": 103, "file_name": "notes.png", "width": 50, "height": 50})
        annotations += [{"id": 9001, "image_id": 1, "category_id": 99, "bbox": [2, 2, 10, 10], "iscrowd": 0},
                        {"id": 9002, "image_id": 2, "category_id": 1, "bbox": [5, 5, 0, 12], "iscrowd": 0},
                        {"id": 9003, "image_id": DANGLING_IMAGE_ID, "category_id": 1, "bbox": [1, 1, 8, 8],
                         "iscrowd": 0}]
        proposals += [{"image_id": UNKNOWN_PROPOSAL_IMAGE_ID, "bbox": [1, 1, 10, 10], "score": 0.5},
                      {"image_id": 1, "bbox": [math.nan, 1, 10, 10], "score": 0.9},
                      {"image_id": 2, "bbox": [-20, 1, 10, 10], "score": 0.9},
                      {"image_id": 3, "bbox": [5, 5, 500, 10], "score": 0.9}]
    coco = {"images": records, "annotations": annotations, "categories": CATEGORIES}
    (root / "instances.json").write_text(json.dumps(coco))
    (root / "split.json").write_text(json.dumps(SPLIT))
    (root / "proposals.json").write_text(json.dumps(proposals))
    return Sample(root, root / "instances.json", image_root, root / "split.json", root / "proposals.json")
