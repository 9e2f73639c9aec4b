"""Object names of GT boxes: the names JSONL reader, matching to the kept annotations, region planning and the
shard fingerprint."""
import json

import numpy as np
import pytest

from pipelines.coco import Annotation, CocoDataset, Category, ImageRecord
from pipelines.extract_config import ExtractFeaturesConfig
from pipelines.extract_plan import plan_dataset
from pipelines.object_names import (NamesFileError, name_alternatives, name_annotations, read_object_names,
                                    split_synonyms)
from pipelines.regions import plan_regions
from pipelines.sharding import build_shard_tasks
from schemas.config import load_config

IMAGE = ImageRecord(1, "a.jpg", 100, 80)
DATASET = CocoDataset(
    categories=(Category(1, "circle"), Category(2, "star")),
    images=(IMAGE, ImageRecord(2, "b.jpg", 50, 50)),
    annotations={1: (Annotation(10, 1, 1, (10, 10, 20, 20)), Annotation(11, 1, 2, (50, 40, 30, 30))),
                 2: (Annotation(20, 2, 1, (5, 5, 10, 10)),)},
    source="instances.json")


def _write_lines(tmp_path, lines):
    path = tmp_path / "names.jsonl"
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return str(path)


def test_synonyms_become_alternatives_of_their_own():
    assert split_synonyms("man, person") == ("man", "person")
    assert split_synonyms(" tree ,, ") == ("tree",)
    assert name_alternatives(["red star", "star, shape", "star"]) == ("red star", "star", "shape")


def test_reads_one_entry_per_annotation_and_skips_blank_lines(tmp_path):
    path = _write_lines(tmp_path, [
        {"image_id": 1, "ann_id": 10, "bbox": [10, 10, 20, 20], "names": ["red circle", "circle"]},
        "",
        {"image_id": 1, "ann_id": 11, "names": ["man, person"]},
    ])
    entries = read_object_names(path)
    assert sorted(entries) == [10, 11]
    assert entries[10].alternatives == ("red circle", "circle") and entries[10].image_id == 1
    assert entries[11].alternatives == ("man", "person") and entries[11].line == 3


@pytest.mark.parametrize("line, message", [
    ('{"image_id": 1, "ann_id": 10, "names": ["a"]', "not valid JSON"),
    ('["a", "b"]', "expected a JSON object"),
    ('{"image_id": 1, "names": ["a"]}', "missing key 'ann_id'"),
    ('{"image_id": 1, "ann_id": 10}', "missing key 'names'"),
    ('{"image_id": 1, "ann_id": 10, "names": "star"}', "names must be a list of strings"),
    ('{"image_id": 1, "ann_id": 10, "names": ["star", 3]}', "names must be a list of strings"),
    ('{"image_id": 1, "ann_id": "10", "names": ["star"]}', "ann_id must be an integer"),
    ('{"image_id": 1, "ann_id": 10, "names": [" , "]}', "holds no name"),
])
def test_bad_lines_name_the_file_and_the_line(tmp_path, line, message):
    path = _write_lines(tmp_path, [{"image_id": 2, "ann_id": 20, "names": ["circle"]}, line])
    with pytest.raises(NamesFileError, match=message) as error:
        read_object_names(path)
    assert f"{path}, line 2:" in str(error.value)


def test_an_annotation_named_twice_is_an_error(tmp_path):
    path = _write_lines(tmp_path, [{"image_id": 1, "ann_id": 10, "names": ["a"]},
                                   {"image_id": 1, "ann_id": 10, "names": ["b"]}])
    with pytest.raises(NamesFileError, match=r"line 2: ann_id 10 is named twice \(first on line 1\)"):
        read_object_names(path)


def test_a_missing_file_names_the_config_key(tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset.names"):
        read_object_names(str(tmp_path / "gone.jsonl"))


def test_lines_match_annotations_by_id_and_unknown_ids_are_counted(tmp_path):
    path = _write_lines(tmp_path, [{"image_id": 1, "ann_id": 11, "names": ["red star", "star"]},
                                   {"image_id": 9, "ann_id": 99, "names": ["ghost"]},
                                   {"image_id": 1, "ann_id": 12, "names": ["novel thing"]}])
    named = name_annotations(DATASET, read_object_names(path), path, by_category=False)
    assert named.by_annotation == {11: ("red star", "star")}
    assert named.unmatched_lines == 2
    by_category = name_annotations(DATASET, read_object_names(path), path, by_category=True)
    assert by_category.by_annotation == {10: ("circle",), 11: ("red star", "star"), 20: ("circle",)}
    assert name_annotations(DATASET, None, "", by_category=True).by_annotation == by_category.by_annotation | {
        11: ("star",)}


def test_a_line_on_another_image_than_its_annotation_is_an_error(tmp_path):
    path = _write_lines(tmp_path, [{"image_id": 2, "ann_id": 10, "names": ["circle"]}])
    with pytest.raises(NamesFileError, match=r"line 1: ann_id 10 is on image 2 here but on image 1"):
        name_annotations(DATASET, read_object_names(path), path, by_category=False)


def test_only_gt_regions_carry_names():
    proposals = np.array([[60, 5, 90, 30, 0.9]], dtype=np.float32)
    plan = plan_regions(IMAGE, DATASET.annotations[1], proposals, frozenset({1, 2}),
                        names={11: ("red star", "star")})
    assert [(r.source, r.names) for r in plan.regions] == [("gt", None), ("gt", ("red star", "star")),
                                                          ("proposal", None), ("image", None)]


def test_changed_names_change_the_fingerprint_of_their_shard_only():
    def tasks(names):
        plans = [plan_regions(image, DATASET.annotations[image.image_id], np.zeros((0, 5)), frozenset({1, 2}),
                              names=names) for image in DATASET.images]
        return [task.fingerprint for task in build_shard_tasks(plans, [], 1, "cfg", "weights")]

    named = tasks({11: ("red star", "star"), 20: ("circle",)})
    assert named == tasks({11: ("red star", "star"), 20: ("circle",)})
    assert [a == b for a, b in zip(named, tasks({11: ("star",), 20: ("circle",)}))] == [False, True]
    assert [a == b for a, b in zip(named, tasks({}))] == [False, False]


def test_strict_planning_never_names_a_novel_box(tmp_path):
    """The names file also lists a novel box: the strict split drops its annotation, so its names count as unmatched
    and reach no region."""
    coco = {"images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 80}],
            "annotations": [{"id": 10, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20]},
                            {"id": 11, "image_id": 1, "category_id": 2, "bbox": [50, 40, 30, 30]}],
            "categories": [{"id": 1, "name": "circle"}, {"id": 2, "name": "star"}]}
    (tmp_path / "instances.json").write_text(json.dumps(coco))
    (tmp_path / "split.json").write_text(json.dumps({"base": ["circle"], "novel": ["star"]}))
    names = _write_lines(tmp_path, [{"image_id": 1, "ann_id": 10, "names": ["red circle, disc"]},
                                    {"image_id": 1, "ann_id": 11, "names": ["yellow star"]}])
    config = load_config(ExtractFeaturesConfig, None, [
        f"dataset.annotations={tmp_path / 'instances.json'}", f"dataset.split={tmp_path / 'split.json'}",
        "dataset.proposals=", f"dataset.names={names}"])
    planned = plan_dataset(config)
    assert [r.names for r in planned.plans[0].regions] == [("red circle", "disc"), None]
    assert planned.object_names() == ["disc", "red circle"] and planned.names_unmatched == 1
    off = load_config(ExtractFeaturesConfig, None, [f"dataset.annotations={tmp_path / 'instances.json'}",
                                                    f"dataset.split={tmp_path / 'split.json'}", "dataset.proposals="])
    assert not off.dataset.object_name_mode and plan_dataset(off).object_names() == []
