"""From detector outputs to final detections: the score ensemble of HD-OVD eq. 12, per-class NMS, top-k."""
from __future__ import annotations

from typing import get_args

import torch
from torch import Tensor
from torchvision.ops import batched_nms, remove_small_boxes

from trainers.hdovd.config import DistillProbability, InferenceConfig
from trainers.hdovd.detector_base import OpenVocabularyDetector

DISTILL_PROBABILITIES = get_args(DistillProbability)


def distillation_probabilities(queries: Tensor, class_text_embeddings: Tensor, tau: float,
                               kind: str = "sigmoid") -> Tensor:
    """p_dis (eq. 12): sigmoid(cos(q_i, e_c)·τ) per class, or softmax over the classes c of cos(q_i, e_c)·τ.
    queries: (P, D), class_text_embeddings: (C, D), both L2-normalised → (P, C) float."""
    logits = queries @ class_text_embeddings.t() * tau
    if kind == "sigmoid":
        return torch.sigmoid(logits)
    if kind == "softmax":
        return logits.softmax(dim=1)
    raise ValueError(f"hdovd.inference.distill_probability={kind!r}; choose one of {', '.join(DISTILL_PROBABILITIES)}")


def ensemble_scores(class_probs: Tensor, distill_probs: Tensor, is_novel: Tensor, beta_base: float,
                    beta_novel: float, background_probs: Tensor | None = None) -> Tensor:
    """HD-OVD eq. 12: p = p_cls^(1−β)·p_dis^β with β = β1 for base and β2 for novel classes.

    class_probs, distill_probs: (P, C) float in [0, 1]; is_novel: (C,) bool. background_probs: (P,) float, the
    background column of a softmax classifier, or None. With it, as the released StandardRoIHead.simple_test does,
    the column is kept as it is and each box's C + 1 scores are renormalised to sum to 1. Returns (P, C) float.
    """
    beta = torch.where(is_novel.to(class_probs.device), beta_novel, beta_base).to(class_probs.dtype)
    scores = class_probs.pow(1 - beta) * distill_probs.pow(beta)
    if background_probs is None:
        return scores
    return scores / (scores.sum(dim=1, keepdim=True) + background_probs[:, None])


def select_detections(boxes: Tensor, scores: Tensor, config: InferenceConfig) -> dict[str, Tensor]:
    """One image: boxes (P, 4) class-agnostic xyxy, scores (P, C) → every (box, class) pair above the threshold,
    per-class NMS, the best `detections_per_image`: {boxes (K, 4), scores (K,), labels (K,) int64 class index}."""
    num_classes = scores.shape[1]
    flat_boxes = boxes[:, None, :].expand(-1, num_classes, -1).reshape(-1, 4)
    flat_scores = scores.reshape(-1)
    flat_labels = torch.arange(num_classes, device=scores.device).repeat(boxes.shape[0])
    keep = torch.where(flat_scores > config.score_threshold)[0]
    flat_boxes, flat_scores, flat_labels = flat_boxes[keep], flat_scores[keep], flat_labels[keep]
    keep = remove_small_boxes(flat_boxes, config.min_box_size)
    flat_boxes, flat_scores, flat_labels = flat_boxes[keep], flat_scores[keep], flat_labels[keep]
    keep = batched_nms(flat_boxes, flat_scores, flat_labels, config.nms_iou)[: config.detections_per_image]
    return {"boxes": flat_boxes[keep], "scores": flat_scores[keep], "labels": flat_labels[keep]}


def detect(detector: OpenVocabularyDetector, images: list[Tensor], class_text_embeddings: Tensor, is_novel: Tensor,
           config: InferenceConfig, tau_distill: float = 20.0) -> list[dict[str, Tensor]]:
    """Final detections of a batch: B × {boxes (K, 4) xyxy image pixels, scores (K,), labels (K,) class index}.

    class_text_embeddings: (C, D) float, L2-normalised, base and novel classes; is_novel: (C,) bool.
    tau_distill: eq. 12's temperature, the τ_ckd the queries were trained at (hdovd.loss.tau_ckd; paper: 20).
    Runs in eval mode under inference_mode and restores the detector's previous mode.
    """
    was_training = detector.training
    detector.eval()
    try:
        with torch.inference_mode():
            predictions = detector.predict(images, class_text_embeddings)
            results = []
            for prediction in predictions:
                scores = prediction.class_probs
                if config.ensemble:
                    distill = distillation_probabilities(prediction.queries, class_text_embeddings, tau_distill,
                                                         config.distill_probability)
                    scores = ensemble_scores(scores, distill, is_novel, config.beta_base, config.beta_novel,
                                             prediction.background_probs)
                results.append(select_detections(prediction.boxes, scores, config))
    finally:
        detector.train(was_training)
    return results
