"""torchvision Faster R-CNN (FPN) as an open-vocabulary HD-OVD detector (paper Sec. IV-B, "RoI features as queries").

Built from torchvision parts: GeneralizedRCNNTransform, a backbone with FPN, the RegionProposalNetwork, the RoI
sampler / matcher / box coder of RoIHeads, MultiScaleRoIAlign and TwoMLPHead. What changes: the predictor is
class-agnostic for boxes and classifies by cosine against text embeddings given at call time, and the same box head
embeds the distilled regions (ground truth + pseudo boxes) pooled from the FPN with RoIAlign.
Pseudo boxes never enter the box losses: the RPN sees base ground truth only, and box regression is trained only on
RoIs matched to base ground truth.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import TwoMLPHead
from torchvision.models.detection.transform import resize_boxes
from torchvision.ops import MultiScaleRoIAlign, clip_boxes_to_image

from trainers.hdovd.config import DetectorConfig
from trainers.hdovd.detector_base import BACKGROUND, DetectorTrainOutput, OpenVocabularyDetector, RegionPredictions
from trainers.hdovd.heads import CLASSIFIERS, ImageQueryHead, RegionQueryHead
from trainers.hdovd.pseudo_classes import PseudoClassifierColumns
from trainers.modeling.backbones import BackboneSpec, build_backbone

ROI_OUTPUT_SIZE = 7  # torchvision / mmdet Faster R-CNN: 7 × 7 RoIAlign
ASPECT_RATIOS = (0.5, 1.0, 2.0)  # Faster R-CNN anchors, one set per FPN level


class FasterRcnnOpenVocabulary(OpenVocabularyDetector):
    """Faster R-CNN + FPN whose RoI features are HD-OVD's object queries."""

    def __init__(self, *, backbone: BackboneSpec, embed_dim: int, classifier: str, tau_cls: float, min_size: int,
                 max_size: int, rpn_pre_nms_top_n_train: int, rpn_post_nms_top_n_train: int,
                 rpn_pre_nms_top_n_test: int, rpn_post_nms_top_n_test: int, box_batch_size_per_image: int,
                 box_positive_fraction: float, representation_size: int, roi_sampling_ratio: int):
        """backbone: built by trainers.modeling.backbones.build_backbone; embed_dim: D of the CLIP teacher;
        classifier: a key of CLASSIFIERS at temperature tau_cls; the rest are torchvision FasterRCNN's arguments
        (input size, proposals kept, RoIs sampled per image) and the box head's width."""
        super().__init__()
        if classifier not in CLASSIFIERS:
            raise KeyError(f"classifier head {classifier!r} is unknown; choose one of {sorted(CLASSIFIERS)}")
        self.embed_dim = embed_dim
        box_head = TwoMLPHead(backbone.out_channels * ROI_OUTPUT_SIZE**2, representation_size)
        self.rcnn = FasterRCNN(
            backbone.module,
            num_classes=None,
            min_size=min_size,
            max_size=max_size,
            rpn_anchor_generator=AnchorGenerator(backbone.anchor_sizes, (ASPECT_RATIOS,) * len(backbone.anchor_sizes)),
            rpn_pre_nms_top_n_train=rpn_pre_nms_top_n_train,
            rpn_post_nms_top_n_train=rpn_post_nms_top_n_train,
            rpn_pre_nms_top_n_test=rpn_pre_nms_top_n_test,
            rpn_post_nms_top_n_test=rpn_post_nms_top_n_test,
            box_roi_pool=MultiScaleRoIAlign(list(backbone.roi_feature_names), ROI_OUTPUT_SIZE,
                                           sampling_ratio=roi_sampling_ratio),
            box_head=box_head,
            box_predictor=RegionQueryHead(representation_size, embed_dim),
            box_batch_size_per_image=box_batch_size_per_image,
            box_positive_fraction=box_positive_fraction,
        )
        self.classifier = CLASSIFIERS[classifier](embed_dim, tau_cls)
        self.image_head = ImageQueryHead(backbone.out_channels, embed_dim, backbone.roi_feature_names)

    @classmethod
    def from_config(cls, config: DetectorConfig, classifier: str = "sigmoid") -> "FasterRcnnOpenVocabulary":
        """The detector of `hdovd.detector`."""
        backbone = build_backbone(config.backbone, config.backbone_weights, config.trainable_backbone_layers,
                                  config_section="hdovd.detector")
        return cls(backbone=backbone, embed_dim=config.embed_dim, classifier=classifier, tau_cls=config.tau_cls,
                   min_size=config.min_size, max_size=config.max_size,
                   rpn_pre_nms_top_n_train=config.rpn_pre_nms_top_n_train,
                   rpn_post_nms_top_n_train=config.rpn_post_nms_top_n_train,
                   rpn_pre_nms_top_n_test=config.rpn_pre_nms_top_n_test,
                   rpn_post_nms_top_n_test=config.rpn_post_nms_top_n_test,
                   box_batch_size_per_image=config.box_batch_size_per_image,
                   box_positive_fraction=config.box_positive_fraction,
                   representation_size=config.representation_size, roi_sampling_ratio=config.roi_sampling_ratio)

    def _embed_boxes(self, features, boxes: list[Tensor], image_sizes) -> tuple[Tensor, Tensor, Tensor]:
        """boxes: B × (n_i, 4) in transformed-image pixels → box_deltas (Σn, 4), queries (Σn, D), text_queries."""
        heads = self.rcnn.roi_heads
        pooled = heads.box_roi_pool(features, boxes, image_sizes)
        return heads.box_predictor(heads.box_head(pooled))

    def forward_train(self, images, targets, pseudo, base_text_embeddings, classify_pseudo=True) -> DetectorTrainOutput:
        if len(images) != len(targets) or len(images) != len(pseudo):
            raise ValueError(f"{len(images)} images, {len(targets)} targets, {len(pseudo)} pseudo entries: one each")
        original_sizes = [tuple(image.shape[-2:]) for image in images]
        # torchvision's labels are 1-based (0 = background); ours index base_text_embeddings from 0.
        base_targets = [{"boxes": t["boxes"], "labels": t["labels"] + 1} for t in targets]
        image_list, base_targets = self.rcnn.transform(images, base_targets)
        pseudo_boxes = [resize_boxes(p["boxes"].to(image_list.tensors.dtype), size, new_size)
                        for p, size, new_size in zip(pseudo, original_sizes, image_list.image_sizes)]
        features = self.rcnn.backbone(image_list.tensors)
        proposals, rpn_losses = self.rcnn.rpn(image_list, features, base_targets)

        num_base = base_text_embeddings.shape[0]
        columns = PseudoClassifierColumns.from_batch(pseudo, pseudo_boxes, base_text_embeddings, classify_pseudo)
        # Classification matches proposals to base and pseudo boxes; a pseudo match gets its text column as label.
        matching_targets = [{"boxes": torch.cat([t["boxes"], boxes]), "labels": torch.cat([t["labels"], cols + 1])}
                            for t, boxes, cols in zip(base_targets, columns.boxes, columns.columns)]
        heads = self.rcnn.roi_heads
        sampled, matched_idxs, labels, regression_targets = heads.select_training_samples(proposals, matching_targets)

        regions = [torch.cat([t["boxes"], boxes]) for t, boxes in zip(base_targets, pseudo_boxes)]
        deltas, queries, text_queries = self._embed_boxes(
            features, [torch.cat([s, r]) for s, r in zip(sampled, regions)], image_list.image_sizes)
        roi_mask = torch.cat([torch.cat([torch.ones(len(s), dtype=torch.bool), torch.zeros(len(r), dtype=torch.bool)])
                              for s, r in zip(sampled, regions)]).to(queries.device)

        labels = torch.cat(labels)
        class_logits, background_logits = self.classifier(text_queries[roi_mask], columns.embeddings)
        box_loss = _class_agnostic_box_loss(deltas[roi_mask], torch.cat(regression_targets), labels, num_base)
        region_is_pseudo = torch.cat([torch.arange(len(r), device=queries.device) >= len(t["boxes"])
                                      for t, r in zip(base_targets, regions)])
        return DetectorTrainOutput(
            box_losses={"loss_rpn_objectness": rpn_losses["loss_objectness"],
                        "loss_rpn_box": rpn_losses["loss_rpn_box_reg"], "loss_box_reg": box_loss},
            class_logits=class_logits,
            background_logits=background_logits,
            class_targets=torch.where(labels > 0, labels - 1, torch.full_like(labels, BACKGROUND)),
            matched_pseudo_weights=columns.matched_weights(labels, matched_idxs,
                                                           [len(t["boxes"]) for t in base_targets]),
            region_queries=queries[~roi_mask],
            region_is_pseudo=region_is_pseudo,
            image_queries=self.image_head(features, image_list.image_sizes, image_list.tensors.shape[-2]),
        )

    def predict(self, images, class_text_embeddings) -> list[RegionPredictions]:
        original_sizes = [tuple(image.shape[-2:]) for image in images]
        image_list, _ = self.rcnn.transform(images)
        features = self.rcnn.backbone(image_list.tensors)
        proposals, _ = self.rcnn.rpn(image_list, features)
        deltas, queries, text_queries = self._embed_boxes(features, proposals, image_list.image_sizes)
        boxes = self.rcnn.roi_heads.box_coder.decode(deltas, proposals)[:, 0]
        probs = self.classifier.probabilities(*self.classifier(text_queries, class_text_embeddings))
        predictions = []
        counts = [len(p) for p in proposals]
        for box, prob, query, size, original in zip(boxes.split(counts), probs.split(counts), queries.split(counts),
                                                    image_list.image_sizes, original_sizes):
            box = resize_boxes(clip_boxes_to_image(box, size), size, original)
            predictions.append(RegionPredictions(boxes=box, class_probs=prob, queries=query))
        return predictions


def _class_agnostic_box_loss(deltas: Tensor, regression_targets: Tensor, labels: Tensor, num_base: int) -> Tensor:
    """Smooth-L1 on RoIs matched to base ground truth only (pseudo boxes never supervise boxes, HD-OVD eq. 11).

    deltas, regression_targets: (N, 4) float; labels: (N,) int64, torchvision convention (0 = background,
    1..num_base = base, above = pseudo). Normalised by all N sampled RoIs and β = 1/9, as torchvision's fastrcnn_loss.
    """
    base = (labels > 0) & (labels <= num_base)
    loss = F.smooth_l1_loss(deltas[base], regression_targets[base], beta=1 / 9, reduction="sum")
    return loss / max(1, labels.numel())
