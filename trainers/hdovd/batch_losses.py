"""One HD-OVD loss evaluation: batch dict → detector → criterion → named loss terms (contract in trainers.hdovd.detectors)."""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import Tensor

from trainers.hdovd.detector_base import OpenVocabularyDetector
from trainers.hdovd.criterion import HdovdCriterion
from trainers.pseudo_weights import PseudoBoxWeighting

PSEUDO_FIELDS = ("boxes", "label_ids", "scores", "cos", "text_embeddings")


def split_region_embeddings(targets: list[dict[str, Tensor]], pseudo: list[dict[str, Tensor]],
                            region_embeddings: Tensor | list[Tensor]) -> list[Tensor]:
    """(R, D) rows of the whole batch, or already B × (G + P, D) → B × (G + P, D), checked against the box counts."""
    if isinstance(region_embeddings, Tensor):
        counts = [len(t["boxes"]) + len(p["boxes"]) for t, p in zip(targets, pseudo)]
        if region_embeddings.shape[0] != sum(counts):
            raise ValueError(f"{region_embeddings.shape[0]} region embeddings for {sum(counts)} target + pseudo "
                             "boxes in the batch; rows must be [targets; pseudo] per image")
        return list(region_embeddings.split(counts))
    return list(region_embeddings)


def limit_pseudo_boxes(
    targets: list[dict[str, Tensor]],
    pseudo: list[dict[str, Tensor]],
    region_embeddings: Tensor | list[Tensor],
    max_boxes: int,
) -> tuple[list[dict[str, Tensor]], list[Tensor]]:
    """Keep the first `max_boxes` pseudo boxes of each image (HD-OVD Table IX) and their region-embedding rows.

    The store lists pseudo boxes best proposal first, so "first" is "top-scored". region_embeddings: (R, D) for the
    batch or B × (G + P, D), rows [targets boxes; pseudo boxes] per image; a mismatch is an error.
    """
    region_embeddings = split_region_embeddings(targets, pseudo, region_embeddings)
    kept_pseudo, kept_embeddings = [], []
    for index, (target, boxes, embeddings) in enumerate(zip(targets, pseudo, region_embeddings)):
        num_base, num_pseudo = len(target["boxes"]), len(boxes["boxes"])
        if embeddings.shape[0] != num_base + num_pseudo:
            raise ValueError(f"batch image {index}: {embeddings.shape[0]} region embeddings for {num_base} target "
                             f"boxes + {num_pseudo} pseudo boxes; rows must be [targets; pseudo]")
        keep = min(num_pseudo, max_boxes)
        kept_pseudo.append({field: boxes[field][:keep] for field in PSEUDO_FIELDS if field in boxes})
        kept_embeddings.append(embeddings[:num_base + keep])
    return kept_pseudo, kept_embeddings


def with_class_weights(pseudo: dict[str, Tensor], weighting: PseudoBoxWeighting) -> dict[str, Tensor]:
    """One image's pseudo boxes {boxes, label_ids, scores, cos, text_embeddings} → the detector's {boxes,
    label_ids, weights, text_embeddings}: `weights` (P,) float is each box's α of eq. 5 (trainers.pseudo_weights)."""
    scores = pseudo["scores"]
    cosines = pseudo.get("cos", torch.full_like(scores, float("nan")))
    return {"boxes": pseudo["boxes"], "label_ids": pseudo["label_ids"], "weights": weighting(scores, cosines),
            "text_embeddings": pseudo["text_embeddings"]}


def hdovd_losses(
    detector: OpenVocabularyDetector | torch.nn.Module,
    criterion: HdovdCriterion,
    batch: Mapping[str, Any] | Any,
    base_text_embeddings: Tensor,
) -> dict[str, Tensor]:
    """The named, weighted HD-OVD loss terms of one batch (eq. 11); their sum is the training loss.

    batch: a mapping with the keys of the contract in trainers.hdovd.detectors, or an object with those attributes.
    detector: an OpenVocabularyDetector, or its DistributedDataParallel wrapper (called, never unwrapped).
    """
    def field(name: str) -> Any:
        return batch[name] if isinstance(batch, Mapping) else getattr(batch, name)

    config = criterion.config
    targets = field("targets")
    pseudo, region_embeddings = limit_pseudo_boxes(
        targets, field("pseudo"), field("region_embeddings"), config.max_pseudo_boxes)
    pseudo = [with_class_weights(boxes, criterion.pseudo_weighting) for boxes in pseudo]
    output = detector(field("images"), targets, pseudo, base_text_embeddings, config.pseudo_classes)
    return criterion(output, torch.cat(region_embeddings), field("image_embeddings"))
