"""The region crops of the report's label grids: a sample of pseudo boxes per label, cut from their images and written
as small PNG thumbnails beside the page.

The sample is the k boxes of each label with the smallest hash of (image_id, region_id): a uniform sample that is
the same for the same store, drawn in one streaming pass with k rows held per label.
"""
from __future__ import annotations

import hashlib
import heapq
from pathlib import Path

from PIL import Image, ImageDraw

from featurestore.commands.label_quality import COVER_IOU, GroundTruth
from featurestore.commands.store_images import open_image
from featurestore.reader import StoreReader
from vlm.images import ImageReadError, PathEscapeError

THUMB = 120  # longest side of a thumbnail, CSS pixels
CONTEXT = 0.3  # the crop reaches this fraction of the box size beyond each side, so the box is seen in its scene
BOX_COLOUR = (255, 0, 200)  # magenta: stands out on ShapesOV's colours and on photos
CROPS_DIR = "crops"
COLUMNS = ["image_id", "region_id", "caption", "candidates", "label", "cos", "score"]


def sample_key(image_id: int, region_id: int) -> int:
    return int.from_bytes(hashlib.blake2b(f"{image_id}/{region_id}".encode(), digest_size=8).digest(), "big")


def sample_boxes(reader: StoreReader, labels: list[str], per_label: int) -> dict[int, list[dict]]:
    """shard → the sampled pseudo_labels rows of that shard (at most `per_label` per label of `labels`)."""
    wanted = set(labels)
    heaps: dict[str, list] = {label: [] for label in labels}  # max-heaps on the hash (negated), size per_label
    for shard in reader.shards("pseudo_labels"):
        for batch in reader.stream("pseudo_labels", COLUMNS, shards=[shard]):
            for row in batch.to_pylist():
                if row["label"] not in wanted:
                    continue
                entry = (-sample_key(row["image_id"], row["region_id"]), shard, row["image_id"], row["region_id"], row)
                heap = heaps[row["label"]]
                if len(heap) < per_label:
                    heapq.heappush(heap, entry)
                elif entry[0] > heap[0][0]:
                    heapq.heapreplace(heap, entry)
    by_shard: dict[int, list[dict]] = {}
    for heap in heaps.values():
        for _, shard, _, _, row in heap:
            by_shard.setdefault(shard, []).append(row)
    return by_shard


def thumbnail(image: Image.Image, box: list[float]) -> Image.Image:
    """The box with CONTEXT around it, scaled so its longest side is THUMB, the box drawn on it."""
    x0, y0, x1, y1 = box
    pad_x, pad_y = max((x1 - x0) * CONTEXT, 4.0), max((y1 - y0) * CONTEXT, 4.0)
    left, top = max(0, int(x0 - pad_x)), max(0, int(y0 - pad_y))
    right, bottom = min(image.width, int(round(x1 + pad_x))), min(image.height, int(round(y1 + pad_y)))
    crop = image.crop((left, top, max(right, left + 1), max(bottom, top + 1)))
    scale = THUMB / max(crop.size)
    # Small crops are enlarged with nearest neighbour: pixels stay pixels instead of a blur that hides the shape.
    resample = Image.NEAREST if scale >= 2 else Image.BICUBIC
    thumb = crop.resize((max(1, round(crop.width * scale)), max(1, round(crop.height * scale))), resample)
    draw = ImageDraw.Draw(thumb)
    draw.rectangle([(x0 - left) * scale, (y0 - top) * scale, (x1 - left) * scale - 1, (y1 - top) * scale - 1],
                   outline=BOX_COLOUR, width=2)
    return thumb


def label_examples(reader: StoreReader, labels: list[str], per_label: int, image_root: str | None, out: Path,
                   truth: GroundTruth | None) -> dict[str, list[dict]]:
    """label → its sampled boxes (row, box, thumbnail path relative to `out` or the reason there is none, and with
    `truth` what the box covers), highest score first. Thumbnails go to out/crops/<image_id>-<region_id>.png."""
    examples: dict[str, list[dict]] = {label: [] for label in labels}
    (out / CROPS_DIR).mkdir(parents=True, exist_ok=True)
    for shard, rows in sorted(sample_boxes(reader, labels, per_label).items()):
        regions = reader.read_shard("regions", shard, ["image_id", "region_id", "box"]).to_pylist()
        box_of = {(r["image_id"], r["region_id"]): r["box"] for r in regions}
        images = reader.read_shard("images", shard, ["image_id", "file_name"]).to_pylist()
        file_of = {r["image_id"]: r["file_name"] for r in images}
        for image_id in sorted({row["image_id"] for row in rows}):
            mine = [row for row in rows if row["image_id"] == image_id]
            boxes = [box_of[(image_id, row["region_id"])] for row in mine]
            image, problem = None, "no image folder (give --image-root)"
            if image_root is not None:
                try:
                    image = open_image(image_root, file_of[image_id])
                except (ImageReadError, PathEscapeError, FileNotFoundError) as error:
                    problem = str(error)
            ious, classes = ([0.0] * len(mine), [None] * len(mine))
            if truth is not None and image_id in truth.image_ids:
                ious, classes, _ = truth.best_match(image_id, boxes)
            for row, box, iou, covers in zip(mine, boxes, ious, classes):
                example = {**row, "box": box, "file_name": file_of.get(image_id), "thumb": None, "problem": problem}
                if image is not None:
                    relative = f"{CROPS_DIR}/{image_id}-{row['region_id']}.png"
                    thumbnail(image, box).save(out / relative)
                    example.update(thumb=relative, problem=None)
                if truth is not None:
                    judged = image_id in truth.image_ids
                    example["iou"] = float(iou) if judged else None
                    example["covers"] = (covers if iou >= COVER_IOU else "") if judged else None
                examples[row["label"]].append(example)
    for rows in examples.values():
        rows.sort(key=lambda e: (-e["score"], e["image_id"], e["region_id"]))
    return examples
