import numpy as np
import torch
import torchvision

from pipelines.boxes import box_problem, clip_boxes, nms, pairwise_iou, xywh_to_xyxy


def test_iou_matches_torchvision():
    rng = np.random.default_rng(0)
    a = xywh_to_xyxy(np.c_[rng.uniform(0, 50, (7, 2)), rng.uniform(1, 30, (7, 2))])
    b = xywh_to_xyxy(np.c_[rng.uniform(0, 50, (5, 2)), rng.uniform(1, 30, (5, 2))])
    expected = torchvision.ops.box_iou(torch.tensor(a), torch.tensor(b)).numpy()
    np.testing.assert_allclose(pairwise_iou(a, b), expected, atol=1e-9)
    assert pairwise_iou(a, np.zeros((0, 4))).shape == (7, 0)


def test_nms_matches_torchvision_and_stops_at_max_keep():
    rng = np.random.default_rng(1)
    boxes = xywh_to_xyxy(np.c_[rng.uniform(0, 40, (40, 2)), rng.uniform(5, 25, (40, 2))])
    scores = rng.uniform(0, 1, 40)
    expected = torchvision.ops.nms(torch.tensor(boxes), torch.tensor(scores), 0.5).numpy()
    np.testing.assert_array_equal(nms(boxes, scores, 0.5), expected)
    np.testing.assert_array_equal(nms(boxes, scores, 0.5, max_keep=3), expected[:3])


def test_clip_and_box_problems():
    np.testing.assert_array_equal(clip_boxes([[-3, 2, 12, 30]], 10, 20), [[0, 2, 10, 20]])
    assert box_problem(np.array([1, 1, 5, 5]), 10, 10, 1.0) is None
    assert box_problem(np.array([np.nan, 1, 5, 5]), 10, 10, 1.0) == "nan_box"
    assert box_problem(np.array([-5, 1, 5, 5]), 10, 10, 1.0) == "negative_box"
    assert box_problem(np.array([6, 1, 5, 5]), 10, 10, 1.0) == "inverted_box"
    assert box_problem(np.array([1, 1, 50, 5]), 10, 10, 1.0) == "out_of_image"
    assert box_problem(np.array([-0.5, 0, 10.5, 10]), 10, 10, 1.0) is None  # rounding noise is tolerated
