"""Region proposal networks that also return each proposal's score: torchvision's (objectness = foreground /
background classification) and OLN's (objectness = centerness, Kim et al. 2022, Sec. 3.1).

Both reuse torchvision's RegionProposalNetwork for anchors, matching, sampling and the per-level top-n + NMS of
`filter_proposals`; they differ in the head, the box coding and the losses.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead, concat_box_prediction_layers
from torchvision.ops import box_iou

from trainers.modeling.backbones import BackboneSpec
from trainers.proposer.config import ProposerNetworkConfig
from trainers.proposer.localization_quality import (anchor_centers_and_sizes, centerness, decode_side_distances,
                                                    iou_loss, side_distances)

STANDARD_ASPECT_RATIOS = (0.5, 1.0, 2.0)  # Faster R-CNN / torchvision: three anchors per location
OLN_ASPECT_RATIOS = (1.0,)  # OLN: "one anchor per feature location as opposed to 3", for better generalization


def match_anchors(anchors: list[Tensor], gt_boxes: list[Tensor], matcher: det_utils.Matcher
                  ) -> tuple[list[Tensor], list[Tensor]]:
    """Per image: labels (A,) float (1 matched, 0 background, -1 between thresholds) and the matched box (A, 4)."""
    labels, matched = [], []
    for anchors_of_image, boxes in zip(anchors, gt_boxes):
        if boxes.numel() == 0:
            labels.append(torch.zeros(len(anchors_of_image), device=anchors_of_image.device))
            matched.append(torch.zeros_like(anchors_of_image))
            continue
        index = matcher(box_iou(boxes, anchors_of_image))
        label = (index >= 0).float()
        label[index == matcher.BETWEEN_THRESHOLDS] = -1.0
        labels.append(label)
        matched.append(boxes[index.clamp(min=0)])
    return labels, matched


class ScoredRpn(RegionProposalNetwork):
    """torchvision's RPN (sigmoid objectness trained as foreground / background) returning scores too."""

    def forward(self, images: ImageList, features: dict[str, Tensor], targets: list[dict[str, Tensor]] | None = None
                ) -> tuple[list[Tensor], list[Tensor], dict[str, Tensor]]:
        """→ proposals per image (P_i, 4) xyxy in `images` pixels, their scores (P_i,) in [0, 1] (the sigmoid of the
        objectness), and the losses when training (targets: per image "boxes" (G_i, 4))."""
        feature_maps = list(features.values())
        objectness, codes = self.head(feature_maps)
        anchors = self.anchor_generator(images, feature_maps)
        anchors_per_level = [o[0].numel() for o in objectness]  # anchors x H x W of each level
        objectness, codes = concat_box_prediction_layers(objectness, codes)
        # Proposals are not differentiated through: the box head learns from them as fixed boxes (Faster R-CNN).
        proposals = self.decode(codes.detach(), anchors).view(len(anchors), -1, 4)
        boxes, scores = self.filter_proposals(proposals, objectness, images.image_sizes, anchors_per_level)
        losses = self.losses(objectness, codes, anchors, targets) if self.training else {}
        return boxes, scores, losses

    def decode(self, codes: Tensor, anchors: list[Tensor]) -> Tensor:
        """codes: (ΣA, 4) → boxes (ΣA, 4)."""
        return self.box_coder.decode(codes, anchors).reshape(-1, 4)

    def losses(self, objectness: Tensor, codes: Tensor, anchors: list[Tensor], targets) -> dict[str, Tensor]:
        """torchvision's: BCE on 256 sampled anchors, smooth-L1 deltas on their positives."""
        if targets is None:
            raise ValueError("training the RPN needs targets (boxes per image)")
        labels, matched = self.assign_targets_to_anchors(anchors, targets)
        regression_targets = self.box_coder.encode(matched, anchors)
        objectness_loss, box_loss = self.compute_loss(objectness, codes, labels, regression_targets)
        return {"loss_rpn_objectness": objectness_loss, "loss_rpn_box": box_loss}


class CenternessRpnHead(nn.Module):
    """OLN's RPN head (released oln_rpn_head.py): 3×3 conv + ReLU, the features L2-normalised over channels "for
    training stability", then 1×1 convolutions for the centerness logit and the four side distances per anchor.
    OLN also keeps a classification branch at loss weight 0; it has no effect and is left out."""

    def __init__(self, in_channels: int, num_anchors: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, in_channels, 3, padding=1)
        self.centerness = nn.Conv2d(in_channels, num_anchors, 1)
        self.distances = nn.Conv2d(in_channels, num_anchors * 4, 1)
        for layer in (self.conv, self.centerness, self.distances):  # OLN init_weights: normal, std 0.01
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)

    def forward(self, features: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """Per level (B, C, H, W) → centerness logits (B, A, H, W) and log side distances (B, 4A, H, W)."""
        logits, distances = [], []
        for feature in features:
            hidden = F.normalize(F.relu(self.conv(feature)), p=2, dim=1)
            logits.append(self.centerness(hidden))
            distances.append(self.distances(hidden))
        return logits, distances


class CenternessRpn(ScoredRpn):
    """OLN-RPN: the objectness logit regresses the centerness of the anchor centre in its matched box (L1 on the
    sigmoid), and boxes are side distances trained with an IoU loss; no foreground / background classification."""

    def __init__(self, *, centerness_fg_iou_thresh: float, centerness_bg_iou_thresh: float,
                 centerness_batch_size_per_image: int, box_loss_weight: float, **rpn_arguments):
        super().__init__(**rpn_arguments)
        # OLN objectness assigner: min_pos_iou equals pos_iou_thr, so no low-quality matches are added.
        self.centerness_matcher = det_utils.Matcher(centerness_fg_iou_thresh, centerness_bg_iou_thresh,
                                                    allow_low_quality_matches=False)
        # pos_fraction 1.0: up to all 256 are positives; torchvision's sampler, as mmdet's RandomSampler, fills
        # what the positives leave with negatives (target 0).
        self.centerness_sampler = det_utils.BalancedPositiveNegativeSampler(centerness_batch_size_per_image, 1.0)
        self.box_loss_weight = box_loss_weight

    def decode(self, codes: Tensor, anchors: list[Tensor]) -> Tensor:
        return decode_side_distances(codes, torch.cat(anchors))

    def losses(self, objectness: Tensor, codes: Tensor, anchors: list[Tensor], targets) -> dict[str, Tensor]:
        """OLN: IoU loss x 10 on the positives of the 0.7 / 0.3 box sampler (256 anchors, half positive), L1 between
        sigmoid(objectness) and the centerness target on the 0.3 / 0.1 objectness sampler; both divided by the
        number of anchors the box sampler drew (mmdet's num_total_samples)."""
        if targets is None:
            raise ValueError("training the RPN needs targets (boxes per image)")
        gt_boxes = [t["boxes"] for t in targets]
        all_anchors = torch.cat(anchors)
        centers, _ = anchor_centers_and_sizes(all_anchors)

        labels, matched = match_anchors(anchors, gt_boxes, self.proposal_matcher)
        positives, negatives = self.fg_bg_sampler(labels)
        positive, negative, matched = torch.cat(positives).bool(), torch.cat(negatives).bool(), torch.cat(matched)
        num_samples = max(1, int(positive.sum() + negative.sum()))
        # OLN regresses only positives whose anchor centre lies inside the box ("valid_targets"): the distances of
        # a centre outside it are not all positive.
        regressed = positive & (side_distances(centers, matched).min(dim=1).values > 0)
        predicted = decode_side_distances(codes[regressed], all_anchors[regressed])
        box_loss = self.box_loss_weight * iou_loss(predicted, matched[regressed]).sum() / num_samples

        labels, matched = match_anchors(anchors, gt_boxes, self.centerness_matcher)
        positives, negatives = self.centerness_sampler(labels)
        positive, sampled = torch.cat(positives).bool(), torch.cat(positives).bool() | torch.cat(negatives).bool()
        target = torch.where(positive, centerness(centers, torch.cat(matched)), torch.zeros_like(centers[:, 0]))
        centerness_loss = (objectness.flatten()[sampled].sigmoid() - target[sampled]).abs().sum() / num_samples
        return {"loss_rpn_centerness": centerness_loss, "loss_rpn_box": box_loss}


def build_rpn(backbone: BackboneSpec, config: ProposerNetworkConfig) -> ScoredRpn:
    """The RPN of `proposer.network.objectness` over the backbone's FPN levels (one anchor size per level)."""
    ratios = OLN_ASPECT_RATIOS if config.objectness == "centerness" else STANDARD_ASPECT_RATIOS
    anchors = AnchorGenerator(backbone.anchor_sizes, (ratios,) * len(backbone.anchor_sizes))
    arguments = dict(
        anchor_generator=anchors,
        fg_iou_thresh=config.rpn_fg_iou_thresh, bg_iou_thresh=config.rpn_bg_iou_thresh,
        batch_size_per_image=config.rpn_batch_size_per_image, positive_fraction=config.rpn_positive_fraction,
        pre_nms_top_n={"training": config.rpn_pre_nms_top_n_train, "testing": config.rpn_pre_nms_top_n_test},
        post_nms_top_n={"training": config.rpn_post_nms_top_n_train, "testing": config.rpn_post_nms_top_n_test},
        nms_thresh=config.rpn_nms_thresh,
    )
    if config.objectness == "classification":
        return ScoredRpn(head=RPNHead(backbone.out_channels, len(ratios)), **arguments)
    return CenternessRpn(head=CenternessRpnHead(backbone.out_channels, len(ratios)),
                         centerness_fg_iou_thresh=config.centerness_fg_iou_thresh,
                         centerness_bg_iou_thresh=config.centerness_bg_iou_thresh,
                         centerness_batch_size_per_image=config.centerness_batch_size_per_image,
                         box_loss_weight=config.rpn_box_loss_weight, **arguments)
