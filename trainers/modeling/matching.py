"""Hungarian matching of queries to ground-truth objects on GIoU, L1, alignment score and objectness (Open-Det A.4;
the released Open-Det2 matchers, qfree_det/matcher.py HungarianMatcher and HungarianMatcher_One_to_Many)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor
from torchvision.ops import box_convert, generalized_box_iou


@dataclass(frozen=True)
class MatchingCosts:
    """Weights and form of a matching cost.

    form "probability": −alignment · σ(s), no objectness term. form "focal" (the released matchers, DINO's class
    cost): alignment · focal(s) + objectness · focal(o), each focal(x) = α(1 − p)^γ(−log p) − (1 − α)p^γ(−log(1 − p))
    with p = σ(x), γ = 2 and α = `focal_alpha`; the objectness term is the same for every object of a query."""

    giou: float = 2.0
    l1: float = 5.0
    alignment: float = 2.0
    objectness: float = 0.0
    form: Literal["probability", "focal"] = "probability"
    focal_alpha: float = 0.25


def focal_cost(logits: Tensor, alpha: float, gamma: float = 2.0) -> Tensor:
    """The focal cost of calling each logit a positive (DINO's matcher; 1e-8 inside the logarithms as there)."""
    p = logits.sigmoid()
    positive = alpha * (1 - p) ** gamma * -(p + 1e-8).log()
    negative = (1 - alpha) * p**gamma * -(1 - p + 1e-8).log()
    return positive - negative


def matching_cost(boxes: Tensor, alignment_logits: Tensor | None, gt_boxes: Tensor, costs: MatchingCosts,
                  objectness_logits: Tensor | None = None) -> Tensor:
    """(Q, G) cost: l1 · L1 of cxcywh − giou · GIoU + the alignment and objectness terms of `costs`.
    boxes: (Q, 4), gt_boxes: (G, 4) cxcywh in [0, 1]; alignment_logits: (Q, G) s(q_i, t_j) of each query with each
    object's text embedding, or None; objectness_logits: (Q,) or None."""
    giou = generalized_box_iou(box_convert(boxes, "cxcywh", "xyxy"), box_convert(gt_boxes, "cxcywh", "xyxy"))
    cost = costs.l1 * torch.cdist(boxes, gt_boxes, p=1) - costs.giou * giou
    if alignment_logits is not None and costs.alignment:
        alignment = (focal_cost(alignment_logits, costs.focal_alpha) if costs.form == "focal"
                     else -alignment_logits.sigmoid())
        cost = cost + costs.alignment * alignment
    if objectness_logits is not None and costs.objectness and costs.form == "focal":
        cost = cost + costs.objectness * focal_cost(objectness_logits, costs.focal_alpha)[:, None]
    return cost


@torch.no_grad()
def hungarian_match(cost: Tensor, copies: int = 1) -> tuple[Tensor, Tensor]:
    """Minimum-cost assignment; each object takes up to `copies` queries (one-to-many when copies > 1, by
    repeating the objects' columns, as H-DETR's one-to-many branch does), each query at most one object.

    cost: (Q, G) float → (query indices, object indices), both (K,) int64 with K ≤ min(Q, copies·G)."""
    num_queries, num_objects = cost.shape
    if num_queries == 0 or num_objects == 0:
        empty = torch.zeros(0, dtype=torch.long, device=cost.device)
        return empty, empty
    rows, columns = linear_sum_assignment(cost.float().cpu().repeat(1, copies).numpy())
    queries = torch.as_tensor(rows, dtype=torch.long, device=cost.device)
    return queries, torch.as_tensor(columns % num_objects, dtype=torch.long, device=cost.device)
