"""Crops the teachers learn from and are measured on: of objects, and of boxes on nothing.

Training crops come from freshly rendered ShapesOV scenes (their own random stream, never the detection train set:
the CLIP's "web pretraining" sees all 8 shapes, the detector's train set is untouched). Each object is cropped the
ways the feature pipeline crops regions — tight (with proposal-like jitter), square with context, scaled context —
and squashed to the model's input size exactly as the saved open_clip preprocess config does (PIL bicubic). Boxes on
nothing (background_boxes.py) are cropped the same ways, from the same scenes, with boxes drawn from a stream of
their own, so the object crops of a seed are the same with or without them.
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
from shapesov.render import BACKGROUND_KINDS
from shapesov.scenes import Scene, sample_scene
from shapesov.streams import stream_rng
from shapesov.teachers.background_boxes import BackgroundBox, sample_background_boxes
from shapesov.teachers.config import BackgroundCropConfig

CROP_MODES = ("tight", "square", "context")
# What a crop's box is: an object's own (jittered) box, or one of the boxes on nothing (background_boxes.py).
BOX_KINDS = ("object", "anywhere", "part", "loose")
NO_SHAPE = -1  # shape_ids of a crop that frames no object
NO_COLOUR = -1  # colour_ids of a crop that frames no object and shows no shape's part
NO_BACKGROUND = -1  # background_ids where the texture is not known (crops of a generated dataset's images)
# OADP-style square crops: side sqrt(8 * area), i.e. the object covers about an eighth of the crop.
SQUARE_AREA_FACTOR = 8.0
CONTEXT_SCALE = 1.5


@dataclass(frozen=True)
class CropBank:
    """Crops and what they show. pixels: (N, S, S, 3) uint8 RGB; shape_ids, colour_ids: (N,) long indices into
    SHAPE_NAMES / COLOUR_NAMES of the object the crop frames (NO_SHAPE: none; the colour is then that of the shape
    it shows a part of, or NO_COLOUR); background_ids: (N,) long index into render.BACKGROUND_KINDS (or
    NO_BACKGROUND); kind_ids: (N,) long index into BOX_KINDS."""

    pixels: torch.Tensor
    shape_ids: torch.Tensor
    colour_ids: torch.Tensor
    background_ids: torch.Tensor
    kind_ids: torch.Tensor

    def __len__(self) -> int:
        return int(self.shape_ids.shape[0])

    @property
    def frames_object(self) -> torch.Tensor:
        """(N,) bool: the crop's box frames an object."""
        return self.shape_ids != NO_SHAPE

    def subset(self, keep: torch.Tensor) -> "CropBank":
        """The crops where `keep` ((N,) bool) is True, in order."""
        return CropBank(self.pixels[keep], self.shape_ids[keep], self.colour_ids[keep], self.background_ids[keep],
                        self.kind_ids[keep])


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


class _BankRows:
    """Crops and labels as they are cut, stacked into a CropBank at the end."""

    def __init__(self):
        self.pixels, self.shapes, self.colours, self.backgrounds, self.kinds = [], [], [], [], []

    def add(self, pixels: np.ndarray, shape: int, colour: int, background: int, kind: str) -> None:
        self.pixels.append(pixels)
        self.shapes.append(shape)
        self.colours.append(colour)
        self.backgrounds.append(background)
        self.kinds.append(BOX_KINDS.index(kind))

    def add_background(self, image: Image.Image, found: list[BackgroundBox], objects: list[tuple[int, int]],
                       background: int, mode_of, size: int) -> None:
        """Crops of boxes on nothing; objects: (shape id, colour id) of the image's objects, in box order."""
        for item in found:
            window = crop_window(item.box, mode_of(), image.width, image.height)
            if item.framed is not None:
                shape, colour = objects[item.framed]
            else:
                shape, colour = NO_SHAPE, objects[item.part][1] if item.part is not None else NO_COLOUR
            self.add(squash_crop(image, window, size), shape, colour, background, item.kind)

    def bank(self) -> CropBank:
        labels = (torch.tensor(values, dtype=torch.long) for values in (self.shapes, self.colours, self.backgrounds,
                                                                         self.kinds))
        return CropBank(torch.from_numpy(np.stack(self.pixels)), *labels)


def _scene_boxes(scene: Scene) -> np.ndarray:
    return np.asarray([(x, y, x + w, y + h) for x, y, w, h in (o.bbox for o in scene.objects)],
                      dtype=np.float64).reshape(-1, 4)


def render_crop_bank(seed: int, purpose: str, n_scenes: int, crops_per_object: int, size: int, jitter: float,
                     mode_weights: tuple[float, ...] = (1.0, 1.0, 1.0), scene_cfg: SceneConfig = SceneConfig(),
                     background: BackgroundCropConfig | None = None) -> CropBank:
    """Crops of every object of `n_scenes` freshly rendered scenes, `crops_per_object` each, with crop modes drawn
    with probabilities proportional to `mode_weights` (order of CROP_MODES); with `background`, crops of each scene's
    boxes on nothing too (drawn from the stream "<purpose>_background"), cut the same ways."""
    mode_p = np.asarray(mode_weights, dtype=np.float64) / sum(mode_weights)
    rows = _BankRows()
    for index in range(n_scenes):
        rng = stream_rng(seed, purpose, index)
        scene = sample_scene(rng, scene_cfg)
        kind = BACKGROUND_KINDS.index(scene.background)
        labels = [(SHAPE_NAMES.index(o.shape), COLOUR_NAMES.index(o.colour)) for o in scene.objects]
        for obj, (shape, colour) in zip(scene.objects, labels):
            x, y, w, h = obj.bbox
            for _ in range(crops_per_object):
                mode = CROP_MODES[rng.choice(len(CROP_MODES), p=mode_p)]
                box = _jitter_box(rng, (x, y, x + w, y + h), jitter)
                rows.add(squash_crop(scene.image, crop_window(box, mode, scene.width, scene.height), size), shape,
                         colour, kind, "object")
        if background is not None:
            boxes_rng = stream_rng(seed, f"{purpose}_background", index)
            found = sample_background_boxes(boxes_rng, _scene_boxes(scene), scene.width, scene.height, background)
            rows.add_background(scene.image, found, labels, kind,
                                lambda: CROP_MODES[boxes_rng.choice(len(CROP_MODES), p=mode_p)], size)
    return rows.bank()


def _dataset_images(data_dir: Path, annotation_file: str, limit: int | None):
    """(image record, its annotations) of a generated split, annotations in file order."""
    coco = json.loads((data_dir / "annotations" / annotation_file).read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    images = {i["id"]: i for i in coco["images"]}
    by_image: dict[int, list[dict]] = {}
    for ann in coco["annotations"][:limit]:
        by_image.setdefault(ann["image_id"], []).append({**ann, "shape": names[ann["category_id"]]})
    return [(images[image_id], anns) for image_id, anns in by_image.items()]


def dataset_crops(data_dir: Path, annotation_file: str, image_dir: str, mode: str, size: int,
                  limit: int | None = None) -> CropBank:
    """Crops of the annotated boxes of a generated ShapesOV split (e.g. val), in annotation order."""
    rows = _BankRows()
    for image, anns in _dataset_images(data_dir, annotation_file, limit):
        with Image.open(data_dir / "images" / image_dir / image["file_name"]) as im:
            im = im.convert("RGB")
            for ann in anns:
                x, y, w, h = ann["bbox"]
                rows.add(squash_crop(im, crop_window((x, y, x + w, y + h), mode, im.width, im.height), size),
                         SHAPE_NAMES.index(ann["shape"]), COLOUR_NAMES.index(ann["colour"]), NO_BACKGROUND, "object")
    return rows.bank()


def dataset_background_crops(data_dir: Path, annotation_file: str, image_dir: str, mode: str, size: int,
                             cfg: BackgroundCropConfig, seed: int) -> CropBank:
    """Crops of boxes on nothing (background_boxes.py) drawn on every annotated image of a generated split, from the
    stream "teacher_eval_background"; boxes that frame an object are object crops of it."""
    rows = _BankRows()
    for image, anns in _dataset_images(data_dir, annotation_file, None):
        rng = stream_rng(seed, "teacher_eval_background", int(image["id"]))
        boxes = np.asarray([(x, y, x + w, y + h) for x, y, w, h in (a["bbox"] for a in anns)], dtype=np.float64)
        labels = [(SHAPE_NAMES.index(a["shape"]), COLOUR_NAMES.index(a["colour"])) for a in anns]
        with Image.open(data_dir / "images" / image_dir / image["file_name"]) as im:
            im = im.convert("RGB")
            found = sample_background_boxes(rng, boxes, im.width, im.height, cfg)
            rows.add_background(im, found, labels, NO_BACKGROUND, lambda: mode, size)
    return rows.bank()


def to_model_input(pixels: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """(N, S, S, 3) uint8 -> (N, 3, S, S) float32, normalised like open_clip's ToTensor + Normalize."""
    x = pixels.permute(0, 3, 1, 2).float() / 255.0
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
