"""A store labelled by the real pseudo-labels job (given captions, TestPipeline) over pseudo_label_store's images,
and ground-truth files whose pseudo-box precision is known, for the report, labels and export tests.

Per image (64x48): region 0 is a base GT "square", regions 1-3 proposals embedded as the tiny CLIP's "star",
"heart" and "circle", 4 the whole image. Captions: region 1 "a red star on a wall." (label star), region 2 "two
hearts next to a wall" (heart), region 3 "a circle on a wall" (circle) in shard 0; in shard 1 region 3 of image 200
is captioned with no object ("a patch of striped background": a row with no label) and region 3 of image 201 has no
caption (a failure row, kind empty_caption).

Ground truth: the training file has the square of every image; the held-out file a novel star on region 1's box of
every image, a second star on region 2's box of image 101 and a third on region 3's box of image 200. So of the 10
labelled pseudo boxes, 5 cover a star (four region-1 boxes labelled star, region 2 of image 101 labelled heart) and
5 cover nothing: precision 50%, accuracy 4 of 5; the one box with no object covers a star.
"""
from __future__ import annotations

import json
from pathlib import Path

from apache_beam.testing.test_pipeline import TestPipeline

from beam_jobs import pseudo_labels
from tests.pseudo_label_store import BOXES, IMAGE_SIZE, LabelStore, write_given_captions, write_label_store

SQUARE, STAR = 2, 4  # pseudo_label_store's class ids: square (base), star (novel)
EXPECTED_PRECISION = 0.5
EXPECTED_ACCURACY = 0.8
NO_OBJECT_CAPTION = "a patch of striped background"
NO_OBJECT_BOX = (200, 3)  # captioned NO_OBJECT_CAPTION; covers the held-out star of image 200


def captions(store: LabelStore) -> dict:
    found = {}
    for shard, ids in enumerate(store.image_ids):
        for image_id in ids:
            found[(image_id, 1)] = "a red star on a wall."
            found[(image_id, 2)] = "two hearts next to a wall"
            if shard == 0:
                found[(image_id, 3)] = "a circle on a wall"
    found[NO_OBJECT_BOX] = NO_OBJECT_CAPTION
    return found


def write_labelled_store(tmp: Path) -> LabelStore:
    store = write_label_store(tmp)
    path = write_given_captions(tmp / "captions.jsonl", captions(store))
    pseudo_labels.run(["--store", str(store.root), "--set", "captioner.name=given",
                       "--set", f"captioner.given.path={path}", "--set", "runtime.device=cpu",
                       "--set", "runtime.min_batch_size=1", "--set", "runtime.max_failure_rate=1.0"],
                      test_pipeline=TestPipeline())
    return store


def _xywh(box: list[float]) -> list[float]:
    return [box[0], box[1], box[2] - box[0], box[3] - box[1]]


def _coco(image_ids: list[int], boxes: list[tuple[int, int, list[float]]]) -> dict:
    return {"images": [{"id": i, "file_name": f"{i:04d}.png", "width": IMAGE_SIZE[0], "height": IMAGE_SIZE[1]}
                       for i in image_ids],
            "annotations": [{"id": n, "image_id": i, "category_id": c, "bbox": _xywh(b), "area": 1.0, "iscrowd": 0}
                            for n, (i, c, b) in enumerate(boxes, start=1)],
            "categories": [{"id": SQUARE, "name": "square"}, {"id": STAR, "name": "star"}]}


def write_ground_truth(store: LabelStore, folder: Path) -> tuple[Path, Path]:
    """(training annotations with the base squares, held-out file with the novel stars)."""
    image_ids = [i for ids in store.image_ids for i in ids]
    folder.mkdir(parents=True, exist_ok=True)
    base, held_out = folder / "train_base.json", folder / "heldout.json"
    base.write_text(json.dumps(_coco(image_ids, [(i, SQUARE, BOXES[0]) for i in image_ids])))
    stars = [(i, STAR, BOXES[1]) for i in image_ids] + [(101, STAR, BOXES[2]), (200, STAR, BOXES[3])]
    held_out.write_text(json.dumps(_coco(image_ids, stars)))
    return base, held_out
