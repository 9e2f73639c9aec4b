"""The box part of a DETR-style criterion, shared by Open-Det and HD-OVD's query-based detector.

Per decoder layer (and for the encoder's token proposals): match queries to objects (Hungarian on GIoU, L1 and, when
the caller has them, alignment scores; one-to-many by repeating each object `copies` times), then L1 + GIoU on the
matched boxes and a sigmoid focal loss on the objectness (binary) head with matched queries as positives. What a
method adds on top (Open-Det's Joint Loss, alignment and language losses) stays in the method's criterion.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torchvision.ops import box_convert, generalized_box_iou, sigmoid_focal_loss

from trainers.modeling.matching import hungarian_match, matching_cost
from trainers.modeling.query_detector import QueryDetectorOutput


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
    focal loss of RetinaNet (α 0.25, γ 2) and H-DETR's one-to-many branch, which repeats each object k = 4 times.
    """

    def __init__(self, cost_giou: float = 2.0, cost_l1: float = 5.0, cost_alignment: float = 2.0,
                 weight_giou: float = 2.0, weight_l1: float = 5.0, weight_binary: float = 1.0,
                 focal_alpha: float = 0.25, focal_gamma: float = 2.0, one_to_many_k: int = 4):
        self.cost_giou, self.cost_l1, self.cost_alignment = cost_giou, cost_l1, cost_alignment
        self.weights = {"l1": weight_l1, "giou": weight_giou, "binary": weight_binary}
        self.focal_alpha, self.focal_gamma = focal_alpha, focal_gamma
        self.one_to_many_k = one_to_many_k

    def match(self, boxes: Tensor, padding: Tensor, objects: BoxTargets, copies: int,
              alignment: list[Tensor] | None = None) -> LayerMatch:
        """boxes: (B, Q, 4) cxcywh; padding: (B, Q) bool; alignment: B × (Q_b, G_b) alignment logits of each
        image's valid queries against its own objects, or None (boxes only: the alignment cost is 0)."""
        query_rows, object_rows, query_offset, object_offset = [], [], 0, 0
        for image, count in enumerate(objects.counts):
            valid_boxes = boxes[image][~padding[image]].detach()
            gt = objects.boxes[object_offset:object_offset + count]
            scores = alignment[image].detach() if alignment is not None else valid_boxes.new_zeros(len(valid_boxes),
                                                                                                   count)
            cost = matching_cost(valid_boxes, scores, gt, self.cost_giou, self.cost_l1,
                                 self.cost_alignment if alignment is not None else 0.0)
            queries, matched_objects = hungarian_match(cost, copies)
            query_rows.append(queries + query_offset)
            object_rows.append(matched_objects + object_offset)
            query_offset, object_offset = query_offset + len(valid_boxes), object_offset + count
        return LayerMatch(torch.cat(query_rows), torch.cat(object_rows))

    def box_losses(self, boxes: Tensor, match: LayerMatch, objects: BoxTargets) -> dict[str, Tensor]:
        """boxes: (N, 4) valid queries' boxes → L1 and 1 − GIoU of matched pairs whose object is regressed, / those
        pairs (DETR); unweighted."""
        queries, matched_objects = match.queries, match.objects
        if objects.regress is not None:
            keep = objects.regress[matched_objects]
            queries, matched_objects = queries[keep], matched_objects[keep]
        predicted, target = boxes[queries], objects.boxes[matched_objects]
        count = max(len(queries), 1)
        giou = torch.diag(generalized_box_iou(box_convert(predicted, "cxcywh", "xyxy"),
                                              box_convert(target, "cxcywh", "xyxy")))
        return {"l1": (predicted - target).abs().sum() / count, "giou": (1 - giou).sum() / count}

    def objectness_loss(self, logits: Tensor, match: LayerMatch) -> Tensor:
        """logits: (N,) of valid queries → focal loss with the matched queries as positives, / matched queries."""
        matched = torch.zeros_like(logits, dtype=torch.bool)
        matched[match.queries] = True
        return binary_focal_loss(logits, matched, max(len(match.queries), 1), self.focal_alpha, self.focal_gamma)

    def layer_losses(self, boxes: Tensor, logits: Tensor, padding: Tensor, objects: BoxTargets, copies: int
                     ) -> tuple[dict[str, Tensor], LayerMatch]:
        """One layer matched on boxes alone: {"l1", "giou", "binary"} unweighted, and the match.
        boxes: (B, Q, 4) cxcywh; logits: (B, Q) objectness; padding: (B, Q) bool, True = no query."""
        valid = ~padding
        flat_boxes, flat_logits = boxes[valid], logits[valid]
        match = self.match(boxes, padding, objects, copies)
        terms = self.box_losses(flat_boxes, match, objects)
        terms["binary"] = self.objectness_loss(flat_logits, match)
        return terms, match

    def __call__(self, output: QueryDetectorOutput, objects: BoxTargets) -> dict[str, Tensor]:
        """The box losses of a whole detector output, each summed over the decoder layers and the encoder proposals
        and then weighted: {"loss_l1", "loss_giou", "loss_binary"}. One-to-one layers match each object once, the
        others and the encoder proposals `one_to_many_k` times."""
        layers = [(layer.boxes, layer.binary_logits, output.padding, 1 if layer.one_to_one else self.one_to_many_k)
                  for layer in output.layers]
        layers.append((output.encoder_boxes, output.encoder_logits,
                       torch.zeros_like(output.encoder_logits, dtype=torch.bool), self.one_to_many_k))
        total: dict[str, Tensor] = {}
        for boxes, logits, padding, copies in layers:
            terms, _ = self.layer_losses(boxes, logits, padding, objects, copies)
            for name, value in terms.items():
                total[name] = total.get(name, 0.0) + value
        return {f"loss_{name}": self.weights[name] * value for name, value in total.items()}
