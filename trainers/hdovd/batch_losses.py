"""One HD-OVD loss evaluation: a batch (trainers.data.batching.DetectorInputs) → detector → criterion → named loss terms
(the contract: trainers.hdovd.detectors)."""
from __future__ import annotations

import torch
from torch import Tensor

from trainers.data.batching import DetectorInputs
from trainers.hdovd.criterion import HdovdCriterion
from trainers.hdovd.detector_base import OpenVocabularyDetector
from trainers.pseudo_weights import PseudoBoxWeighting


def with_class_weights(pseudo: dict[str, Tensor], weighting: PseudoBoxWeighting) -> dict[str, Tensor]:
    """One image's pseudo boxes {boxes, label_ids, scores, cos, text_embeddings, …} → the detector's {boxes,
    label_ids, weights, text_embeddings}: `weights` (P,) float is each box's α of eq. 5 (trainers.pseudo_weights)."""
    return {"boxes": pseudo["boxes"], "label_ids": pseudo["label_ids"],
            "weights": weighting(pseudo["scores"], pseudo["cos"]), "text_embeddings": pseudo["text_embeddings"]}


def hdovd_losses(detector: OpenVocabularyDetector | torch.nn.Module, criterion: HdovdCriterion, batch: DetectorInputs,
                 base_text_embeddings: Tensor) -> dict[str, Tensor]:
    """The named, weighted HD-OVD loss terms of one batch (eq. 11); their sum is the training loss.

    detector: an OpenVocabularyDetector, or its DistributedDataParallel wrapper (called, never unwrapped)."""
    regions = sum(len(t["boxes"]) + len(p["boxes"]) for t, p in zip(batch.targets, batch.pseudo))
    if batch.region_embeddings.shape[0] != regions:
        raise ValueError(f"{batch.region_embeddings.shape[0]} region embeddings for {regions} target + pseudo boxes "
                         "in the batch; rows must be [targets; pseudo] per image")
    pseudo = [with_class_weights(boxes, criterion.pseudo_weighting) for boxes in batch.pseudo]
    output = detector(batch.images, batch.targets, pseudo, base_text_embeddings, criterion.config.pseudo_classes)
    return criterion(output, batch.region_embeddings, batch.image_embeddings)
