"""export-coco: the file loads in pycocotools for real, and passes what detectron2's and mmdet's COCO loaders check and
do (they cannot be installed here; their rules are replayed below, in our words, from their source:
detectron2/data/datasets/coco.py `load_coco_json`, mmdet/datasets/coco.py `CocoDataset.parse_data_info` and
`filter_data`)."""
import json

import numpy as np
import pytest
from pycocotools.coco import COCO

from featurestore.cli import main
from featurestore.reader import StoreReader
from featurestore.writer import ShardWriter
from tests.featurestore.store_factory import DIM, IMAGES_PER_SHARD, write_store

# store_factory's classes: star (id 3, base) and circle (id 4, novel); each image's regions 1 and 2 are pseudo boxes.
LABELS = {1: ["star", "red circle", "ball"], 2: ["circle", "circle", "star"]}  # region → label by image index


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = write_store(tmp_path_factory.mktemp("coco") / "store", with_pseudo_labels=False)
    writer = ShardWriter(root, "pseudo_labels", DIM)
    writer.open_stage({"captioner": {"name": "given"}}, "hash-labels")
    rng = np.random.default_rng(0)
    for shard in range(2):
        keys = [(1000 * (shard + 1) + i, r) for i in range(IMAGES_PER_SHARD) for r in (1, 2)]
        labels = [LABELS[r][i % 1000] for i, r in keys]
        writer.commit(shard, {"pseudo_labels": {
            "image_id": [i for i, _ in keys], "region_id": [r for _, r in keys],
            "caption": [f"a {label} here" for label in labels], "candidates": [[label] for label in labels],
            "label": labels, "cos": [0.25 + 0.01 * n for n in range(len(keys))],
            "score": [0.5 + 0.05 * n for n in range(len(keys))],
            "text_embedding": rng.standard_normal((len(keys), DIM)).astype(np.float16)}}, fingerprint=f"pl-{shard}")
    writer.finish_stage()
    return root


@pytest.fixture(scope="module")
def exported(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("exported") / "pseudo.json"
    assert main(["export-coco", str(store), str(out), "--with-gt"]) == 0
    return out


def test_pycocotools_loads_every_box_with_its_label(store, exported):
    coco = COCO(str(exported))
    reader = StoreReader(store)
    assert sorted(coco.getImgIds()) == sorted(reader.read_table("images").column("image_id").to_pylist())
    names = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
    # Classes keep their ids; labels that are not class names follow the largest class id, in name order.
    assert names == {3: "star", 4: "circle", 5: "ball", 6: "red circle"}
    boxes = {(r["image_id"], r["region_id"]): r["box"] for r in reader.read_table("regions").to_pylist()}
    pseudo = {(r["image_id"], r["region_id"]): r for r in reader.read_table("pseudo_labels").to_pylist()}
    anns = coco.loadAnns(coco.getAnnIds())
    assert len(anns) == len(pseudo) + 6  # one GT box (region 0) per image
    for ann in anns:
        key = (ann["image_id"], ann["region_id"])
        x, y, w, h = ann["bbox"]
        np.testing.assert_allclose([x, y, x + w, y + h], boxes[key], atol=1e-3)
        assert ann["area"] == pytest.approx(w * h)
        if ann["source"] == "pseudo":
            assert names[ann["category_id"]] == pseudo[key]["label"]
            assert ann["score"] == pytest.approx(pseudo[key]["score"], abs=1e-5)
        else:
            assert ann["category_id"] == 3 and key[1] == 0


def test_min_score_and_pseudo_only(store, tmp_path):
    out = tmp_path / "confident.json"
    assert main(["export-coco", str(store), str(out), "--min-score", "0.62"]) == 0  # between stored float32 scores
    anns = json.loads(out.read_text())["annotations"]
    scores = StoreReader(store).read_table("pseudo_labels").column("score").to_pylist()
    assert all(a["source"] == "pseudo" and a["score"] >= 0.62 for a in anns)
    assert len(anns) == sum(s >= 0.62 for s in scores) == 6


def detectron2_load_coco_json(data: dict) -> list[dict]:
    """What detectron2's load_coco_json checks and returns, replayed: categories sorted by id give thing_classes,
    non-contiguous ids get a contiguous mapping that every annotation's category must be in; annotation ids are
    unique; each annotation belongs to the image it is listed under; an "ignore" key is refused; a bbox is 4 numbers
    in XYWH_ABS; records carry file_name, height, width and image_id."""
    cats = sorted(data["categories"], key=lambda c: c["id"])
    id_map = {c["id"]: i for i, c in enumerate(cats)}
    ann_ids = [a["id"] for a in data["annotations"]]
    assert len(set(ann_ids)) == len(ann_ids), "Annotation ids are not unique"
    by_image: dict[int, list] = {}
    for ann in data["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    records = []
    for image in sorted(data["images"], key=lambda i: i["id"]):
        objs = []
        for ann in by_image.get(image["id"], []):
            assert ann["image_id"] == image["id"]
            assert ann.get("ignore", 0) == 0, '"ignore" in COCO json file is not supported'
            assert len(ann["bbox"]) == 4, "an annotation contains an empty bbox"
            objs.append({"bbox": ann["bbox"], "bbox_mode": "XYWH_ABS", "iscrowd": ann.get("iscrowd", 0),
                         "category_id": id_map[ann["category_id"]]})
        records.append({"file_name": image["file_name"], "height": image["height"], "width": image["width"],
                        "image_id": image["id"], "annotations": objs})
    return records


def mmdet_coco_dataset(data: dict, classes: list[str]) -> list[dict]:
    """What mmdet's CocoDataset does, replayed: cat_ids are found by class name (names must be unique), cat2label maps
    them to 0..C-1; per image, an annotation is skipped when marked ignore, when its box does not intersect the
    image, when area <= 0 or w < 1 or h < 1, or when its category is not a class; kept boxes become xyxy with
    ignore_flag = iscrowd."""
    by_name: dict[str, list[int]] = {}
    for cat in data["categories"]:
        by_name.setdefault(cat["name"], []).append(cat["id"])
    assert all(len(ids) == 1 for ids in by_name.values()), "category names must be unique"
    cat_ids = [by_name[name][0] for name in classes]
    cat2label = {cat_id: i for i, cat_id in enumerate(cat_ids)}
    by_image: dict[int, list] = {}
    for ann in data["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    infos = []
    for image in data["images"]:
        instances = []
        for ann in by_image.get(image["id"], []):
            if ann.get("ignore", False):
                continue
            x1, y1, w, h = ann["bbox"]
            inter_w = max(0, min(x1 + w, image["width"]) - max(x1, 0))
            inter_h = max(0, min(y1 + h, image["height"]) - max(y1, 0))
            if inter_w * inter_h == 0 or ann["area"] <= 0 or w < 1 or h < 1 or ann["category_id"] not in cat_ids:
                continue
            instances.append({"bbox": [x1, y1, x1 + w, y1 + h], "bbox_label": cat2label[ann["category_id"]],
                              "ignore_flag": int(bool(ann.get("iscrowd", False)))})
        infos.append({"img_id": image["id"], "file_name": image["file_name"], "height": image["height"],
                      "width": image["width"], "instances": instances})
    return infos


def test_detectron2_and_mmdet_loaders_keep_every_box(exported):
    data = json.loads(exported.read_text())
    records = detectron2_load_coco_json(data)
    classes = [c["name"] for c in sorted(data["categories"], key=lambda c: c["id"])]
    assert sum(len(r["annotations"]) for r in records) == len(data["annotations"])
    assert {classes[o["category_id"]] for r in records for o in r["annotations"]} == set(classes)
    infos = mmdet_coco_dataset(data, classes)
    kept = [(info["img_id"], classes[i["bbox_label"]]) for info in infos for i in info["instances"]]
    names = {c["id"]: c["name"] for c in data["categories"]}
    assert sorted(kept) == sorted((a["image_id"], names[a["category_id"]]) for a in data["annotations"])
    assert all(i["ignore_flag"] == 0 for info in infos for i in info["instances"])


def test_store_without_pseudo_labels_needs_with_gt(tmp_path, capsys):
    root = write_store(tmp_path / "bare", with_pseudo_labels=False)
    assert main(["export-coco", str(root), str(tmp_path / "x.json")]) == 2
    assert "--with-gt" in capsys.readouterr().out and not (tmp_path / "x.json").exists()
    assert main(["export-coco", str(root), str(tmp_path / "gt.json"), "--with-gt"]) == 0
    assert len(COCO(str(tmp_path / "gt.json")).getAnnIds()) == 6


def test_a_box_whose_caption_names_no_object_is_no_annotation(tmp_path):
    store = write_store(tmp_path / "store", no_object=frozenset({(1000, 1), (2001, 2)}))
    out = tmp_path / "pseudo.json"
    assert main(["export-coco", str(store), str(out)]) == 0
    anns = json.loads(out.read_text())["annotations"]
    assert len(anns) == 2 * IMAGES_PER_SHARD * 2 - 2 and all(a["category_id"] is not None for a in anns)
    assert {(1000, 1), (2001, 2)}.isdisjoint((a["image_id"], a["region_id"]) for a in anns)
