"""The GT rows and labels export-hdovd expects of an annotation file, against the replay of mmdet's own rule."""
import json

import numpy as np
import pytest

from featurestore.commands.hdovd.layout import feature_file_name
from featurestore.commands.hdovd.official_view import gt_rows, read_official_view
from pipelines.coco import AnnotationError
from tests.featurestore import official_hdovd_loader as official

WIDTH, HEIGHT = 100, 80


def _random_annotations(rng: np.random.Generator, count: int) -> list[dict]:
    """Boxes inside, across and outside the image, under a pixel, NaN; area right, 0, negative or absent; crowd,
    ignore flags; a category without a label."""
    annotations = []
    for index in range(count):
        x, y = rng.uniform(-60, 150), rng.uniform(-60, 130)
        w, h = (float(rng.choice([rng.uniform(0, 2), rng.uniform(0, 90), 0.0, np.nan], p=[.2, .7, .05, .05]))
                for _ in range(2))
        annotation = {"id": index, "image_id": 1, "category_id": int(rng.integers(1, 4)), "bbox": [x, y, w, h]}
        if rng.random() < 0.8:
            annotation["area"] = float(rng.choice([w * h, 0.0, -1.0], p=[.8, .1, .1]))
        if rng.random() < 0.1:
            annotation["iscrowd"] = 1
        if rng.random() < 0.1:
            annotation["ignore"] = True
        annotations.append(annotation)
    return annotations


def test_gt_rows_are_the_rows_mmdet_keeps_in_file_order():
    annotations = _random_annotations(np.random.default_rng(0), 2000)
    rows = gt_rows(annotations, WIDTH, HEIGHT, {1: "circle", 2: "square"})  # category 3 has no label
    boxes, labels = official._parse_annotations(annotations, WIDTH, HEIGHT, {1: 0, 2: 1})
    assert 200 < len(rows) < 1500  # every kind of annotation occurred
    assert [("circle", "square")[label] for label in labels] == [row.category for row in rows]
    clipped = np.clip(boxes, 0, [WIDTH, HEIGHT, WIDTH, HEIGHT])  # what Resize does to them (after scaling)
    np.testing.assert_allclose([row.box for row in rows], clipped, rtol=1e-6, atol=1e-4)  # theirs are float32


def _write(tmp_path, data) -> str:
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    return str(path)


def test_labels_follow_the_file_categories_that_are_classes(tmp_path):
    path = _write(tmp_path, {"images": [{"id": 4, "file_name": "a/b.jpg", "width": 10, "height": 10}],
                             "annotations": [], "categories": [{"id": 9, "name": "star"}, {"id": 2, "name": "sky"},
                                                               {"id": 1, "name": "circle"}]})
    view = read_official_view(path, frozenset({"circle", "star"}))
    assert view.labels == ("star", "circle") and [image.image_id for image in view.images] == [4]


@pytest.mark.parametrize("annotations, message", [
    ([{"id": 1, "image_id": 4, "category_id": 1, "bbox": [0, 0, 1, 1]}] * 2, "annotation ids are not unique"),
    ([{"id": "x", "image_id": 4, "category_id": 1, "bbox": [0, 0, 1, 1]}], "not an integer"),
    ([{"id": 1, "image_id": 4, "category_id": 1, "bbox": [0, 0, 1]}], "not 4 numbers"),
    ([{"id": 1, "image_id": 4, "category_id": 1}], "lacks one of"),
])
def test_files_the_official_loader_would_refuse_are_named(tmp_path, annotations, message):
    path = _write(tmp_path, {"images": [{"id": 4, "file_name": "a.jpg", "width": 10, "height": 10}],
                             "annotations": annotations, "categories": [{"id": 1, "name": "circle"}]})
    with pytest.raises(AnnotationError, match=message):
        read_official_view(path, frozenset({"circle"}))


def test_feature_file_names_drop_folders_and_the_last_four_characters():
    assert feature_file_name("train2017/000000000009.jpg") == "000000000009.pth"
    assert feature_file_name("scene.v2.jpeg") == "scene.v2..pth"
    assert feature_file_name("x.png") == "x.pth"
