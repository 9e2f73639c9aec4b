"""A small COCO set in which every kind of bad input the pipeline must survive appears once.

broken/annotations.json lists good images beside:
    truncated JPEG (half the bytes of a real one), a missing file, a non-image file with a .jpg name;
and, on the first good image, annotations with a box outside the image, a zero-area box and an unknown category id.
broken/expected.json says, per image id and per annotation id, which failure each one is meant to trigger, so failure
tests compare against data instead of re-stating it.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from shapesov.coco import coco_file, scene_annotations
from shapesov.config import ShapesConfig
from shapesov.scenes import sample_scene
from shapesov.streams import ID_OFFSETS

UNKNOWN_CATEGORY_ID = 999


def _image_entry(image_id: int, file_name: str, width: int, height: int) -> dict:
    return {"id": image_id, "file_name": file_name, "width": width, "height": height}


def _bad_annotations(image: dict, first_ann_id: int) -> list[dict]:
    """A box outside the image, a zero-area box and an unknown category, all on `image`."""
    w, h = image["width"], image["height"]
    common = {"image_id": image["id"], "iscrowd": 0, "segmentation": [], "colour": "red"}
    return [
        {**common, "id": first_ann_id, "category_id": 1, "bbox": [w + 10.0, h + 10.0, 20.0, 20.0], "area": 400.0},
        {**common, "id": first_ann_id + 1, "category_id": 2, "bbox": [5.0, 5.0, 0.0, 12.0], "area": 0.0},
        {**common, "id": first_ann_id + 2, "category_id": UNKNOWN_CATEGORY_ID, "bbox": [4.0, 4.0, 16.0, 16.0],
         "area": 256.0},
    ]


def write_broken_set(out: Path, cfg: ShapesConfig, rng: np.random.Generator) -> None:
    """Write annotations.json, expected.json and images/ under `out`."""
    image_dir = out / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    images, annotations, expected_images = [], [], {}
    next_id = ID_OFFSETS["broken"] + 1
    jpeg_bytes = b""
    for _ in range(max(cfg.broken_good_images, 1)):
        scene = sample_scene(rng, cfg.scene)
        buffer = io.BytesIO()
        scene.image.save(buffer, format="JPEG", quality=cfg.jpeg_quality)
        jpeg_bytes = buffer.getvalue()
        entry = _image_entry(next_id, f"good_{next_id}.jpg", scene.width, scene.height)
        (image_dir / entry["file_name"]).write_bytes(jpeg_bytes)
        images.append(entry)
        annotations.extend(scene_annotations(scene, next_id, next_id * 10))
        expected_images[next_id] = "ok"
        next_id += 1

    width, height = images[0]["width"], images[0]["height"]
    truncated = _image_entry(next_id, "truncated.jpg", width, height)
    (image_dir / truncated["file_name"]).write_bytes(jpeg_bytes[: len(jpeg_bytes) // 2])
    missing = _image_entry(next_id + 1, "missing.jpg", width, height)  # listed, never written
    not_image = _image_entry(next_id + 2, "not_an_image.jpg", width, height)
    (image_dir / not_image["file_name"]).write_text("this is a text file, not a JPEG\n")
    images += [truncated, missing, not_image]
    expected_images.update({truncated["id"]: "truncated_image", missing["id"]: "missing_file",
                            not_image["id"]: "not_an_image"})

    bad = _bad_annotations(images[0], next_id * 10)
    annotations += bad
    expected = {
        "images": {str(k): v for k, v in expected_images.items()},
        "annotations": {str(bad[0]["id"]): "box_outside_image", str(bad[1]["id"]): "zero_area_box",
                        str(bad[2]["id"]): "unknown_category"},
    }
    (out / "annotations.json").write_text(json.dumps(coco_file(images, annotations, "ShapesOV broken inputs")))
    (out / "expected.json").write_text(json.dumps(expected, indent=1))
