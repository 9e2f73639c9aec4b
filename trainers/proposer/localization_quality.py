"""Localization quality, OLN's objectness (Kim et al. 2022, Sec. 3): centerness of a location in a box, the IoU of
two boxes, the IoU loss, and the side-distance box coding of OLN's RPN.

All boxes are xyxy in the same pixels; functions work on aligned rows (row i with row i).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

# exp() of a predicted log-distance is clamped as torchvision's BoxCoder clamps dw, dh (bbox_xform_clip).
MAX_LOG_DISTANCE = math.log(1000.0 / 16)


def side_distances(points: Tensor, boxes: Tensor) -> Tensor:
    """points: (N, 2) x, y; boxes: (N, 4) → (N, 4) distances left, top, right, bottom from each point to the sides
    of its box (negative where the point lies outside)."""
    return torch.stack([points[:, 0] - boxes[:, 0], points[:, 1] - boxes[:, 1],
                        boxes[:, 2] - points[:, 0], boxes[:, 3] - points[:, 1]], dim=1)


def centerness(points: Tensor, boxes: Tensor) -> Tensor:
    """(N,) in [0, 1]: sqrt(min(l, r)/max(l, r) · min(t, b)/max(t, b)), 1 at the box centre, 0 on or outside its
    border. OLN's RPN target (released oln_rpn_head.py, `_get_targets_single`, objectness_type "Centerness": the
    anchor centre's distances to the matched box, zero where a distance is not positive), as FCOS defines it."""
    distances = side_distances(points, boxes)
    inside = distances.min(dim=1).values > 0
    distances = distances.clamp(min=0)
    left_right, top_bottom = distances[:, [0, 2]], distances[:, [1, 3]]
    ratio = (left_right.min(dim=1).values / left_right.max(dim=1).values.clamp(min=1e-12)
             * top_bottom.min(dim=1).values / top_bottom.max(dim=1).values.clamp(min=1e-12))
    return torch.where(inside, ratio.sqrt(), torch.zeros_like(ratio))


def aligned_iou(a: Tensor, b: Tensor) -> Tensor:
    """a, b: (N, 4) → (N,) IoU of row i of a with row i of b; inverted boxes count as empty."""
    top_left = torch.maximum(a[:, :2], b[:, :2])
    bottom_right = torch.minimum(a[:, 2:], b[:, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(dim=1)
    area_a = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(dim=1)
    area_b = (b[:, 2:] - b[:, :2]).clamp(min=0).prod(dim=1)
    return inter / (area_a + area_b - inter).clamp(min=1e-6)


def iou_loss(predicted: Tensor, target: Tensor) -> Tensor:
    """(N,) 1 − IoU: OLN's RPN box loss (released config: IoULoss with linear=True)."""
    return 1.0 - aligned_iou(predicted, target)


def anchor_centers_and_sizes(anchors: Tensor) -> tuple[Tensor, Tensor]:
    """anchors: (N, 4) → centres (N, 2) x, y and sizes (N, 2) width, height."""
    return (anchors[:, :2] + anchors[:, 2:]) / 2, anchors[:, 2:] - anchors[:, :2]


def decode_side_distances(codes: Tensor, anchors: Tensor) -> Tensor:
    """codes: (N, 4) log distances l, t, r, b in units of the anchor's width / height; anchors: (N, 4) → boxes (N, 4).

    OLN regresses the distances from the anchor centre to the four sides (its TBLR coder, linear in the anchor
    size); predicting their logarithm, as FCOS does, keeps every decoded box the right way round."""
    centers, sizes = anchor_centers_and_sizes(anchors)
    distances = codes.clamp(max=MAX_LOG_DISTANCE).exp() * sizes.repeat(1, 2)
    return torch.cat([centers - distances[:, :2], centers + distances[:, 2:]], dim=1)
