"""Novel-class-aware classification (HD-OVD eq. 4–5) and the released code's weighted softmax variant.

The classifier's columns are base-class text embeddings followed by the batch's pseudo-label text embeddings
(M + K columns). A sampled RoI's target is a column index, or BACKGROUND. Each RoI carries a weight: 1 for base and
background RoIs, the α of its pseudo box (eq. 5, trainers.pseudo_weights) for RoIs matched to a pseudo box.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import sigmoid_focal_loss

from trainers.hdovd.detector_base import BACKGROUND


def sigmoid_focal_classification_loss(class_logits: Tensor, background_logits: Tensor | None, class_targets: Tensor,
                                      roi_weights: Tensor, focal_alpha: float, focal_gamma: float) -> Tensor:
    """HD-OVD eq. 4: Σ_i α_i Σ_j Focal(p_ij, y_ij) / N_pos, with p_ij = sigmoid(class_logits_ij).

    class_logits: (N, C) float, cos(q̂_i, e_j)·τ_cls. class_targets: (N,) int64 in [0, C) or BACKGROUND.
    roi_weights: (N,) float, α of each RoI's class. background_logits is unused (background = all targets 0).
    Eq. 4 divides by N, "the number of object queries"; query-based detectors normalise by the number of matched
    objects (Deformable DETR, RetinaNet), which for sampled RoIs is the number of foreground RoIs — used here so the
    loss does not shrink with the background share of the sample.
    """
    del background_logits
    foreground = class_targets != BACKGROUND
    one_hot = torch.zeros_like(class_logits)
    one_hot[foreground, class_targets[foreground]] = 1.0
    per_entry = sigmoid_focal_loss(class_logits, one_hot, alpha=focal_alpha, gamma=focal_gamma, reduction="none")
    num_foreground = foreground.sum().clamp(min=1).to(class_logits.dtype)
    return (per_entry.sum(dim=1) * roi_weights).sum() / num_foreground


def weighted_softmax_classification_loss(class_logits: Tensor, background_logits: Tensor | None, class_targets: Tensor,
                                         roi_weights: Tensor, focal_alpha: float, focal_gamma: float) -> Tensor:
    """Released-code variant: softmax CE over [classes, background], each RoI weighted, averaged over all N RoIs.

    class_logits: (N, C) float. background_logits: (N,) float, cos(q̂_i, e_bg)·τ_cls of a learnable embedding.
    class_targets: (N,) int64 in [0, C) or BACKGROUND. roi_weights: (N,) float. Focal parameters are unused.
    """
    del focal_alpha, focal_gamma
    if background_logits is None:
        raise ValueError("hdovd.loss.classification_variant=weighted_softmax needs background logits: build the "
                         "detector with the classifier head of that loss (HdovdConfig.classifier: softmax_background)")
    num_classes = class_logits.shape[1]
    logits = torch.cat([class_logits, background_logits[:, None]], dim=1)  # background is the last column
    targets = torch.where(class_targets != BACKGROUND, class_targets, torch.full_like(class_targets, num_classes))
    per_roi = F.cross_entropy(logits, targets, reduction="none")
    return (per_roi * roi_weights).sum() / max(1, class_logits.shape[0])


ClassificationLoss = Callable[[Tensor, "Tensor | None", Tensor, Tensor, float, float], Tensor]
# By config name (HdovdLossConfig.classification_variant).
CLASSIFICATION_LOSSES: dict[str, ClassificationLoss] = {
    "sigmoid_focal": sigmoid_focal_classification_loss,
    "weighted_softmax": weighted_softmax_classification_loss,
}

def roi_class_weights(matched_pseudo_weights: Tensor, weighting: bool) -> Tensor:
    """Per-RoI weights α (eq. 5): 1 where no pseudo box is matched (NaN), the pseudo box's α where one is.

    matched_pseudo_weights: (N,) float, the α of the pseudo box each RoI is matched to, NaN otherwise.
    weighting: False (Table V without "Wei.") gives every RoI weight 1.
    """
    ones = torch.ones_like(matched_pseudo_weights)
    if not weighting:
        return ones
    return torch.where(torch.isnan(matched_pseudo_weights), ones, matched_pseudo_weights)
