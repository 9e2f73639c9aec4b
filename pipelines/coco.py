"""COCO / LVIS annotation files: categories, images in dataset order, annotations per image.

Files are read through an `open_fn(path, mode)` so the same code reads local files and any filesystem
Beam knows (beam_jobs passes `FileSystems.open`); this module never imports Beam.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Callable, BinaryIO

OpenFn = Callable[[str], BinaryIO]


class AnnotationError(ValueError):
    """An annotation file that cannot be used; the message names the file and the offending record."""


def open_local(path: str) -> BinaryIO:
    return open(path, "rb")


@dataclass(frozen=True)
class Category:
    category_id: int
    name: str
    frequency: str | None = None  # LVIS: "r" (rare), "c" (common), "f" (frequent); None for COCO


@dataclass(frozen=True)
class ImageRecord:
    image_id: int
    file_name: str  # relative to the image root
    width: int
    height: int


@dataclass(frozen=True)
class Annotation:
    annotation_id: int
    image_id: int
    category_id: int
    bbox_xywh: tuple[float, float, float, float]  # COCO convention: top-left x, y, width, height in pixels
    iscrowd: bool = False


@dataclass(frozen=True)
class UnknownImageRows:
    """Input rows naming an image id the annotation file does not list (a dead letter, like a bad box): the rest of
    the dataset is processed, and each unknown id of each input becomes one failures row."""

    image_id: int
    count: int
    source: str = "proposals"  # "proposals" | "annotations": which input named the id
    ids: tuple[int, ...] = ()  # the annotation ids, for annotations


@dataclass(frozen=True)
class CocoDataset:
    """Categories, images in the file's order (the "dataset order" of proposal pickles), annotations by image."""

    categories: tuple[Category, ...]
    images: tuple[ImageRecord, ...]
    annotations: dict[int, tuple[Annotation, ...]] = field(default_factory=dict)
    source: str = ""
    # Annotations whose category id is not in `categories`, by image: dead letters, never regions.
    unknown_category: dict[int, tuple[Annotation, ...]] = field(default_factory=dict)
    # Annotations whose image id is not in `images` ("dangling"), by that id: dead letters of the job, not a reason to
    # refuse the file (pycocotools and mmdet load such a file and never look at them).
    unknown_image: dict[int, tuple[Annotation, ...]] = field(default_factory=dict)

    def category_names(self) -> dict[int, str]:
        return {c.category_id: c.name for c in self.categories}

    def image_ids(self) -> list[int]:
        return [image.image_id for image in self.images]

    def dangling_annotations(self) -> list[UnknownImageRows]:
        """One record per image id that only annotations name, ids ascending."""
        return [UnknownImageRows(image_id, len(rows), "annotations", tuple(a.annotation_id for a in rows))
                for image_id, rows in sorted(self.unknown_image.items())]


def read_json(path: str, open_fn: OpenFn = open_local, what: str = "annotation file", key: str | None = None
              ) -> object:
    """The JSON at `path`; errors name the file as `what` and the config key (or flag) `key` that set it."""
    where = f" (config key {key})" if key else ""
    try:
        with open_fn(path) as handle:
            return json.loads(handle.read())
    except FileNotFoundError as error:
        raise FileNotFoundError(f"{what} not found: {path}{where}") from error
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise AnnotationError(f"{what} {path}{where} is not valid JSON: {error}") from error


def _file_name(record: dict, path: str) -> str:
    """COCO has `file_name`; LVIS v1 has only `coco_url`, whose last two parts are `<split folder>/<file>`."""
    if "file_name" in record:
        return str(record["file_name"])
    if "coco_url" in record:
        return "/".join(str(record["coco_url"]).split("/")[-2:])
    raise AnnotationError(f"{path}: image {record.get('id')} has neither file_name nor coco_url")


def _image(record: dict, path: str) -> ImageRecord:
    try:
        return ImageRecord(int(record["id"]), _file_name(record, path), int(record["width"]), int(record["height"]))
    except (KeyError, TypeError, ValueError) as error:
        raise AnnotationError(f"{path}: image record {record!r:.200} is incomplete ({error})") from error


def _annotation(record: dict, path: str) -> Annotation:
    try:
        bbox = tuple(float(v) for v in record["bbox"])
        if len(bbox) != 4:
            raise ValueError(f"bbox has {len(bbox)} values")
        return Annotation(int(record["id"]), int(record["image_id"]), int(record["category_id"]), bbox,
                          bool(record.get("iscrowd", 0)))
    except (KeyError, TypeError, ValueError) as error:
        raise AnnotationError(f"{path}: annotation {record.get('id')!r} is malformed ({error})") from error


def read_coco(path: str, open_fn: OpenFn = open_local, key: str | None = None) -> CocoDataset:
    """Parse a COCO or LVIS instances file (set by config key or flag `key`, which errors name). Annotations keep the
    file's order within each image."""
    return parse_coco(read_json(path, open_fn, "annotation file", key), path)


def parse_coco(data: object, path: str) -> CocoDataset:
    """The CocoDataset of an instances file's parsed JSON `data`; `path` names the file in errors."""
    if not isinstance(data, dict) or "images" not in data or "categories" not in data:
        raise AnnotationError(f"{path} is not a COCO/LVIS instances file (needs 'images' and 'categories')")
    categories = tuple(Category(int(c["id"]), str(c["name"]), c.get("frequency")) for c in data["categories"])
    images = tuple(_image(r, path) for r in data["images"])
    ids = [image.image_id for image in images]
    if len(set(ids)) != len(ids):
        raise AnnotationError(f"{path}: image ids are not unique")
    known = set(ids)
    category_ids = {c.category_id for c in categories}
    by_image: dict[int, list[Annotation]] = {}
    unknown_category: dict[int, list[Annotation]] = {}
    unknown_image: dict[int, list[Annotation]] = {}
    for record in data.get("annotations", []):
        annotation = _annotation(record, path)
        if annotation.image_id not in known:
            target = unknown_image
        else:
            target = by_image if annotation.category_id in category_ids else unknown_category
        target.setdefault(annotation.image_id, []).append(annotation)
    return CocoDataset(categories, images, {k: tuple(v) for k, v in by_image.items()}, source=path,
                       unknown_category={k: tuple(v) for k, v in unknown_category.items()},
                       unknown_image={k: tuple(v) for k, v in unknown_image.items()})
