"""The class-agnostic proposal network: backbone with FPN → RPN → box head, trained on base boxes only.

With objectness "centerness" it is OLN (Kim et al. 2022, "Learning Open-World Object Proposals without Learning to
Classify"): localization quality instead of foreground / background classification at both stages, which is what
lets it find objects of classes it never saw. With "classification" it is torchvision's Faster R-CNN with one
foreground class, for comparison. Images go in as (3, H, W) floats in [0, 1] of any size; boxes come out in the
pixels of the images as given.
"""
from __future__ import annotations

from torch import Tensor, nn
from torchvision.models.detection.transform import GeneralizedRCNNTransform, resize_boxes

from trainers.modeling.backbones import BackboneSpec, build_backbone
from trainers.proposer.box_head import ProposalBoxHead
from trainers.proposer.config import ProposalOutputConfig, ProposerNetworkConfig
from trainers.proposer.rpn import build_rpn

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torchvision detection models normalise with the ImageNet statistics
IMAGENET_STD = (0.229, 0.224, 0.225)


class ProposalNetwork(nn.Module):
    """Backbone + FPN, ScoredRpn / CenternessRpn, ProposalBoxHead."""

    def __init__(self, backbone: BackboneSpec, config: ProposerNetworkConfig):
        super().__init__()
        self.transform = GeneralizedRCNNTransform(config.min_size, config.max_size, list(IMAGENET_MEAN),
                                                  list(IMAGENET_STD))
        self.backbone = backbone.module
        self.rpn = build_rpn(backbone, config)
        self.box_head = ProposalBoxHead(
            objectness=config.objectness, out_channels=backbone.out_channels,
            roi_feature_names=backbone.roi_feature_names, representation_size=config.representation_size,
            roi_sampling_ratio=config.roi_sampling_ratio, batch_size_per_image=config.box_batch_size_per_image,
            positive_fraction=config.box_positive_fraction, fg_iou_thresh=config.box_fg_iou_thresh,
            bg_iou_thresh=config.box_bg_iou_thresh)

    @classmethod
    def from_config(cls, config: ProposerNetworkConfig) -> "ProposalNetwork":
        backbone = build_backbone(config.backbone, config.backbone_weights, config.trainable_backbone_layers,
                                  config_section="proposer.network")
        return cls(backbone, config)

    def forward(self, images: list[Tensor], gt_boxes: list[Tensor]) -> dict[str, Tensor]:
        """The training forward (what DistributedDataParallel calls): `losses`."""
        return self.losses(images, gt_boxes)

    def losses(self, images: list[Tensor], gt_boxes: list[Tensor]) -> dict[str, Tensor]:
        """images: B × (3, H_i, W_i) float in [0, 1]; gt_boxes: B × (G_i, 4) xyxy in those pixels → named losses
        (RPN objectness and box, box-head score and box); their sum is the training loss."""
        if len(images) != len(gt_boxes):
            raise ValueError(f"{len(images)} images but {len(gt_boxes)} box sets: one each")
        image_list, targets = self.transform(images, [{"boxes": boxes} for boxes in gt_boxes])
        features = self.backbone(image_list.tensors)
        proposals, _, rpn_losses = self.rpn(image_list, features, targets)
        box_losses = self.box_head.losses(features, proposals, [t["boxes"] for t in targets], image_list.image_sizes)
        return {**rpn_losses, **box_losses}

    def propose(self, images: list[Tensor], output: ProposalOutputConfig) -> list[tuple[Tensor, Tensor]]:
        """images: B × (3, H_i, W_i) float in [0, 1] → per image (boxes (K_i, 4) xyxy in that image's pixels,
        scores (K_i,) in [0, 1]), best first, K_i ≤ output.top_k. Call in eval mode under torch.inference_mode()."""
        original_sizes = [tuple(image.shape[-2:]) for image in images]
        image_list, _ = self.transform(images)
        features = self.backbone(image_list.tensors)
        proposals, scores, _ = self.rpn(image_list, features)
        detections = self.box_head.detect(features, proposals, scores, image_list.image_sizes, output)
        return [(resize_boxes(boxes, size, original), score)
                for (boxes, score), size, original in zip(detections, image_list.image_sizes, original_sizes)]
