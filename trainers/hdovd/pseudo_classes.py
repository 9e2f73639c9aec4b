"""The training classifier of HD-OVD eq. 4: base text embeddings ∪ the batch's pseudo-label text embeddings."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass
class PseudoClassifierColumns:
    """Classifier columns for one batch and the pseudo boxes that train them.

    embeddings: (M + K, D) float, L2-normalised: M base classes, then K distinct pseudo labels of the batch.
    boxes: B × (P_i, 4) float, pseudo boxes in transformed-image pixels.
    columns: B × (P_i,) int64, each pseudo box's column in [M, M + K).
    weights: B × (P_i,) float, each pseudo box's class weight α (eq. 5, trainers.pseudo_weights).
    Pseudo boxes with the same label id share one column, so two boxes named "cat" are never each other's
    negative. (The released code gives every pseudo box its own column.)
    """

    embeddings: Tensor
    boxes: list[Tensor]
    columns: list[Tensor]
    weights: list[Tensor]

    @classmethod
    def from_batch(cls, pseudo: list[dict[str, Tensor]], pseudo_boxes: list[Tensor], base_text_embeddings: Tensor
                   ) -> "PseudoClassifierColumns":
        """pseudo: B × {label_ids (P,) int64, weights (P,) float, text_embeddings (P, D) float};
        pseudo_boxes: B × (P, 4) already in transformed-image pixels; base_text_embeddings: (M, D)."""
        base = F.normalize(base_text_embeddings.float(), dim=-1)
        device = base.device
        counts = [len(boxes) for boxes in pseudo_boxes]
        if sum(counts) == 0:
            return cls(base, [b.new_zeros((0, 4)) for b in pseudo_boxes],
                       [torch.zeros(0, dtype=torch.long, device=device) for _ in counts],
                       [torch.zeros(0, device=device) for _ in counts])
        label_ids = torch.cat([p["label_ids"] for p in pseudo]).to(device)
        text = F.normalize(torch.cat([p["text_embeddings"] for p in pseudo]).to(device, base.dtype), dim=-1)
        unique_ids, column_of_box = torch.unique(label_ids, return_inverse=True)
        pseudo_columns = text.new_zeros((len(unique_ids), text.shape[1]))
        pseudo_columns[column_of_box] = text  # boxes sharing a label id share a text embedding
        num_base = base.shape[0]
        return cls(
            embeddings=torch.cat([base, pseudo_columns]),
            boxes=pseudo_boxes,
            columns=list((column_of_box + num_base).split(counts)),
            weights=[p["weights"].to(device, base.dtype) for p in pseudo],
        )

    def matched_weights(self, labels: Tensor, matched_idxs: list[Tensor], num_base_boxes: list[int]) -> Tensor:
        """Weight α of the pseudo box each sampled RoI is matched to, NaN for base / background RoIs.

        labels: (N,) int64, torchvision convention (0 background, 1..M base, M+1.. pseudo), images concatenated.
        matched_idxs: B × (n_i,) int64 index into that image's [base boxes; pseudo boxes].
        num_base_boxes: B ints, base ground-truth boxes per image. Returns (N,) float.
        """
        result = []
        for image_labels, idxs, num_boxes, weights in zip(labels.split([len(m) for m in matched_idxs]), matched_idxs,
                                                           num_base_boxes, self.weights):
            is_pseudo = idxs >= num_boxes
            is_pseudo &= image_labels > 0  # a background RoI's matched index is meaningless
            image_weights = torch.full(idxs.shape, float("nan"), device=idxs.device)
            image_weights[is_pseudo] = weights[idxs[is_pseudo] - num_boxes].to(image_weights.dtype)
            result.append(image_weights)
        return torch.cat(result) if result else labels.new_zeros(0, dtype=torch.float)
