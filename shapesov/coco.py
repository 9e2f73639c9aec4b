"""COCO-format records of ShapesOV: categories, annotations of a scene, whole files and the OV split file."""
from __future__ import annotations

from shapesov.classes import BASE_NAMES, CATEGORY_ID_BY_NAME, NOVEL_NAMES, SHAPE_CLASSES
from shapesov.scenes import Scene


def categories() -> list[dict]:
    return [{"id": c.category_id, "name": c.name, "supercategory": "shape"} for c in SHAPE_CLASSES]


def scene_annotations(scene: Scene, image_id: int, first_ann_id: int) -> list[dict]:
    """COCO annotation dicts of a scene's objects (with an extra `colour` field)."""
    return [{"id": first_ann_id + k, "image_id": image_id, "category_id": CATEGORY_ID_BY_NAME[obj.shape],
             "bbox": list(obj.bbox), "area": obj.area, "iscrowd": 0, "segmentation": [list(obj.polygon)],
             "colour": obj.colour} for k, obj in enumerate(scene.objects)]


def coco_file(images: list[dict], annotations: list[dict], description: str) -> dict:
    return {"info": {"description": description, "version": "1.0"}, "licenses": [], "images": images,
            "annotations": annotations, "categories": categories()}


def ov_split() -> dict:
    return {"base": list(BASE_NAMES), "novel": list(NOVEL_NAMES),
            "base_ids": [CATEGORY_ID_BY_NAME[n] for n in BASE_NAMES],
            "novel_ids": [CATEGORY_ID_BY_NAME[n] for n in NOVEL_NAMES]}
