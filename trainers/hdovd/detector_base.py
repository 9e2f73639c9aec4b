"""The interface an open-vocabulary detector implements for HD-OVD training and inference.

A detector turns images into (a) its own box losses, (b) classification logits of sampled RoIs against text
embeddings with their targets, (c) one "query" per distilled region and (d) one global query per image. The HD-OVD
losses (`trainers.hdovd.losses`) only ever see these outputs, so a query-based detector can replace Faster R-CNN.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass

from torch import Tensor, nn

BACKGROUND = -1  # class target of a RoI matched to no box


@dataclass
class DetectorTrainOutput:
    """What one training forward returns. N = sampled RoIs, C = M base + K pseudo classes, R = distilled regions.

    box_losses: name → scalar; RPN and box regression, computed from base ground truth only.
    class_logits: (N, C) float, cos(q̂_i, e_j)·τ_cls against [base text embeddings; batch pseudo-label embeddings].
    background_logits: (N,) float against a learnable background embedding, or None for a sigmoid classifier.
    class_targets: (N,) int64, column index in [0, C) or BACKGROUND.
    matched_pseudo_weights: (N,) float, weight α (eq. 5) of the pseudo box a RoI is matched to, NaN for base /
        background.
    region_queries: (R, D) float, L2-normalised; one per distilled region, in batch order: per image its base
        ground-truth boxes, then its pseudo boxes. The detector decides which boxes it distils (e.g. the ones its
        sampled RoIs cover), so R may be fewer than the batch's boxes.
    region_rows: (R,) int64, the row of each distilled region in the batch's region embeddings (DetectorInputs:
        per image its ground-truth boxes, then all its pseudo boxes).
    region_is_pseudo: (R,) bool, which of those rows are pseudo boxes.
    image_queries: (B, D) float, L2-normalised global image embedding of the detector (eq. 6–7 + projection).
    """

    box_losses: dict[str, Tensor]
    class_logits: Tensor
    background_logits: Tensor | None
    class_targets: Tensor
    matched_pseudo_weights: Tensor
    region_queries: Tensor
    region_rows: Tensor
    region_is_pseudo: Tensor
    image_queries: Tensor


@dataclass
class RegionPredictions:
    """Scored regions of one image before the ensemble and NMS (P = proposals kept by the detector).

    boxes: (P, 4) float xyxy in the pixels of the image as given. class_probs: (P, C) float, p_cls in [0, 1].
    queries: (P, D) float, L2-normalised distilled region embedding q (gives p_dis of eq. 12).
    background_probs: (P,) float, the background column of a softmax classifier (class_probs + it sum to 1), or
        None for a sigmoid classifier.
    """

    boxes: Tensor
    class_probs: Tensor
    queries: Tensor
    background_probs: Tensor | None = None


class OpenVocabularyDetector(nn.Module, abc.ABC):
    """A detector whose classes are text embeddings given at call time."""

    embed_dim: int  # D, the CLIP embedding width the queries are projected to

    def forward(self, images, targets, pseudo, base_text_embeddings, classify_pseudo: bool = True) -> DetectorTrainOutput:
        """The training forward (what DistributedDataParallel calls); see forward_train."""
        return self.forward_train(images, targets, pseudo, base_text_embeddings, classify_pseudo)

    @abc.abstractmethod
    def forward_train(
        self,
        images: list[Tensor],
        targets: list[dict[str, Tensor]],
        pseudo: list[dict[str, Tensor]],
        base_text_embeddings: Tensor,
        classify_pseudo: bool = True,
    ) -> DetectorTrainOutput:
        """images: B × (3, H, W) float in [0, 1]. targets: B × {boxes (G, 4) float xyxy pixels, labels (G,) int64
        index into base_text_embeddings}. pseudo: B × {boxes (P, 4), label_ids (P,) int64, weights (P,) float α of
        eq. 5, text_embeddings (P, D) float}, every pseudo box of the batch, best first: the detector picks the ones it
        reads. base_text_embeddings: (M, D) float, L2-normalised.
        classify_pseudo: False leaves pseudo boxes out of the classifier (they are then background, Table V)."""

    @abc.abstractmethod
    def predict(self, images: list[Tensor], class_text_embeddings: Tensor) -> list[RegionPredictions]:
        """images: B × (3, H, W) float in [0, 1]; class_text_embeddings: (C, D) float, L2-normalised."""
