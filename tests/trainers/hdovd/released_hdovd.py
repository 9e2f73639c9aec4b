"""Transcriptions of the released HD-OVD Faster R-CNN code (iSEE-Laboratory/HD-OVD), rewritten as plain loops over
one batch so the tests can compare our vectorised code with what the released functions compute. Each function
names the file and function it follows; none of this is used by the trainer."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def released_pseudo_boxes(gt_boxes: list[Tensor], proposals: list[Tensor], max_pseudo_box_num: int = 5
                          ) -> tuple[list[Tensor], list[Tensor]]:
    """mmdet/models/detectors/faster_rcnn.py FasterRCNN.forward_train (add_pseudo_box_to_rpn=True) and
    mmdet/models/roi_heads/standard_roi_head.py StandardRoIHead.forward_train: per image, the RPN's ground truth is
    the image's boxes followed by every proposal wider and taller than 32 px; the RoI head keeps the first
    `max_pseudo_box_num` of those same proposals. Boxes are xyxy in the network input's pixels."""
    rpn_gt, roi_pseudo = [], []
    for boxes, image_proposals in zip(gt_boxes, proposals):
        size_mask = ((image_proposals[:, 2] - image_proposals[:, 0]) > 32) & (
            (image_proposals[:, 3] - image_proposals[:, 1]) > 32)
        rpn_gt.append(torch.cat([boxes, image_proposals[size_mask, :4]]))
        roi_pseudo.append(image_proposals[size_mask][:max_pseudo_box_num])
    return rpn_gt, roi_pseudo


def released_distilled_queries(roi_feats: list[Tensor], pos_assigned_gt_inds: list[Tensor], num_boxes: list[int]
                               ) -> tuple[Tensor, list[tuple[int, int]]]:
    """StandardRoIHead.forward_train, the loop that builds `all_query_embedding`: for each image and each of its
    boxes (ground truth, then pseudo), the mean of the features of the positive sampled RoIs assigned to that box,
    normalised; a box without a positive RoI is skipped. roi_feats[i]: the image's sampled RoIs' features, positives
    first (mmdet's sampling order); pos_assigned_gt_inds[i]: the box of each positive. Returns the queries and
    (image, box) of each."""
    queries, which = [], []
    for image, (features, assigned, count) in enumerate(zip(roi_feats, pos_assigned_gt_inds, num_boxes)):
        positives = features[:len(assigned)]
        for box in range(count):
            per_box = positives[assigned == box]
            if len(per_box) > 0:
                queries.append(F.normalize(torch.mean(per_box, dim=0, keepdim=True)))
                which.append((image, box))
    return torch.cat(queries), which


def released_ensemble(cls_score: Tensor, cls_score2: Tensor, base_inds: Tensor, novel_inds: Tensor,
                      alpha: float = 0.25, beta: float = 0.45) -> Tensor:
    """StandardRoIHead.simple_test with use_pseudo_box: cls_score (P, C + 1) the softmax over the classes and the
    background embedding, cls_score2 (P, C) sigmoid(cos(q, e)·skd_tau); base classes at α, novel ones at β, the
    background column kept, every row renormalised to sum 1. The constructor's defaults α = 0.25, β = 0.45 are what
    the released OV-COCO config runs (myfasterrcnn_r50_1x_coco.py sets neither)."""
    ensembled = torch.zeros_like(cls_score)
    ensembled[..., base_inds] = cls_score[..., base_inds] ** (1 - alpha) * cls_score2[..., base_inds] ** alpha
    ensembled[..., novel_inds] = cls_score[..., novel_inds] ** (1 - beta) * cls_score2[..., novel_inds] ** beta
    ensembled[..., -1] = cls_score[..., -1]
    return ensembled / torch.sum(ensembled, dim=-1, keepdim=True)
