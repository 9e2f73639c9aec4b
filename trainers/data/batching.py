"""A collated batch of the streaming dataset → the detector's inputs and the teachers' embeddings."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F


@dataclass
class DetectorInputs:
    """images: B × (3, H, W); targets: B × {boxes, labels}; pseudo: B × {boxes, label_ids, scores (the stored
    s), cos (the label's CLIP cosine), proposal_scores, text_embeddings}; region_embeddings: (R, D) CLIP embeddings in the detector's
    region order (per image its base GT boxes, then its pseudo boxes); image_embeddings: (B, D); pseudo_names: K
    label strings; object_names: B × G × (alternative names of the GT box, or None), in the order of targets' boxes (Open-Det)."""

    images: list[torch.Tensor]
    targets: list[dict[str, torch.Tensor]]
    pseudo: list[dict[str, torch.Tensor]]
    region_embeddings: torch.Tensor
    image_embeddings: torch.Tensor
    pseudo_names: list[str]
    object_names: list[list[tuple[str, ...] | None]] = field(default_factory=list)


def to_detector_inputs(batch: dict, use_pseudo_boxes: bool = True, device: torch.device = torch.device("cpu"),
                       excluded_label: Callable[[str], bool] | None = None) -> DetectorInputs:
    """Pseudo label strings of the batch become class ids 0..K-1 (first seen first); proposals without a
    pseudo label are left out (HD-OVD distils and classifies the same labelled pseudo boxes). Every labelled pseudo
    box stays, best proposal first as the store lists them: a method picks the ones it reads (HD-OVD's detector:
    hdovd.detector.max_pseudo_boxes, Table IX). `excluded_label(name)` True drops that pseudo box (e.g. labels that
    name a base class)."""
    names: dict[str, int] = {}
    pseudo, region_embeddings = [], []
    dim = batch["image_embedding"].shape[1]
    for i in range(len(batch["image"])):
        labelled = [j for j, name in enumerate(batch["pseudo_labels"][i]) if name is not None and use_pseudo_boxes
                    and not (excluded_label and excluded_label(name))]
        ids = [names.setdefault(batch["pseudo_labels"][i][j], len(names)) for j in labelled]
        index = torch.as_tensor(labelled, dtype=torch.long)
        pseudo.append({
            "boxes": batch["pseudo_boxes"][i][index].reshape(-1, 4),
            "label_ids": torch.as_tensor(ids, dtype=torch.long),
            "scores": batch["pseudo_scores"][i][index],
            "cos": batch["pseudo_cos"][i][index],
            "proposal_scores": batch["pseudo_proposal_scores"][i][index],
            "text_embeddings": F.normalize(batch["pseudo_text_embeddings"][i][index].reshape(-1, dim), dim=-1),
        })
        region_embeddings += [batch["gt_embeddings"][i], batch["pseudo_embeddings"][i][index].reshape(-1, dim)]
    return DetectorInputs(
        images=[image.to(device) for image in batch["image"]],
        targets=[{"boxes": b.to(device), "labels": l.to(device)} for b, l in zip(batch["boxes"], batch["labels"])],
        pseudo=[{key: value.to(device) for key, value in p.items()} for p in pseudo],
        region_embeddings=torch.cat(region_embeddings).to(device),
        image_embeddings=batch["image_embedding"].to(device), pseudo_names=list(names),
        object_names=batch.get("names") or [[None] * len(boxes) for boxes in batch["boxes"]])
