"""The box part of a DETR-style criterion (Open-Det's detector; trainers.modeling is what a query-based method
builds on).

Per decoder layer (and for the encoder's proposals): match queries to objects (Hungarian on GIoU, L1 and, when the
caller has them, alignment scores and objectness; one-to-many by repeating each object `copies` times), then L1 +
GIoU on the matched boxes and a sigmoid focal loss on the objectness (binary) head with matched queries as positives.
What a method adds on top (Open-Det's Joint Loss, alignment and language losses) stays in the method's criterion.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torchvision.ops import box_convert, generalized_box_iou, sigmoid_focal_loss

from trainers.modeling.matching import MatchingCosts, hungarian_match, matching_cost


def normalised_cxcywh(boxes: Tensor, size: tuple[int, int]) -> Tensor:
    """(N, 4) xyxy pixels of an image of `size` (h, w) → (N, 4) cxcywh in [0, 1]."""
    height, width = size
    return box_convert(boxes / boxes.new_tensor([width, height, width, height]), "xyxy", "cxcywh").clamp(0, 1)


@dataclass
class BoxTargets:
    """The batch's objects, flattened. boxes: (Nt, 4) cxcywh in [0, 1]; counts: objects per image (rows are image
    after image); regress: (Nt,) bool, the objects whose boxes the box losses fit (None: all). An object outside it
    (e.g. a pseudo box) is still matched and still a positive of the objectness loss."""

    boxes: Tensor
    counts: list[int]
    regress: Tensor | None = None

    @classmethod
    def from_pixel_boxes(cls, boxes: list[Tensor], image_sizes: list[tuple[int, int]]) -> "BoxTargets":
        """boxes: B × (G, 4) xyxy pixels of images of `image_sizes` (h, w)."""
        return cls(torch.cat([normalised_cxcywh(b, size) for b, size in zip(boxes, image_sizes)]),
                   [len(b) for b in boxes])


@dataclass
class LayerMatch:
    """Matched pairs of one layer: rows of the flattened valid queries ↔ rows of the targets."""

    queries: Tensor  # (K,) int64
    objects: Tensor  # (K,) int64


def binary_focal_loss(binary_logits: Tensor, matched: Tensor, normalizer: float, alpha: float = 0.25,
                      gamma: float = 2.0) -> Tensor:
    """Sigmoid focal loss on hard labels (matched = 1), / normalizer (RetinaNet's α 0.25, γ 2 by default).

    binary_logits: (Nq,) float. matched: (Nq,) bool."""
    per_query = sigmoid_focal_loss(binary_logits.float(), matched.float(), alpha=alpha, gamma=gamma, reduction="none")
    return per_query.sum() / max(float(normalizer), 1.0)


class BoxCriterion:
    """Matching costs, box loss weights and the objectness focal loss of a DETR-style detector.

    Defaults: DINO's matching costs and box loss weights (GIoU 2, L1 5; alignment score 2 as Open-Det A.4), the
    focal loss of RetinaNet (α 0.25, γ 2); the one-to-many layers match with `one_to_many_costs` (default: the same).
    """

    def __init__(self, costs: MatchingCosts = MatchingCosts(), weight_giou: float = 2.0, weight_l1: float = 5.0,
                 weight_binary: float = 1.0, focal_alpha: float = 0.25, focal_gamma: float = 2.0,
                 one_to_many_costs: MatchingCosts | None = None):
        self.costs, self.one_to_many_costs = costs, one_to_many_costs or costs
        self.weights = {"l1": weight_l1, "giou": weight_giou, "binary": weight_binary}
        self.focal_alpha, self.focal_gamma = focal_alpha, focal_gamma

    def match(self, boxes: Tensor, padding: Tensor, objects: BoxTargets, copies: int,
              alignment: list[Tensor] | None = None, objectness: Tensor | None = None) -> LayerMatch:
        """boxes: (B, Q, 4) cxcywh; padding: (B, Q) bool; alignment: B × (Q_b, G_b) alignment logits of each
        image's valid queries against its own objects, or None (no alignment term); objectness: (B, Q) logits, or
        None. `copies` > 1 matches with the one-to-many costs."""
        costs = self.one_to_many_costs if copies > 1 else self.costs
        query_rows, object_rows, query_offset, object_offset = [], [], 0, 0
        for image, count in enumerate(objects.counts):
            valid = ~padding[image]
            valid_boxes = boxes[image][valid].detach()
            gt = objects.boxes[object_offset:object_offset + count]
            cost = matching_cost(valid_boxes, alignment[image].detach() if alignment is not None else None, gt, costs,
                                 objectness[image][valid].detach() if objectness is not None else None)
            queries, matched_objects = hungarian_match(cost, copies)
            query_rows.append(queries + query_offset)
            object_rows.append(matched_objects + object_offset)
            query_offset, object_offset = query_offset + len(valid_boxes), object_offset + count
        return LayerMatch(torch.cat(query_rows), torch.cat(object_rows))

    def box_losses(self, boxes: Tensor, match: LayerMatch, objects: BoxTargets, normalizer: float | None = None
                   ) -> dict[str, Tensor]:
        """boxes: (N, 4) valid queries' boxes → L1 and 1 − GIoU summed over the matched pairs whose object is
        regressed, / `normalizer` (the released criterion's num_boxes; None: / those pairs, DETR's); unweighted."""
        queries, matched_objects = match.queries, match.objects
        if objects.regress is not None:
            keep = objects.regress[matched_objects]
            queries, matched_objects = queries[keep], matched_objects[keep]
        predicted, target = boxes[queries], objects.boxes[matched_objects]
        count = max(float(normalizer if normalizer is not None else len(queries)), 1.0)
        giou = torch.diag(generalized_box_iou(box_convert(predicted, "cxcywh", "xyxy"),
                                              box_convert(target, "cxcywh", "xyxy")))
        return {"l1": (predicted - target).abs().sum() / count, "giou": (1 - giou).sum() / count}

    def objectness_loss(self, logits: Tensor, match: LayerMatch) -> Tensor:
        """logits: (N,) of valid queries → focal loss with the matched queries as positives, / matched queries."""
        matched = torch.zeros_like(logits, dtype=torch.bool)
        matched[match.queries] = True
        return binary_focal_loss(logits, matched, max(len(match.queries), 1), self.focal_alpha, self.focal_gamma)
