"""ShapesOV generator: deterministic by seed, COCO files valid for pycocotools, OV split respected, broken set."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from PIL import Image
from pycocotools.coco import COCO

from shapesov.__main__ import main as shapes_main
from shapesov.classes import NOVEL_NAMES, SHAPE_NAMES


def _generate(out: Path, seed: int) -> Path:
    assert shapes_main(["--out", str(out), "--seed", str(seed), "--train", "12", "--val", "6"]) == 0
    return out


def _tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return _generate(tmp_path_factory.mktemp("shapes") / "a", seed=0)


def test_same_seed_same_bytes_other_seed_other_images(dataset, tmp_path):
    again = _tree_digest(_generate(tmp_path / "b", seed=0))
    assert again == _tree_digest(dataset)
    other = _tree_digest(_generate(tmp_path / "c", seed=1))
    assert other["images/train/000000000001.jpg"] != again["images/train/000000000001.jpg"]


def test_coco_files_load_and_split_base_from_novel(dataset):
    split = json.loads((dataset / "ov_split.json").read_text())
    assert set(split["novel"]) == set(NOVEL_NAMES) and len(split["base"]) == 6
    base = COCO(str(dataset / "annotations" / "train_base.json"))
    heldout = COCO(str(dataset / "annotations" / "train_novel_heldout.json"))
    val = COCO(str(dataset / "annotations" / "val.json"))
    for coco in (base, heldout, val):
        assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(SHAPE_NAMES)
    assert {a["category_id"] for a in base.dataset["annotations"]} <= set(split["base_ids"])
    assert {a["category_id"] for a in heldout.dataset["annotations"]} <= set(split["novel_ids"])
    assert len(val.getImgIds()) == 6 and len(base.getImgIds()) == 12
    for coco, image_dir in ((base, "train"), (val, "val")):
        for image in coco.dataset["images"]:
            with Image.open(dataset / "images" / image_dir / image["file_name"]) as im:
                assert im.size == (image["width"], image["height"])
                assert 128 <= min(im.size) and max(im.size) <= 256
        for ann in coco.dataset["annotations"]:
            x, y, w, h = ann["bbox"]
            image = coco.imgs[ann["image_id"]]
            assert w > 0 and h > 0 and x >= 0 and y >= 0
            assert x + w <= image["width"] + 1e-6 and y + h <= image["height"] + 1e-6
            assert 0 < ann["area"] <= w * h + 1e-6
    per_image = [len(val.getAnnIds(imgIds=i)) for i in val.getImgIds()]
    assert min(per_image) >= 1 and max(per_image) <= 4


def test_names_cover_base_boxes_only(dataset):
    base = json.loads((dataset / "annotations" / "train_base.json").read_text())
    rows = [json.loads(line) for line in (dataset / "names" / "train.jsonl").read_text().splitlines()]
    assert [r["ann_id"] for r in rows] == [a["id"] for a in base["annotations"]]
    names = {c["id"]: c["name"] for c in base["categories"]}
    for row, ann in zip(rows, base["annotations"]):
        assert row["names"] == [f"{ann['colour']} {names[ann['category_id']]}", names[ann["category_id"]]]
        assert not set(row["names"][-1:]) & set(NOVEL_NAMES)


def test_broken_set_breaks_each_way_it_says(dataset):
    root = dataset / "broken"
    coco = json.loads((root / "annotations.json").read_text())
    expected = json.loads((root / "expected.json").read_text())
    files = {str(image["id"]): root / "images" / image["file_name"] for image in coco["images"]}
    for image_id, kind in expected["images"].items():
        path = files[image_id]
        if kind == "missing_file":
            assert not path.exists()
        elif kind == "ok":
            with Image.open(path) as im:
                im.load()
        else:
            with pytest.raises(OSError):
                with Image.open(path) as im:
                    im.load()
    anns = {str(a["id"]): a for a in coco["annotations"]}
    images = {i["id"]: i for i in coco["images"]}
    category_ids = {c["id"] for c in coco["categories"]}
    for ann_id, kind in expected["annotations"].items():
        ann = anns[ann_id]
        x, y, w, h = ann["bbox"]
        image = images[ann["image_id"]]
        broken = {"box_outside_image": x >= image["width"] or y >= image["height"],
                  "zero_area_box": w * h == 0,
                  "unknown_category": ann["category_id"] not in category_ids}
        assert broken[kind], (kind, ann)
