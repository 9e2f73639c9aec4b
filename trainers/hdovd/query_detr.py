"""The shared DETR-like query detector (trainers.modeling.query_detector) as an HD-OVD open-vocabulary detector.

The last decoder layer's queries are HD-OVD's object queries: each is projected to the CLIP width (q) and through a
residual MLP to the text space (q̂, classified by cosine against text embeddings given at call time). Matching, not
RoI sampling, decides which query stands for which box: per image, the last layer is matched one-to-one to
[base ground truth; pseudo boxes] on GIoU and L1, giving each query its class target and each distilled region its
query. Box losses (every decoder layer and the encoder's proposals) use base ground truth only.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import box_convert, clip_boxes_to_image

from trainers.hdovd.config import DetectorConfig
from trainers.hdovd.detector_base import BACKGROUND, DetectorTrainOutput, OpenVocabularyDetector, RegionPredictions
from trainers.hdovd.heads import CLASSIFIERS
from trainers.hdovd.pseudo_classes import PseudoClassifierColumns
from trainers.modeling.box_criterion import BoxCriterion, BoxTargets, normalised_cxcywh
from trainers.modeling.matching import hungarian_match, matching_cost
from trainers.modeling.query_detector import QueryDetector

# Class matching of the last layer's queries to [base ground truth; pseudo boxes]: DINO's GIoU / L1 cost weights.
REGION_MATCH_COST_GIOU, REGION_MATCH_COST_L1 = 2.0, 5.0


class QueryDetrOpenVocabulary(OpenVocabularyDetector):
    def __init__(self, *, detr: QueryDetector, embed_dim: int, classifier: str, tau_cls: float,
                 box_criterion: BoxCriterion):
        """detr: the shared query detector; embed_dim: D of the CLIP teacher; classifier: a key of CLASSIFIERS at
        temperature tau_cls; box_criterion: the detector's box and objectness losses (no language terms)."""
        super().__init__()
        if classifier not in CLASSIFIERS:
            raise KeyError(f"classifier head {classifier!r} is unknown; choose one of {sorted(CLASSIFIERS)}")
        self.embed_dim = embed_dim
        self.detr = detr
        dim = detr.hidden_dim
        self.query_projection = nn.Linear(dim, embed_dim)
        # Residual D → 2D → D, as RegionQueryHead: q̂ starts close to q (HD-OVD released code).
        self.text_mlp = nn.Sequential(nn.Linear(embed_dim, 2 * embed_dim), nn.ReLU(),
                                      nn.Linear(2 * embed_dim, embed_dim))
        self.image_projection = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, embed_dim))
        self.classifier = CLASSIFIERS[classifier](embed_dim, tau_cls)
        self.box_criterion = box_criterion

    @classmethod
    def from_config(cls, config: DetectorConfig, classifier: str = "sigmoid") -> "QueryDetrOpenVocabulary":
        """The detector of `hdovd.detector`: the shared query detector at its default (CPU demo) sizes with this
        section's backbone, square input side `min_size` (letterboxed), and the box criterion's default constants."""
        detr = QueryDetector(backbone=config.backbone, backbone_weights=config.backbone_weights,
                             trainable_backbone_layers=config.trainable_backbone_layers, image_size=config.min_size,
                             config_section="hdovd.detector")
        return cls(detr=detr, embed_dim=config.embed_dim, classifier=classifier, tau_cls=config.tau_cls,
                   box_criterion=BoxCriterion())

    def _queries(self, queries: Tensor) -> tuple[Tensor, Tensor]:
        """(N, d) → q (N, D) and q̂ (N, D), both L2-normalised."""
        projected = self.query_projection(queries)
        return F.normalize(projected, dim=-1), F.normalize(projected + self.text_mlp(projected), dim=-1)

    def forward_train(self, images, targets, pseudo, base_text_embeddings, classify_pseudo=True) -> DetectorTrainOutput:
        if len(images) != len(targets) or len(images) != len(pseudo):
            raise ValueError(f"{len(images)} images, {len(targets)} targets, {len(pseudo)} pseudo entries: one each")
        output = self.detr(images)
        final = output.layers[-1]
        columns = PseudoClassifierColumns.from_batch(pseudo, [p["boxes"] for p in pseudo], base_text_embeddings,
                                                     classify_pseudo)
        class_targets, pseudo_weights, region_rows, region_is_pseudo, offset = [], [], [], [], 0
        for image, (target, boxes, size) in enumerate(zip(targets, pseudo, output.box_frames)):
            valid_boxes = final.boxes[image][~output.padding[image]]
            regions = normalised_cxcywh(torch.cat([target["boxes"], boxes["boxes"]]), size)
            if len(regions) > len(valid_boxes):
                raise ValueError(f"image {image}: {len(regions)} boxes to distil but {len(valid_boxes)} queries; "
                                 "raise the detector's min_queries")
            cost = matching_cost(valid_boxes.detach(), valid_boxes.new_zeros(len(valid_boxes), len(regions)),
                                 regions, REGION_MATCH_COST_GIOU, REGION_MATCH_COST_L1, 0.0)
            queries, matched = hungarian_match(cost)
            num_base = len(target["boxes"])
            labels = torch.full((len(valid_boxes),), BACKGROUND, dtype=torch.long, device=valid_boxes.device)
            weights = torch.full((len(valid_boxes),), float("nan"), device=valid_boxes.device)
            is_base = matched < num_base
            labels[queries[is_base]] = target["labels"][matched[is_base]]
            if len(columns.columns[image]):
                pseudo_rows = matched[~is_base] - num_base
                labels[queries[~is_base]] = columns.columns[image][pseudo_rows]
                weights[queries[~is_base]] = columns.weights[image][pseudo_rows].to(weights.dtype)
            region_rows.append(offset + queries[matched.argsort()])  # region order: base boxes, then pseudo boxes
            region_is_pseudo.append(torch.arange(len(regions), device=labels.device) >= num_base)
            class_targets.append(labels)
            pseudo_weights.append(weights)
            offset += len(valid_boxes)
        queries, text_queries = self._queries(final.queries[~output.padding])
        class_logits, background_logits = self.classifier(text_queries, columns.embeddings)
        return DetectorTrainOutput(
            box_losses=self.box_criterion(
                output, BoxTargets.from_pixel_boxes([t["boxes"] for t in targets], output.box_frames)),
            class_logits=class_logits,
            background_logits=background_logits,
            class_targets=torch.cat(class_targets),
            matched_pseudo_weights=torch.cat(pseudo_weights),
            region_queries=queries[torch.cat(region_rows)],
            region_is_pseudo=torch.cat(region_is_pseudo),
            image_queries=F.normalize(self.image_projection(output.memory.mean(dim=1)), dim=-1),
        )

    def predict(self, images, class_text_embeddings) -> list[RegionPredictions]:
        output = self.detr(images)
        final = output.layers[-1]
        predictions = []
        for image, ((height, width), (frame_height, frame_width)) in enumerate(zip(output.image_sizes,
                                                                                   output.box_frames)):
            valid = ~output.padding[image]
            queries, text_queries = self._queries(final.queries[image][valid])
            probs = self.classifier.probabilities(*self.classifier(text_queries, class_text_embeddings))
            boxes = box_convert(final.boxes[image][valid], "cxcywh", "xyxy") * final.boxes.new_tensor(
                [frame_width, frame_height, frame_width, frame_height])
            boxes = clip_boxes_to_image(boxes, (height, width))  # a centre ± half a side can leave the image
            predictions.append(RegionPredictions(boxes=boxes, class_probs=probs, queries=queries))
        return predictions
