import json

import pytest

from pipelines.coco import AnnotationError, read_coco


def _write(tmp_path, data):
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    return str(path)


def test_reads_images_in_file_order_and_annotations_per_image(tmp_path):
    path = _write(tmp_path, {
        "images": [{"id": 7, "file_name": "b.jpg", "width": 10, "height": 8},
                   {"id": 3, "file_name": "a.jpg", "width": 5, "height": 4}],
        "annotations": [{"id": 1, "image_id": 7, "category_id": 1, "bbox": [0, 0, 2, 2], "iscrowd": 1},
                        {"id": 2, "image_id": 7, "category_id": 2, "bbox": [1, 1, 2, 2]},
                        {"id": 3, "image_id": 3, "category_id": 42, "bbox": [1, 1, 2, 2]}],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]})
    dataset = read_coco(path)
    assert dataset.image_ids() == [7, 3]
    assert [a.annotation_id for a in dataset.annotations[7]] == [1, 2]
    assert dataset.annotations[7][0].iscrowd and not dataset.annotations[7][1].iscrowd
    assert dataset.category_names() == {1: "cat", 2: "dog"}
    assert 3 not in dataset.annotations and [a.annotation_id for a in dataset.unknown_category[3]] == [3]


def test_lvis_images_take_their_file_name_from_coco_url(tmp_path):
    path = _write(tmp_path, {"images": [{"id": 1, "coco_url": "http://x/train2017/000001.jpg", "width": 2,
                                         "height": 2}],
                             "annotations": [], "categories": [{"id": 1, "name": "a", "frequency": "r"}]})
    dataset = read_coco(path)
    assert dataset.images[0].file_name == "train2017/000001.jpg"
    assert dataset.categories[0].frequency == "r"


def test_bad_files_are_named_in_the_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.json"):
        read_coco(str(tmp_path / "nowhere.json"))
    path = _write(tmp_path, {"images": [{"id": 1, "file_name": "a", "width": 1, "height": 1},
                                        {"id": 1, "file_name": "b", "width": 1, "height": 1}],
                             "annotations": [], "categories": []})
    with pytest.raises(AnnotationError, match="image ids are not unique"):
        read_coco(path)


def test_dangling_annotations_are_kept_aside_and_the_rest_is_read(tmp_path):
    path = _write(tmp_path, {"images": [{"id": 1, "file_name": "a", "width": 9, "height": 9}],
                             "annotations": [{"id": 5, "image_id": 2, "category_id": 1, "bbox": [0, 0, 1, 1]},
                                             {"id": 6, "image_id": 1, "category_id": 1, "bbox": [0, 0, 2, 2]},
                                             {"id": 7, "image_id": 2, "category_id": 1, "bbox": [1, 1, 2, 2]},
                                             {"id": 8, "image_id": 3, "category_id": 9, "bbox": [1, 1, 2, 2]}],
                             "categories": [{"id": 1, "name": "cat"}]})
    dataset = read_coco(path)
    assert [a.annotation_id for a in dataset.annotations[1]] == [6]
    assert {(d.image_id, d.count, d.source, d.ids) for d in dataset.dangling_annotations()} == {
        (2, 2, "annotations", (5, 7)), (3, 1, "annotations", (8,))}
