"""torchvision Faster R-CNN (FPN) as an open-vocabulary HD-OVD detector (paper Sec. IV-B, "RoI features as queries").

Built from torchvision parts: GeneralizedRCNNTransform, a backbone with FPN, the RegionProposalNetwork, the RoI
sampler / matcher / box coder of RoIHeads, MultiScaleRoIAlign and TwoMLPHead. What changes: the predictor is
class-agnostic for boxes and classifies by cosine against text embeddings given at call time.

As the released detector (HD-OVD repository, mmdet/models/detectors/faster_rcnn.py FasterRCNN.forward_train and
mmdet/models/roi_heads/standard_roi_head.py StandardRoIHead.forward_train):
- a pseudo box counts when it is wider and taller than `min_pseudo_box_side` input pixels (32); every counted one
  joins the RPN's ground truth, and the first `max_pseudo_boxes` (5) of them join RoI matching;
- the query distilled for a box (ground truth or pseudo) is the mean of the queries of the sampled RoIs assigned to
  it as positives, L2-normalised after the mean; a box no positive RoI covers is not distilled.
Box regression is trained only on RoIs matched to base ground truth.
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
                 box_positive_fraction: float, representation_size: int, roi_sampling_ratio: int,
                 min_pseudo_box_side: float = 32.0, max_pseudo_boxes: int = 5, pseudo_boxes_to_rpn: bool = True):
        """backbone: built by trainers.modeling.backbones.build_backbone; embed_dim: D of the CLIP teacher;
        classifier: a key of CLASSIFIERS at temperature tau_cls; the rest are torchvision FasterRCNN's arguments
        (input size, proposals kept, RoIs sampled per image), the box head's width, and which pseudo boxes are read
        (DetectorConfig)."""
        super().__init__()
        if classifier not in CLASSIFIERS:
            raise KeyError(f"classifier head {classifier!r} is unknown; choose one of {sorted(CLASSIFIERS)}")
        self.embed_dim = embed_dim
        self.min_pseudo_box_side, self.max_pseudo_boxes = min_pseudo_box_side, max_pseudo_boxes
        self.pseudo_boxes_to_rpn = pseudo_boxes_to_rpn
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
                   representation_size=config.representation_size, roi_sampling_ratio=config.roi_sampling_ratio,
                   min_pseudo_box_side=config.min_pseudo_box_side, max_pseudo_boxes=config.max_pseudo_boxes,
                   pseudo_boxes_to_rpn=config.pseudo_boxes_to_rpn)

    def _embed_boxes(self, features, boxes: list[Tensor], image_sizes) -> tuple[Tensor, Tensor, Tensor]:
        """boxes: B × (n_i, 4) in transformed-image pixels → box_deltas (Σn, 4), projected queries (Σn, D) (not
        normalised), text_queries (Σn, D)."""
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
        selections = [pseudo_box_rows(boxes, self.min_pseudo_box_side, self.max_pseudo_boxes) for boxes in pseudo_boxes]
        counted, read = [rows for rows, _ in selections], [rows for _, rows in selections]
        features = self.rcnn.backbone(image_list.tensors)
        rpn_targets = [{"boxes": torch.cat([t["boxes"], boxes[rows]]) if self.pseudo_boxes_to_rpn else t["boxes"],
                        "labels": t["labels"]} for t, boxes, rows in zip(base_targets, pseudo_boxes, counted)]
        proposals, rpn_losses = self.rcnn.rpn(image_list, features, rpn_targets)

        num_base = base_text_embeddings.shape[0]
        read_pseudo = [{key: p[key][rows] for key in ("label_ids", "weights", "text_embeddings")}
                       for p, rows in zip(pseudo, read)]
        columns = PseudoClassifierColumns.from_batch(read_pseudo, [b[rows] for b, rows in zip(pseudo_boxes, read)],
                                                     base_text_embeddings)
        # RoIs are matched to base and read pseudo boxes; a pseudo match gets its text column as label.
        matching_targets = [{"boxes": torch.cat([t["boxes"], boxes]), "labels": torch.cat([t["labels"], cols + 1])}
                            for t, boxes, cols in zip(base_targets, columns.boxes, columns.columns)]
        heads = self.rcnn.roi_heads
        sampled, matched_idxs, labels, regression_targets = heads.select_training_samples(proposals, matching_targets)
        deltas, projected, text_queries = self._embed_boxes(features, sampled, image_list.image_sizes)

        flat_labels = torch.cat(labels)
        class_targets = torch.where(flat_labels > 0, flat_labels - 1, torch.full_like(flat_labels, BACKGROUND))
        pseudo_weights = columns.matched_weights(flat_labels, matched_idxs, [len(t["boxes"]) for t in base_targets])
        class_embeddings = columns.embeddings
        if not classify_pseudo:
            # Table V without "Cls.": pseudo boxes stay matching targets (their RoIs are distilled), but are
            # classified as background, with no pseudo column.
            class_targets = torch.where(class_targets >= num_base, BACKGROUND, class_targets)
            pseudo_weights = torch.full_like(pseudo_weights, float("nan"))
            class_embeddings = columns.embeddings[:num_base]
        class_logits, background_logits = self.classifier(text_queries, class_embeddings)
        box_loss = _class_agnostic_box_loss(deltas, torch.cat(regression_targets), flat_labels, num_base)
        counts = [len(t["boxes"]) + len(rows) for t, rows in zip(targets, read)]
        region_queries, boxes_distilled = mean_positive_queries(projected, labels, matched_idxs, counts)
        rows, is_pseudo = batch_region_rows([len(t["boxes"]) for t in targets], [len(p["boxes"]) for p in pseudo],
                                            read)
        return DetectorTrainOutput(
            box_losses={"loss_rpn_objectness": rpn_losses["loss_objectness"],
                        "loss_rpn_box": rpn_losses["loss_rpn_box_reg"], "loss_box_reg": box_loss},
            class_logits=class_logits,
            background_logits=background_logits,
            class_targets=class_targets,
            matched_pseudo_weights=pseudo_weights,
            region_queries=region_queries,
            region_rows=rows.to(region_queries.device)[boxes_distilled],
            region_is_pseudo=is_pseudo.to(region_queries.device)[boxes_distilled],
            image_queries=self.image_head(features, image_list.image_sizes, image_list.tensors.shape[-2]),
        )

    def predict(self, images, class_text_embeddings) -> list[RegionPredictions]:
        original_sizes = [tuple(image.shape[-2:]) for image in images]
        image_list, _ = self.rcnn.transform(images)
        features = self.rcnn.backbone(image_list.tensors)
        proposals, _ = self.rcnn.rpn(image_list, features)
        deltas, projected, text_queries = self._embed_boxes(features, proposals, image_list.image_sizes)
        boxes = self.rcnn.roi_heads.box_coder.decode(deltas, proposals)[:, 0]
        logits = self.classifier(text_queries, class_text_embeddings)
        probs, background = self.classifier.probabilities(*logits), self.classifier.background_probabilities(*logits)
        queries = F.normalize(projected, dim=-1)
        counts = [len(p) for p in proposals]
        backgrounds = background.split(counts) if background is not None else [None] * len(counts)
        predictions = []
        for box, prob, query, bg, size, original in zip(boxes.split(counts), probs.split(counts),
                                                        queries.split(counts), backgrounds, image_list.image_sizes,
                                                        original_sizes):
            box = resize_boxes(clip_boxes_to_image(box, size), size, original)
            predictions.append(RegionPredictions(boxes=box, class_probs=prob, queries=query, background_probs=bg))
        return predictions


def pseudo_box_rows(boxes: Tensor, min_side: float, max_boxes: int) -> tuple[Tensor, Tensor]:
    """One image's pseudo boxes (P, 4) xyxy in detector-input pixels → (rows of the boxes wider and taller than
    `min_side`, the RPN's extra ground truth; the first `max_boxes` of those, the boxes classified and distilled),
    both (k,) int64 (released FasterRCNN.forward_train and StandardRoIHead.forward_train: `> 32`, then `[:5]`)."""
    counted = ((boxes[:, 2] - boxes[:, 0]) > min_side) & ((boxes[:, 3] - boxes[:, 1]) > min_side)
    rows = counted.nonzero().flatten()
    return rows, rows[:max_boxes]


def mean_positive_queries(queries: Tensor, labels: list[Tensor], matched_idxs: list[Tensor], box_counts: list[int]
                          ) -> tuple[Tensor, Tensor]:
    """The query of each box as the released StandardRoIHead.forward_train computes it: the mean of the queries of
    the sampled RoIs assigned to that box as positives, L2-normalised after the mean.

    queries: (N, D) float, the sampled RoIs' projected queries, images concatenated; labels: B × (n_i,) int64
    (torchvision's: 0 = background); matched_idxs: B × (n_i,) int64, each RoI's box in its image's list of
    `box_counts[i]` boxes. → (R, D) L2-normalised queries of the boxes with a positive RoI, and (R,) int64 their index
    in the batch's boxes (image after image), ascending."""
    offsets = torch.tensor([0] + box_counts[:-1], device=queries.device).cumsum(0)
    flat_labels = torch.cat(labels)
    boxes = torch.cat([idxs + offset for idxs, offset in zip(matched_idxs, offsets)])[flat_labels > 0]
    distilled, slot = torch.unique(boxes, return_inverse=True)
    sums = queries.new_zeros(len(distilled), queries.shape[1]).index_add(0, slot, queries[flat_labels > 0])
    counts = torch.bincount(slot, minlength=len(distilled)).clamp(min=1).to(queries.dtype)
    return F.normalize(sums / counts[:, None], dim=-1), distilled


def batch_region_rows(num_targets: list[int], num_pseudo: list[int], read: list[Tensor]) -> tuple[Tensor, Tensor]:
    """Per image its ground-truth boxes, then its read pseudo boxes → each one's row in the batch's region
    embeddings (per image: every ground-truth box, then every pseudo box) and whether it is a pseudo box."""
    rows, is_pseudo, offset = [], [], 0
    for targets, pseudo, kept in zip(num_targets, num_pseudo, read):
        rows += [torch.arange(targets) + offset, kept.cpu() + offset + targets]
        is_pseudo += [torch.zeros(targets, dtype=torch.bool), torch.ones(len(kept), dtype=torch.bool)]
        offset += targets + pseudo
    return torch.cat(rows), torch.cat(is_pseudo)


def _class_agnostic_box_loss(deltas: Tensor, regression_targets: Tensor, labels: Tensor, num_base: int) -> Tensor:
    """Smooth-L1 on RoIs matched to base ground truth only (pseudo boxes never supervise boxes, HD-OVD eq. 11).

    deltas, regression_targets: (N, 4) float; labels: (N,) int64, torchvision convention (0 = background,
    1..num_base = base, above = pseudo). Normalised by all N sampled RoIs and β = 1/9, as torchvision's fastrcnn_loss.
    """
    base = (labels > 0) & (labels <= num_base)
    loss = F.smooth_l1_loss(deltas[base], regression_targets[base], beta=1 / 9, reduction="sum")
    return loss / max(1, labels.numel())
