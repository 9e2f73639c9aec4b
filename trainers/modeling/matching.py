"""Hungarian matching of queries to ground-truth objects on GIoU, L1 and alignment score (Open-Det A.4)."""
from __future__ import annotations

import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor
from torchvision.ops import box_convert, generalized_box_iou


def matching_cost(boxes: Tensor, alignment_logits: Tensor, gt_boxes: Tensor, weight_giou: float, weight_l1: float,
                  weight_alignment: float) -> Tensor:
    """(Q, G) cost: −GIoU, L1 of cxcywh, −σ(alignment score). boxes: (Q, 4), gt_boxes: (G, 4) cxcywh in [0, 1];
    alignment_logits: (Q, G) s(q_i, t_j) of each query with each object's text embedding."""
    giou = generalized_box_iou(box_convert(boxes, "cxcywh", "xyxy"), box_convert(gt_boxes, "cxcywh", "xyxy"))
    l1 = torch.cdist(boxes, gt_boxes, p=1)
    return weight_l1 * l1 - weight_giou * giou - weight_alignment * alignment_logits.sigmoid()


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
