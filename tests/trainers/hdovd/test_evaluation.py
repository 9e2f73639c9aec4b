"""OV-COCO AP50 (pycocotools) and LVIS AP_r/c/f (lvis) on hand-made ground truth with known AP."""
import json

import pytest
import torch

from trainers.evaluation.ov_coco import evaluate_ov_coco, format_metrics, load_coco_ground_truth, save_metrics, to_coco_results
from trainers.evaluation.lvis import evaluate_lvis

# COCO interpolates precision at 101 recall points; recall ≤ 0.5 at precision 1 fills 51 of them.
HALF_RECALL_AP = 51 / 101


def ground_truth():
    images = [{"id": 1, "width": 100, "height": 100, "file_name": "a.png"},
              {"id": 2, "width": 100, "height": 100, "file_name": "b.png"}]
    boxes = [(1, 1, [10, 10, 20, 20]), (2, 1, [50, 50, 30, 30]), (1, 2, [0, 0, 40, 40])]
    annotations = [{"id": i + 1, "image_id": image, "category_id": category, "bbox": box, "area": box[2] * box[3],
                    "iscrowd": 0} for i, (image, category, box) in enumerate(boxes)]
    categories = [{"id": 1, "name": "cup"}, {"id": 2, "name": "kite"}, {"id": 3, "name": "yak"}]
    return {"images": images, "annotations": annotations, "categories": categories}


def test_to_coco_results_converts_xyxy_and_class_index():
    detections = [{"boxes": torch.tensor([[10.0, 10, 30, 30]]), "scores": torch.tensor([0.9]),
                   "labels": torch.tensor([1])}]
    assert to_coco_results(detections, [7], category_ids=[5, 9]) == [
        {"image_id": 7, "category_id": 9, "bbox": [10.0, 10.0, 20.0, 20.0], "score": pytest.approx(0.9)}]


def test_one_found_one_missed_gives_known_ap50(tmp_path):
    coco = load_coco_ground_truth(ground_truth())
    results = [
        {"image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "score": 0.9},  # perfect; the other cup missed
        {"image_id": 1, "category_id": 2, "bbox": [20, 20, 40, 40], "score": 0.8},  # IoU 0.14 with the kite: miss
    ]
    metrics = evaluate_ov_coco(coco, results, base_category_ids=[1], novel_category_ids=[2])
    assert metrics["AP50_base"] == pytest.approx(HALF_RECALL_AP)
    assert metrics["AP50_novel"] == pytest.approx(0.0)
    assert metrics["AP50_all"] == pytest.approx(HALF_RECALL_AP / 2)  # mean over the two classes
    assert format_metrics(metrics) == "AP50_all 25.2  AP50_base 50.5  AP50_novel 0.0"
    nested = format_metrics({"AP50_all": 0.5, "other_mappings": {"softmax": {"AP50_all": 0.625}}})
    assert nested == "AP50_all 50.0  other_mappings.softmax.AP50_all 62.5"
    saved = json.loads(save_metrics(metrics, tmp_path / "eval" / "metrics.json").read_text())
    assert saved["AP50_base"] == pytest.approx(HALF_RECALL_AP)


def test_a_higher_scored_false_positive_halves_precision():
    coco = load_coco_ground_truth(ground_truth())
    results = [{"image_id": 2, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.95},
               {"image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "score": 0.9}]
    metrics = evaluate_ov_coco(coco, results, base_category_ids=[1], novel_category_ids=[2])
    assert metrics["AP50_base"] == pytest.approx(HALF_RECALL_AP * 0.5)


def test_no_detections_and_no_ground_truth():
    coco = load_coco_ground_truth(ground_truth())
    metrics = evaluate_ov_coco(coco, [], base_category_ids=[1], novel_category_ids=[3])
    assert metrics["AP50_base"] == 0.0 and metrics["AP50_novel"] is None
    with pytest.raises(ValueError, match="both base and novel"):
        evaluate_ov_coco(coco, [], [1, 2], [2])


def test_lvis_rare_common_frequent(tmp_path):
    data = ground_truth()
    for image in data["images"]:
        image.update(neg_category_ids=[], not_exhaustive_category_ids=[])
    for category, frequency in zip(data["categories"], "rcf"):
        category.update(frequency=frequency, image_count=1, synonyms=[category["name"]])
    for annotation in data["annotations"]:
        x, y, w, h = annotation["bbox"]
        annotation["segmentation"] = [[x, y, x + w, y, x + w, y + h, x, y + h]]
    path = tmp_path / "lvis.json"
    path.write_text(json.dumps(data))
    results = [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "score": 0.9},
               {"image_id": 2, "category_id": 1, "bbox": [50, 50, 30, 30], "score": 0.8},
               {"image_id": 1, "category_id": 2, "bbox": [60, 60, 30, 30], "score": 0.7}]
    metrics = evaluate_lvis(path, results)
    assert metrics["APr"] == pytest.approx(1.0)  # both rare "cup" boxes found
    assert metrics["APc"] == pytest.approx(0.0)  # the common "kite" missed
    assert metrics["APf"] == -1.0  # no frequent class has ground truth
    assert not hasattr(__import__("numpy"), "float")  # the alias is removed again


def test_a_hand_written_file_without_area_and_iscrowd_evaluates_as_its_complete_twin(tmp_path):
    complete = ground_truth()
    bare = json.loads(json.dumps(complete))
    for annotation in bare["annotations"]:
        del annotation["area"], annotation["iscrowd"]
    (tmp_path / "bare.json").write_text(json.dumps(bare))
    results = [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "score": 0.9},
               {"image_id": 2, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.8}]
    expected = evaluate_ov_coco(load_coco_ground_truth(complete), results, [1, 2], [3])
    assert evaluate_ov_coco(load_coco_ground_truth(tmp_path / "bare.json"), results, [1, 2], [3]) == \
        expected
