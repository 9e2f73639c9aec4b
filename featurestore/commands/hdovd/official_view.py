"""A COCO / LVIS file as HD-OVD's official trainer (mmdet 2.x) reads it: the image order its proposals pickle
follows, the GT rows of each image and the label of each category.

Facts from the official code (iSEE-Laboratory/HD-OVD, its mmdet 2.x copy), restated in our words:
- CocoDataset.load_annotations keeps the file's `images` order; CustomDataset reads the proposals pickle as one
  entry per image in that order and only then drops training images without GT, so the pickle lists every image.
- Labels: the file's categories whose name is one of the dataset's classes (here: the store's classes), in the
  file's category order (`get_cat_ids(cat_names=CLASSES)`, then `cat2label`).
- CocoDataset._parse_ann_info, per annotation of the image in file order: an `ignore` flag skips it; so does a box
  that does not intersect the image; so, when the annotation has an `area`, do area <= 0, w < 1 and h < 1; so does a
  category without a label; a crowd box becomes a box to ignore; every other annotation is a GT row. Resize later
  clips the rows to the image.
- It refuses a file whose annotation ids repeat; pycocotools keeps one record per image id.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from numbers import Real

from pipelines.coco import AnnotationError, read_json


@dataclass(frozen=True)
class GtRow:
    annotation_id: int
    category: str  # category name
    box: tuple[float, float, float, float]  # xyxy, clipped to the image as Resize clips it


@dataclass(frozen=True)
class OfficialImage:
    image_id: int
    file_name: str
    width: int
    height: int
    gt: tuple[GtRow, ...]


@dataclass(frozen=True)
class OfficialView:
    path: str
    images: tuple[OfficialImage, ...]  # the file's `images` order: the order of proposals.pkl
    labels: tuple[str, ...]  # category names by label: the file's categories that are classes, in file order
    data: dict  # the parsed file, for writing a copy restricted to some images


def _number(value: object) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _file_name(record: dict) -> str:
    # mmdet's LVIS datasets name an image by its coco_url, whose tail is "<split folder>/<file>".
    if "file_name" in record:
        return str(record["file_name"])
    return "/".join(str(record["coco_url"]).split("/")[-2:])


def _image(record: object, path: str) -> tuple[int, str, int, int]:
    try:
        return int(record["id"]), _file_name(record), int(record["width"]), int(record["height"])
    except (KeyError, TypeError, ValueError) as error:
        raise AnnotationError(f"{path}: image record {record!r:.200} is incomplete ({error!r})") from error


def _check_annotation(record: object, path: str) -> None:
    """The fields the official loader reads, well typed (it would crash on them otherwise)."""
    if not isinstance(record, dict) or not all(key in record for key in ("id", "image_id", "category_id", "bbox")):
        raise AnnotationError(f"{path}: annotation {record!r:.200} lacks one of id, image_id, category_id, bbox")
    if not all(isinstance(record[key], int) and not isinstance(record[key], bool)
               for key in ("id", "image_id", "category_id")):
        raise AnnotationError(f"{path}: annotation {record!r:.200} has an id, image_id or category_id that is not an "
                              f"integer")
    bbox = record["bbox"]
    if not isinstance(bbox, list) or len(bbox) != 4 or not all(_number(v) for v in bbox):
        raise AnnotationError(f"{path}: annotation {record['id']} has bbox {bbox!r:.80}, not 4 numbers")
    if "area" in record and not _number(record["area"]):
        raise AnnotationError(f"{path}: annotation {record['id']} has area {record['area']!r:.80}, not a number")


def gt_rows(annotations: list[dict], width: int, height: int, labelled: dict[int, str]) -> tuple[GtRow, ...]:
    """The GT rows of one image: its annotations (file order) that _parse_ann_info keeps as boxes with labels.

    labelled: category id → name, for the categories that have a label. The intersection test is written as the
    official one, so a NaN coordinate is skipped as it is there (its intersection comes out 0).
    """
    rows = []
    for annotation in annotations:
        if annotation.get("ignore", False):
            continue
        x, y, w, h = annotation["bbox"]
        inter_w = max(0, min(x + w, width) - max(x, 0))
        inter_h = max(0, min(y + h, height) - max(y, 0))
        if inter_w * inter_h == 0:
            continue
        if "area" in annotation and (annotation["area"] <= 0 or w < 1 or h < 1):
            continue
        if annotation["category_id"] not in labelled:
            continue
        if annotation.get("iscrowd", False):
            continue  # a box to ignore, never a GT row
        box = (min(max(x, 0), width), min(max(y, 0), height), min(max(x + w, 0), width), min(max(y + h, 0), height))
        rows.append(GtRow(int(annotation["id"]), labelled[annotation["category_id"]], tuple(float(v) for v in box)))
    return tuple(rows)


def read_official_view(path: str, class_names: frozenset[str]) -> OfficialView:
    """The file at `path` as the official trainer reads it, with the store's class names as its classes."""
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) or \
            not isinstance(data.get("categories"), list):
        raise AnnotationError(f"{path} is not a COCO/LVIS instances file (needs 'images' and 'categories' lists)")
    try:
        categories = [(int(c["id"]), str(c["name"])) for c in data["categories"]]
    except (KeyError, TypeError, ValueError) as error:
        raise AnnotationError(f"{path}: a category lacks an integer id or a name ({error!r})") from error
    labelled = {category_id: name for category_id, name in categories if name in class_names}
    images = [_image(record, path) for record in data["images"]]
    ids = [image[0] for image in images]
    if len(set(ids)) != len(ids):
        repeated = sorted(i for i, count in Counter(ids).items() if count > 1)[:10]
        raise AnnotationError(f"{path}: image ids {repeated} appear more than once in 'images'")
    by_image: dict[int, list[dict]] = {}
    for record in data.get("annotations", []):
        _check_annotation(record, path)
        by_image.setdefault(int(record["image_id"]), []).append(record)
    known = set(ids)
    annotation_ids = [int(a["id"]) for image_id, rows in by_image.items() if image_id in known for a in rows]
    if len(set(annotation_ids)) != len(annotation_ids):
        raise AnnotationError(f"{path}: annotation ids are not unique, which mmdet's CocoDataset refuses")
    return OfficialView(
        path=path,
        images=tuple(OfficialImage(image_id, file_name, width, height,
                                   gt_rows(by_image.get(image_id, []), width, height, labelled))
                     for image_id, file_name, width, height in images),
        labels=tuple(name for category_id, name in categories if category_id in labelled),
        data=data)
