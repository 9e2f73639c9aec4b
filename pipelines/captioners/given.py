"""`given` captioner: captions made elsewhere, read from a JSONL file, one caption per line, keyed by what users have:

    {"image_id": 42, "bbox": [x, y, w, h], "caption": "a dog on a sofa"}    the box in image pixels (COCO's bbox)
    {"image_id": 42, "region_id": 3, "caption": "a dog on a sofa"}          a region id of the store

A caption keyed by box belongs to the image's stored pseudo box it overlaps most, when their IoU is at least
`captioner.given.min_iou` (a box written by the job that wrote the proposals matches its own stored copy at IoU 1;
extract-features clips boxes to the image, which lowers it a little). Captions that match no stored box are counted
(`GivenCaptions.unmatched`, in the job's log and summary); a stored box without a caption gets none (a failures row).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from pipelines.boxes import pairwise_iou, xywh_to_xyxy
from pipelines.captioners.base import ImageRegions, register_captioner
from pipelines.pseudo_labels_config import GivenSection
from vlm.hub import ModelFiles

KEY = "captioner.given.path"


@dataclass
class GivenCaptions:
    """The file's captions: by (image_id, region_id), and by image as (boxes (N, 4) xyxy, captions)."""

    by_region: dict[tuple[int, int], str] = field(default_factory=dict)
    by_box: dict[int, tuple[np.ndarray, list[str]]] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return len(self.by_region) + sum(len(captions) for _, captions in self.by_box.values())

    def for_image(self, image_id: int, region_ids: Sequence[int], boxes: np.ndarray, min_iou: float) -> list[str]:
        """The captions of one image's regions, in region order ("" where the file has none)."""
        captions = [self.by_region.get((image_id, r), "") for r in region_ids]
        if image_id in self.by_box:
            keyed, texts = self.by_box[image_id]
            for caption_row, stored_row in match_boxes(keyed, boxes, min_iou):
                captions[stored_row] = captions[stored_row] or texts[caption_row]
        return captions

    def unmatched(self, stored_by_image: dict[int, np.ndarray], min_iou: float) -> list[str]:
        """The box-keyed captions no stored box of `stored_by_image` (image id → (N, 4) xyxy) takes, as
        "image 5, box [...]" lines."""
        lines = []
        for image_id, (keyed, texts) in sorted(self.by_box.items()):
            taken = {caption_row for caption_row, _ in
                     match_boxes(keyed, stored_by_image.get(image_id, np.zeros((0, 4))), min_iou)}
            lines += [f"image {image_id}, box {[round(float(v), 1) for v in keyed[row]]}"
                      for row in range(len(texts)) if row not in taken]
        return lines


def match_boxes(keyed: np.ndarray, stored: np.ndarray, min_iou: float) -> list[tuple[int, int]]:
    """(caption row, stored row) pairs: each caption's box with the stored box it overlaps most at IoU >= min_iou,
    best pairs first, each box on either side used once. keyed: (N, 4), stored: (M, 4) xyxy."""
    iou = pairwise_iou(keyed, stored)
    pairs: list[tuple[int, int]] = []
    used_keyed, used_stored = set(), set()
    for index in np.argsort(-iou, axis=None, kind="stable"):
        row, column = (int(i) for i in np.unravel_index(index, iou.shape))
        if iou[row, column] < min_iou:
            break
        if row not in used_keyed and column not in used_stored:
            pairs.append((row, column))
            used_keyed.add(row)
            used_stored.add(column)
    return pairs


def read_caption_jsonl(path: str | Path) -> GivenCaptions:
    """The file's captions; a malformed line is an error naming the file, the line number and the config key."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"captions file not found: {path} (config key {KEY})")
    found = GivenCaptions()
    keyed_boxes: dict[int, list[list[float]]] = {}
    keyed_captions: dict[int, list[str]] = {}
    with path.open() as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                image_id, caption = int(row["image_id"]), row["caption"]
                region = int(row["region_id"]) if "region_id" in row else None
                bbox = None if region is not None else [float(v) for v in row["bbox"]]
                if bbox is not None and len(bbox) != 4:
                    raise ValueError(f"bbox has {len(bbox)} numbers, not 4")
            except (ValueError, KeyError, TypeError) as error:
                raise ValueError(f"{path}:{number}: expected {{image_id, bbox: [x, y, w, h], caption}} or "
                                 f"{{image_id, region_id, caption}}, got {line.strip()[:80]!r} "
                                 f"({type(error).__name__}: {error}; config key {KEY})") from error
            if not isinstance(caption, str):
                raise ValueError(f"{path}:{number}: caption must be a string, got {caption!r} (config key {KEY})")
            if region is not None:
                found.by_region[(image_id, region)] = caption
            else:
                keyed_boxes.setdefault(image_id, []).append(bbox)
                keyed_captions.setdefault(image_id, []).append(caption)
    found.by_box = {image_id: (xywh_to_xyxy(np.asarray(boxes)), keyed_captions[image_id])
                    for image_id, boxes in keyed_boxes.items()}
    return found


@register_captioner("given")
class GivenCaptioner:
    name = "given"

    def __init__(self, captions: GivenCaptions, min_iou: float):
        self.captions = captions
        self.min_iou = min_iou

    @classmethod
    def from_config(cls, section: GivenSection) -> "GivenCaptioner":
        return cls(read_caption_jsonl(section.path), section.min_iou)

    def caption(self, batch: Sequence[ImageRegions]) -> list[list[str]]:
        """B images → their regions' captions; a region the file has no caption for gets "" (a failures row)."""
        return [self.captions.for_image(item.image_id, item.region_ids, item.boxes, self.min_iou) for item in batch]


def resolve_given(section: GivenSection) -> tuple[GivenSection, tuple[ModelFiles, ...]]:
    """The section unchanged and its captions file (local only), or an error naming the config key."""
    if not Path(section.path).is_file():
        raise FileNotFoundError(f"captions file not found: {section.path!r} (config key {KEY})")
    return section, (ModelFiles(section.path),)
