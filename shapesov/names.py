"""Visual-Genome-style object names ("red star", "star") for the Open-Det side of the pipeline."""
from __future__ import annotations

import json
from pathlib import Path

from shapesov.classes import SHAPE_CLASSES

_NAME_BY_ID = {c.category_id: c.name for c in SHAPE_CLASSES}


def object_names(shape: str, colour: str) -> list[str]:
    """Names a human annotator would give the object, most specific first (VG lists several per object)."""
    return [f"{colour} {shape}", shape]


def write_names_jsonl(path: Path, annotations: list[dict]) -> None:
    """One line per annotation: {"image_id", "ann_id", "bbox": [x, y, w, h], "names": [...]}."""
    with path.open("w") as handle:
        for ann in annotations:
            row = {"image_id": ann["image_id"], "ann_id": ann["id"], "bbox": ann["bbox"],
                   "names": object_names(_NAME_BY_ID[ann["category_id"]], ann["colour"])}
            handle.write(json.dumps(row) + "\n")
