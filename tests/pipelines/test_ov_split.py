import json

import pytest

from pipelines.coco import AnnotationError, Annotation, Category, CocoDataset, ImageRecord
from pipelines.ov_split import OV_COCO_BASE, OV_COCO_NOVEL, keep_annotations, load_split

COCO_80_SAMPLE = ("person", "airplane", "tv", "couch", "traffic light")  # a few real COCO 2017 names


def _dataset(categories):
    annotations = {1: tuple(Annotation(k, 1, c.category_id, (0, 0, 1, 1)) for k, c in enumerate(categories))}
    return CocoDataset(tuple(categories), (ImageRecord(1, "a.jpg", 4, 4),), annotations, "test.json")


def test_ov_coco_is_48_base_and_17_novel_disjoint():
    assert len(OV_COCO_BASE) == 48 and len(OV_COCO_NOVEL) == 17
    assert not set(OV_COCO_BASE) & set(OV_COCO_NOVEL)
    names = list(OV_COCO_BASE) + list(OV_COCO_NOVEL) + ["traffic light"]
    dataset = _dataset([Category(i + 1, n) for i, n in enumerate(names)])
    split = load_split("ov-coco", dataset)
    assert len(split.base_ids) == 48 and len(split.novel_ids) == 17
    assert split.split_of(66) is None  # traffic light: one of the 15 unused classes
    assert {"person", "tv"} <= set(OV_COCO_BASE) and {"airplane", "couch"} <= set(OV_COCO_NOVEL)


def test_lvis_rare_is_novel_and_strict_drops_novel_and_unused():
    dataset = _dataset([Category(1, "a", "f"), Category(2, "b", "c"), Category(3, "c", "r")])
    split = load_split("lvis-frequency", dataset)
    assert split.base_ids == {1, 2} and split.novel_ids == {3}
    strict = keep_annotations(dataset, split, strict=True)
    assert [a.category_id for a in strict.annotations[1]] == [1, 2]
    assert [a.category_id for a in keep_annotations(dataset, split, strict=False).annotations[1]] == [1, 2, 3]


def test_split_file_and_its_errors(tmp_path):
    dataset = _dataset([Category(1, "circle"), Category(2, "star"), Category(3, "other")])
    path = tmp_path / "split.json"
    path.write_text(json.dumps({"base": ["circle"], "novel": ["star"], "base_ids": [1]}))
    split = load_split(str(path), dataset)
    assert split.base_ids == {1} and split.novel_ids == {2}
    assert [a.category_id for a in keep_annotations(dataset, split, True).annotations[1]] == [1]
    path.write_text(json.dumps({"base": ["circle"], "novel": ["unicorn"]}))
    with pytest.raises(AnnotationError, match="unicorn"):
        load_split(str(path), dataset)
    with pytest.raises(AnnotationError, match="frequency"):
        load_split("lvis-frequency", dataset)
