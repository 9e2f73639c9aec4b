"""Class-agnostic average recall with pycocotools: hand-computed cases, both proposal formats, and the simulated
ShapesOV proposals' figures quoted in the issue (novel recall 90.1%, AR 46.1% at 10 per image)."""
from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from pipelines.coco import AnnotationError, read_coco
from pipelines.proposal_recall import RecallGroundTruth, average_recall, format_recall_table, load_ground_truth
from pipelines.proposals import read_proposals
from shapesov.__main__ import main as shapes_main
from tests.float32 import approx32


def _coco(annotations: list[tuple[int, int, list[float]]]) -> dict:
    """(image id, category id, xyxy) rows → a COCO dict over images 1 and 2 (100 x 100)."""
    return {"images": [{"id": i, "file_name": f"{i}.jpg", "width": 100, "height": 100} for i in (1, 2)],
            "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
            "annotations": [{"id": n + 1, "image_id": image, "category_id": category, "iscrowd": 0,
                             "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0)}
                            for n, (image, category, (x0, y0, x1, y1)) in enumerate(annotations)]}


GROUND_TRUTH = _coco([(1, 1, [0, 0, 10, 10]), (1, 2, [20, 20, 40, 40]), (2, 1, [0, 0, 20, 10])])
PROPOSALS = {
    1: np.array([[0, 0, 10, 10, 0.9],  # IoU 1 with the cat of image 1
                 [20, 20, 40, 34.4, 0.8]]),  # IoU 20·14.4 / 400 = 0.72 with the dog: found at IoU 0.50 ... 0.70
    2: np.array([[50, 50, 60, 60, 0.95],  # on nothing, and the best scored of image 2
                 [0, 0, 20, 10, 0.5]]),  # IoU 1 with the cat of image 2
}


def test_recall_by_hand_is_class_agnostic_and_counts_the_top_k_by_score():
    metrics = average_recall(GROUND_TRUTH, PROPOSALS, max_dets=(1, 2))
    # k = 1: image 1 keeps its cat box, image 2 its box on nothing → 1 of 3 boxes at every IoU threshold.
    assert metrics["AR@1"] == approx32(1 / 3) and metrics["R50@1"] == approx32(1 / 3)
    # k = 2: all three at IoU 0.50-0.70 (5 thresholds), the dog lost at 0.75-0.95 (5 thresholds), whatever class
    # the dog is.
    assert metrics["AR@2"] == approx32((5 * 1 + 5 * 2 / 3) / 10) and metrics["R50@2"] == approx32(1.0)
    assert metrics["num_gt"] == 3


def test_ground_truth_restricted_to_categories_and_missing_images_find_nothing(tmp_path):
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(GROUND_TRUTH))
    cats = load_ground_truth(str(path), category_ids=[1])
    assert average_recall(cats, PROPOSALS, max_dets=(1, 2)) == approx32(
        {"AR@1": 0.5, "R50@1": 0.5, "AR@2": 1.0, "R50@2": 1.0, "num_gt": 2})
    only_image_1 = {1: PROPOSALS[1]}  # image 2 got no proposals: its cat counts as not found
    assert average_recall(cats, only_image_1, max_dets=(2,))["AR@2"] == approx32(0.5)
    assert average_recall(cats, {}, max_dets=(2,)) == {"AR@2": 0.0, "R50@2": 0.0, "num_gt": 2}
    nothing = load_ground_truth(str(path), category_ids=[7])
    assert average_recall(nothing, PROPOSALS, max_dets=(2,)) == {"AR@2": None, "R50@2": None, "num_gt": 0}
    with pytest.raises(AnnotationError, match=r"images \[9\] are not in"):
        average_recall(cats, PROPOSALS, image_ids=[1, 9])


def test_crowd_boxes_are_not_counted(tmp_path):
    crowd = _coco([(1, 1, [0, 0, 10, 10]), (2, 1, [0, 0, 20, 10])])
    crowd["annotations"][1]["iscrowd"] = 1
    del crowd["annotations"][0]["area"]
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(crowd))
    metrics = average_recall(load_ground_truth(str(path)), PROPOSALS, max_dets=(2,))
    assert metrics["num_gt"] == 1 and metrics["AR@2"] == approx32(1.0)


@pytest.fixture(scope="module")
def shapes_train(tmp_path_factory):
    """The default ShapesOV train split (2000 images, seed 0), as `make sample` writes it."""
    out = tmp_path_factory.mktemp("shapes")
    assert shapes_main(["--out", str(out), "--val", "1"]) == 0
    return out


def test_simulated_shapes_proposals_score_as_the_issue_quotes_in_both_formats(shapes_train):
    annotations = shapes_train / "annotations"
    truth = RecallGroundTruth.load(str(annotations / "train_base.json"), str(annotations / "train_novel_heldout.json"),
                                   str(shapes_train / "ov_split.json"))
    dataset = read_coco(str(annotations / "train_base.json"))
    rows = {name: truth.score(read_proposals(str(shapes_train / "proposals" / name), dataset).by_image)
            for name in ("train.json", "train.pkl")}
    novel = rows["train.json"]["novel"]
    assert (round(100 * novel["R50@10"], 1), round(100 * novel["AR@10"], 1)) == (90.1, 46.1)
    assert novel["num_gt"] == 1275 and rows["train.json"]["base"]["num_gt"] == 3772
    # The pickle holds the same boxes unrounded (the JSON keeps 2 decimals): the same figures to 0.1 points.
    for side in ("base", "novel"):
        for key in ("AR@5", "AR@10", "AR@100", "R50@10"):
            assert rows["train.pkl"][side][key] == pytest.approx(rows["train.json"][side][key], abs=1e-3)
    table = format_recall_table(rows)
    assert "train.json  novel     44.4     46.1     46.1     85.3     90.1     90.1  1275" in table


def test_pickle_without_scores_keeps_its_order(tmp_path):
    coco = tmp_path / "gt.json"
    coco.write_text(json.dumps(GROUND_TRUTH))
    path = tmp_path / "p.pkl"
    # (N, 4) arrays: the reader gives decreasing scores, so the first box of each image is its best.
    path.write_bytes(pickle.dumps([np.array([[20, 20, 40, 40], [0, 0, 10, 10]], np.float32),
                                   np.array([[0, 0, 20, 10]], np.float32)], protocol=4))
    proposals = read_proposals(str(path), read_coco(str(coco))).by_image
    assert average_recall(load_ground_truth(str(coco)), proposals, max_dets=(1,))["AR@1"] == approx32(2 / 3)
