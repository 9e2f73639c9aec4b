"""Object crops the teachers learn from and are measured on.

Training crops come from freshly rendered ShapesOV scenes (their own random stream, never the detection train set:
the CLIP's "web pretraining" sees all 8 shapes, the detector's train set is untouched). Each object is cropped the
ways the feature pipeline crops regions — tight (with proposal-like jitter), square with context, scaled context —
and squashed to the model's input size exactly as the saved open_clip preprocess config does (PIL bicubic).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from shapesov.classes import COLOUR_NAMES, SHAPE_NAMES
from shapesov.config import SceneConfig
from shapesov.scenes import sample_scene
from shapesov.streams import stream_rng

CROP_MODES = ("tight", "square", "context")
# OADP-style square crops: side sqrt(8 * area), i.e. the object covers about an eighth of the crop.
SQUARE_AREA_FACTOR = 8.0
CONTEXT_SCALE = 1.5


@dataclass(frozen=True)
class CropBank:
    """Crops and their labels. pixels: (N, S, S, 3) uint8 RGB; shape_ids, colour_ids: (N,) long indices into
    SHAPE_NAMES / COLOUR_NAMES."""

    pixels: torch.Tensor
    shape_ids: torch.Tensor
    colour_ids: torch.Tensor

    def __len__(self) -> int:
        return int(self.shape_ids.shape[0])


def crop_window(box: tuple[float, float, float, float], mode: str, width: int, height: int) -> tuple[int, int, int, int]:
    """Pixel window (x0, y0, x1, y1) to cut for an xyxy `box` in a width x height image."""
    x0, y0, x1, y1 = box
    cx, cy, w, h = (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0
    if mode == "tight":
        half_w, half_h = w / 2, h / 2
    elif mode == "context":
        half_w, half_h = w * CONTEXT_SCALE / 2, h * CONTEXT_SCALE / 2
    elif mode == "square":
        side = min(math.sqrt(SQUARE_AREA_FACTOR * w * h), width, height)
        half_w = half_h = side / 2
        cx = min(max(cx, half_w), width - half_w)  # shift, not shrink, to stay inside the image
        cy = min(max(cy, half_h), height - half_h)
    else:
        raise ValueError(f"unknown crop mode {mode!r}: use one of {CROP_MODES}")
    left, top = max(int(math.floor(cx - half_w)), 0), max(int(math.floor(cy - half_h)), 0)
    right, bottom = min(int(math.ceil(cx + half_w)), width), min(int(math.ceil(cy + half_h)), height)
    return left, top, max(right, left + 1), max(bottom, top + 1)


def squash_crop(image: Image.Image, window: tuple[int, int, int, int], size: int) -> np.ndarray:
    """(size, size, 3) uint8: the window resized without keeping aspect (open_clip resize_mode 'squash')."""
    return np.array(image.crop(window).resize((size, size), Image.BICUBIC), dtype=np.uint8)


def _jitter_box(rng: np.random.Generator, box: tuple[float, ...], amount: float) -> tuple[float, ...]:
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    cx, cy = (x0 + x1) / 2 + rng.normal(0, amount) * w, (y0 + y1) / 2 + rng.normal(0, amount) * h
    w, h = w * math.exp(rng.normal(0, amount)), h * math.exp(rng.normal(0, amount))
    return cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2


def render_crop_bank(seed: int, purpose: str, n_scenes: int, crops_per_object: int, size: int, jitter: float,
                     mode_weights: tuple[float, ...] = (1.0, 1.0, 1.0),
                     scene_cfg: SceneConfig = SceneConfig()) -> CropBank:
    """Crops of every object of `n_scenes` freshly rendered scenes, `crops_per_object` each, with crop modes drawn
    with probabilities proportional to `mode_weights` (order of CROP_MODES)."""
    mode_p = np.asarray(mode_weights, dtype=np.float64) / sum(mode_weights)
    pixels, shapes, colours = [], [], []
    for index in range(n_scenes):
        rng = stream_rng(seed, purpose, index)
        scene = sample_scene(rng, scene_cfg)
        for obj in scene.objects:
            x, y, w, h = obj.bbox
            for _ in range(crops_per_object):
                mode = CROP_MODES[rng.choice(len(CROP_MODES), p=mode_p)]
                box = _jitter_box(rng, (x, y, x + w, y + h), jitter)
                pixels.append(squash_crop(scene.image, crop_window(box, mode, scene.width, scene.height), size))
                shapes.append(SHAPE_NAMES.index(obj.shape))
                colours.append(COLOUR_NAMES.index(obj.colour))
    return CropBank(torch.from_numpy(np.stack(pixels)), torch.tensor(shapes), torch.tensor(colours))


def dataset_crops(data_dir: Path, annotation_file: str, image_dir: str, mode: str, size: int,
                  limit: int | None = None) -> CropBank:
    """Crops of the annotated boxes of a generated ShapesOV split (e.g. val), in annotation order."""
    coco = json.loads((data_dir / "annotations" / annotation_file).read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    images = {i["id"]: i for i in coco["images"]}
    by_image: dict[int, list[dict]] = {}
    for ann in coco["annotations"][:limit]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    pixels, shapes, colours = [], [], []
    for image_id, anns in by_image.items():
        with Image.open(data_dir / "images" / image_dir / images[image_id]["file_name"]) as im:
            im = im.convert("RGB")
            for ann in anns:
                x, y, w, h = ann["bbox"]
                pixels.append(squash_crop(im, crop_window((x, y, x + w, y + h), mode, im.width, im.height), size))
                shapes.append(SHAPE_NAMES.index(names[ann["category_id"]]))
                colours.append(COLOUR_NAMES.index(ann["colour"]))
    return CropBank(torch.from_numpy(np.stack(pixels)), torch.tensor(shapes), torch.tensor(colours))


def to_model_input(pixels: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """(N, S, S, 3) uint8 -> (N, 3, S, S) float32, normalised like open_clip's ToTensor + Normalize."""
    x = pixels.permute(0, 3, 1, 2).float() / 255.0
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
