"""The proposal network's second stage: RoI features of the RPN's proposals → refined boxes and a score.

Two scorings (`proposer.network.objectness`):
- centerness (OLN-Box, Kim et al. 2022, Sec. 3.1; released convfc_bbox_score_head.py): one logit regresses the IoU
  of the proposal with its matched box (L1 on the sigmoid, positives only), and the final score is the geometric
  mean sqrt(RPN centerness · box IoU score); there is no classification, so nothing learns that unannotated
  objects are background.
- classification: torchvision's Faster R-CNN box head with one foreground class (softmax score, cross entropy).

Sampling is torchvision's RoIHeads.select_training_samples, which is OLN's rcnn sampler too: ground truth added
to the proposals, IoU ≥ 0.5 positive, a quarter of the sampled RoIs positive at most.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection.faster_rcnn import TwoMLPHead
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.ops import MultiScaleRoIAlign, batched_nms, clip_boxes_to_image, remove_small_boxes

from trainers.proposer.config import Objectness, ProposalOutputConfig
from trainers.proposer.localization_quality import aligned_iou

ROI_OUTPUT_SIZE = 7  # OLN / torchvision: 7 × 7 RoIAlign
MIN_BOX_SIDE = 1e-2  # torchvision postprocess_detections: degenerate boxes are dropped


class BoxAndScorePredictor(nn.Module):
    """Box deltas (N, 4), class-agnostic, and score logits (N, C): C = 1 (OLN's box-IoU score) or 2 (background,
    object). Init as OLN's ConvFCBBoxScoreHead / mmdet BBoxHead: score normal std 0.01, deltas std 0.001."""

    def __init__(self, in_features: int, score_outputs: int):
        super().__init__()
        self.deltas = nn.Linear(in_features, 4)
        self.score = nn.Linear(in_features, score_outputs)
        nn.init.normal_(self.score.weight, std=0.01)
        nn.init.normal_(self.deltas.weight, std=0.001)
        nn.init.zeros_(self.score.bias)
        nn.init.zeros_(self.deltas.bias)

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        return self.score(features), self.deltas(features)


class ProposalBoxHead(nn.Module):
    """RoIAlign over the FPN, two fully connected layers, then BoxAndScorePredictor."""

    def __init__(self, *, objectness: Objectness, out_channels: int, roi_feature_names: tuple[str, ...],
                 representation_size: int, roi_sampling_ratio: int, batch_size_per_image: int,
                 positive_fraction: float, fg_iou_thresh: float, bg_iou_thresh: float):
        super().__init__()
        self.objectness = objectness
        # RoIHeads holds the sampler, matcher and box coder (weights 10, 10, 5, 5 = OLN's target_stds 0.1, 0.2);
        # its own forward and scoring are not used.
        self.roi_heads = RoIHeads(
            box_roi_pool=MultiScaleRoIAlign(list(roi_feature_names), ROI_OUTPUT_SIZE, roi_sampling_ratio),
            box_head=TwoMLPHead(out_channels * ROI_OUTPUT_SIZE**2, representation_size),
            box_predictor=BoxAndScorePredictor(representation_size, 1 if objectness == "centerness" else 2),
            fg_iou_thresh=fg_iou_thresh, bg_iou_thresh=bg_iou_thresh, batch_size_per_image=batch_size_per_image,
            positive_fraction=positive_fraction, bbox_reg_weights=None,
            score_thresh=0.0, nms_thresh=1.0, detections_per_img=1)

    def _predict(self, features: dict[str, Tensor], boxes: list[Tensor], image_sizes) -> tuple[Tensor, Tensor]:
        heads = self.roi_heads
        return heads.box_predictor(heads.box_head(heads.box_roi_pool(features, boxes, image_sizes)))

    def losses(self, features: dict[str, Tensor], proposals: list[Tensor], gt_boxes: list[Tensor], image_sizes
               ) -> dict[str, Tensor]:
        """proposals, gt_boxes: per image (P_i, 4) / (G_i, 4) xyxy in network-input pixels → named losses."""
        targets = [{"boxes": boxes, "labels": torch.ones(len(boxes), dtype=torch.int64, device=boxes.device)}
                   for boxes in gt_boxes]
        sampled, matched_idxs, labels, regression_targets = self.roi_heads.select_training_samples(proposals, targets)
        score_logits, deltas = self._predict(features, sampled, image_sizes)
        labels, regression_targets = torch.cat(labels), torch.cat(regression_targets)
        positive = labels > 0
        num_samples = max(1, labels.numel())
        if self.objectness == "classification":
            # torchvision fastrcnn_loss with one foreground class: cross entropy, smooth-L1 (β = 1/9) on positives.
            box_loss = F.smooth_l1_loss(deltas[positive], regression_targets[positive], beta=1 / 9, reduction="sum")
            return {"loss_box_classification": F.cross_entropy(score_logits, labels),
                    "loss_box": box_loss / num_samples}
        # OLN: L1 box-delta loss (weight 1) and L1 IoU-score loss (weight 1), both over positives, divided by all
        # sampled RoIs (avg_factor = bbox_targets.size(0)).
        box_loss = F.l1_loss(deltas[positive], regression_targets[positive], reduction="sum") / num_samples
        matched = torch.cat([boxes[index] if len(boxes) else torch.zeros(len(index), 4, device=index.device)
                             for boxes, index in zip(gt_boxes, matched_idxs)])
        # The target is the IoU of the RoI as sampled (OLN: bbox_overlaps(pos_bboxes, pos_gt_bboxes)), not of the
        # refined box.
        iou_target = aligned_iou(torch.cat(sampled)[positive], matched[positive])
        score_loss = (score_logits[positive, 0].sigmoid() - iou_target).abs().sum() / num_samples
        return {"loss_box_iou_score": score_loss, "loss_box": box_loss}

    def detect(self, features: dict[str, Tensor], proposals: list[Tensor], proposal_scores: list[Tensor],
               image_sizes: list[tuple[int, int]], output: ProposalOutputConfig) -> list[tuple[Tensor, Tensor]]:
        """Per image: refined boxes (K, 4) xyxy in network-input pixels and scores (K,) in [0, 1], best first,
        after score threshold, class-agnostic NMS and top-k (`output`)."""
        score_logits, deltas = self._predict(features, proposals, image_sizes)
        boxes = self.roi_heads.box_coder.decode(deltas, proposals)[:, 0]
        if self.objectness == "centerness":
            # OLN get_bboxes: "a geometric mean of the estimated localization quality scores of OLN-RPN and OLN-Box".
            scores = torch.sqrt(torch.cat(proposal_scores) * score_logits[:, 0].sigmoid())
        else:
            scores = F.softmax(score_logits, dim=-1)[:, 1]
        counts = [len(p) for p in proposals]
        return [_select(box, score, size, output)
                for box, score, size in zip(boxes.split(counts), scores.split(counts), image_sizes)]


def _select(boxes: Tensor, scores: Tensor, image_size: tuple[int, int], output: ProposalOutputConfig
            ) -> tuple[Tensor, Tensor]:
    boxes = clip_boxes_to_image(boxes, image_size)
    keep = remove_small_boxes(boxes, MIN_BOX_SIDE)
    keep = keep[scores[keep] >= output.score_thresh]
    boxes, scores = boxes[keep], scores[keep]
    if output.nms_thresh < 1.0:
        keep = batched_nms(boxes, scores, torch.zeros_like(scores, dtype=torch.int64), output.nms_thresh)
    else:
        keep = torch.argsort(scores, descending=True, stable=True)
    keep = keep[:output.top_k]
    return boxes[keep], scores[keep]

