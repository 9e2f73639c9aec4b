"""`export-coco STORE OUT.json`: the store's pseudo boxes with their labels and scores (and, with --with-gt, its GT
boxes) as a COCO instances file, for the tools that read COCO: pycocotools, detectron2's `load_coco_json`, mmdet's
`CocoDataset`, annotation viewers.

- images: every row of the `images` table (id, file_name, width, height); file names stay relative to the image
  folder extract-features read, as in the source annotations.
- categories: the store's classes with their own ids (so GT and pseudo boxes share them), then each pseudo label that
  is not a class name, with ids after the largest class id, in name order. Names are unique, as detectron2 and mmdet
  map categories by name; "supercategory" says which kind each is ("base", "novel" or "pseudo label").
- annotations: bbox [x, y, w, h] in pixels, area = w·h, iscrowd 0, ids 1..N; pseudo boxes carry "score", "cos" and
  "caption" (extra keys, which those loaders ignore) and "source": "pseudo"; GT boxes "source": "gt".
"""
from __future__ import annotations

import json
from pathlib import Path

from featurestore.atomic import write_bytes_atomic
from featurestore.commands.render import add_export_arguments, out_path
from featurestore.reader import StoreReader

PSEUDO_SUPERCATEGORY = "pseudo label"


def add_arguments(parser) -> None:
    add_export_arguments(parser, "COCO JSON file to write")
    parser.add_argument("--with-gt", action="store_true",
                        help="also write the store's GT boxes (regions with source gt: the base boxes the job kept)")
    parser.add_argument("--min-score", type=float, default=None, help="leave out pseudo boxes scored below this")


def xywh(box: list[float]) -> list[float]:
    """xyxy → COCO's [x, y, w, h], rounded to 1/1000 px (the float32 store holds no more)."""
    x0, y0, x1, y1 = box
    return [round(x0, 3), round(y0, 3), round(x1 - x0, 3), round(y1 - y0, 3)]


def categories(reader: StoreReader, labels: set[str]) -> tuple[list[dict], dict[str, int]]:
    """COCO categories (classes, then pseudo labels that are not class names) and the id of every name."""
    vocab = reader.read_table("vocab", ["name", "kind", "category_id", "split"]).to_pylist()
    classes = sorted((r for r in vocab if r["kind"] == "class"), key=lambda r: r["category_id"])
    out = [{"id": r["category_id"], "name": r["name"], "supercategory": r["split"] or "class"} for r in classes]
    ids = {r["name"]: r["category_id"] for r in classes}
    next_id = max(ids.values(), default=0) + 1
    for label in sorted(labels - set(ids)):
        ids[label] = next_id
        out.append({"id": next_id, "name": label, "supercategory": PSEUDO_SUPERCATEGORY})
        next_id += 1
    return out, ids


def shard_annotations(reader: StoreReader, shard: int, with_gt: bool, min_score: float | None) -> list[dict]:
    """One shard's annotations without ids or category ids yet: pseudo boxes carry their "label" (a box whose
    caption named no object has no category, so it is no annotation)."""
    regions = reader.read_shard("regions", shard, ["image_id", "region_id", "box", "source", "category_id"])
    rows = regions.to_pylist()
    box_of = {(r["image_id"], r["region_id"]): r["box"] for r in rows}
    found = []
    if with_gt:
        found += [{"image_id": r["image_id"], "category_id": r["category_id"], "bbox": xywh(r["box"]),
                   "source": "gt", "region_id": r["region_id"]} for r in rows if r["source"] == "gt"]
    if shard in reader.shards("pseudo_labels"):
        labels = reader.read_shard("pseudo_labels", shard,
                                   ["image_id", "region_id", "label", "score", "cos", "caption"]).to_pylist()
        found += [{"image_id": r["image_id"], "label": r["label"], "bbox": xywh(box_of[(r["image_id"],
                                                                                       r["region_id"])]),
                   "score": round(r["score"], 5), "cos": round(r["cos"], 5), "caption": r["caption"],
                   "source": "pseudo", "region_id": r["region_id"]}
                  for r in labels if r["label"] is not None and (min_score is None or r["score"] >= min_score)]
    return sorted(found, key=lambda a: (a["image_id"], a["region_id"], a["source"]))


def coco_file(reader: StoreReader, with_gt: bool, min_score: float | None) -> dict:
    images = [{"id": r["image_id"], "file_name": r["file_name"], "width": r["width"], "height": r["height"]}
              for r in reader.read_table("images", ["image_id", "file_name", "width", "height"]).to_pylist()]
    found = [a for shard in reader.shards("regions") for a in shard_annotations(reader, shard, with_gt, min_score)]
    cats, ids = categories(reader, {a["label"] for a in found if a["source"] == "pseudo"})
    annotations = []
    for number, annotation in enumerate(found, start=1):
        label = annotation.pop("label", None)
        category = annotation.pop("category_id", None) if label is None else ids[label]
        _, _, w, h = annotation["bbox"]
        annotations.append({"id": number, "category_id": category, "area": round(w * h, 3), "iscrowd": 0,
                            **annotation})
    description = f"pseudo boxes{' and GT boxes' if with_gt else ''} of the feature store {reader.root}"
    return {"info": {"description": description,
                     "stages": {name: record.config_hash for name, record in reader.manifest.stages.items()}},
            "images": sorted(images, key=lambda i: i["id"]), "annotations": annotations, "categories": cats}


def run(args) -> int:
    reader = StoreReader(args.store)
    if not reader.shards("pseudo_labels") and not args.with_gt:
        raise KeyError(f"{args.store} has no committed pseudo_labels shard, so there is nothing to export without "
                       "--with-gt; run make pseudo-labels first")
    data = coco_file(reader, args.with_gt, args.min_score)
    out = out_path(args)
    write_bytes_atomic(Path(out), json.dumps(data).encode())
    pseudo = sum(a["source"] == "pseudo" for a in data["annotations"])
    print(f"wrote {out}: {len(data['images'])} images, {pseudo} pseudo boxes, "
          f"{len(data['annotations']) - pseudo} GT boxes, {len(data['categories'])} categories")
    return 0
