"""Centerness, aligned IoU, the IoU loss and the side-distance box coding, against values worked out by hand."""
from __future__ import annotations

import math

import torch

from tests.float32 import approx32
from trainers.proposer.localization_quality import (aligned_iou, centerness, decode_side_distances, iou_loss,
                                                    side_distances)

BOX = torch.tensor([[0.0, 0.0, 40.0, 20.0]])


def test_centerness_is_one_at_the_centre_and_zero_on_or_outside_the_border():
    points = torch.tensor([[20.0, 10.0], [10.0, 5.0], [0.0, 10.0], [50.0, 10.0]])
    values = centerness(points, BOX.expand(4, 4))
    # (10, 5): l, r = 10, 30; t, b = 5, 15 → sqrt(10/30 · 5/15) = 1/3
    assert values.tolist() == approx32([1.0, 1 / 3, 0.0, 0.0])


def test_side_distances_and_decoding_invert_each_other():
    anchors = torch.tensor([[10.0, 0.0, 26.0, 16.0]])  # centre (18, 8), 16 x 16
    distances = side_distances(torch.tensor([[18.0, 8.0]]), BOX)
    assert distances.tolist() == [[18.0, 8.0, 22.0, 12.0]]
    codes = torch.log(distances / 16)
    assert decode_side_distances(codes, anchors).tolist() == [approx32([0.0, 0.0, 40.0, 20.0])]


def test_decoding_never_inverts_a_box_even_for_extreme_codes():
    anchors = torch.tensor([[0.0, 0.0, 16.0, 16.0]]).expand(3, 4)
    codes = torch.tensor([[-50.0] * 4, [50.0] * 4, [0.0, -3.0, 2.0, 0.5]])
    boxes = decode_side_distances(codes, anchors)
    assert torch.all(boxes[:, 2:] >= boxes[:, :2]) and torch.isfinite(boxes).all()
    assert boxes[1, 2].item() == approx32(8 + 16 * 1000 / 16)  # clamped as torchvision clamps dw, dh


def test_aligned_iou_and_loss():
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0]])
    b = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 15.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    assert aligned_iou(a, b).tolist() == approx32([1.0, 50 / 150, 0.0])
    assert iou_loss(a, b).tolist() == approx32([0.0, 1 - 50 / 150, 1.0])
    assert not math.isnan(aligned_iou(torch.zeros(1, 4), torch.zeros(1, 4)).item())
